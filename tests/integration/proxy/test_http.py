"""HTTP/1.1 done properly: keep-alive, pipelining, streaming, framing, header rewriting."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from .conftest import Backend, Client, ProxyHandle, wait_for


def test_upstream_connection_is_reused(proxy: ProxyHandle, backend: Backend) -> None:
    client = proxy.client()
    for i in range(20):
        assert client.get(f"/{i}").status == 200
    # Another client connection, still the same pooled backend connection.
    other = proxy.client()
    assert other.get("/again").status == 200
    assert backend.connections == 1
    assert {r.conn for r in backend.requests} == {1}


def test_pipelined_requests_are_answered_in_order(proxy: ProxyHandle) -> None:
    client = proxy.client()
    client.send(
        b"GET /slow/0.2 HTTP/1.1\r\nHost: web.test\r\n\r\n"
        b"GET /second HTTP/1.1\r\nHost: web.test\r\n\r\n"
        b"GET /third HTTP/1.1\r\nHost: nobody.test\r\n\r\n"
        b"POST /fourth HTTP/1.1\r\nHost: web.test\r\nContent-Length: 4\r\n\r\nbody"
    )
    first, second, third, fourth = (client.response() for _ in range(4))
    assert first.json()["path"] == "/slow/0.2"
    assert second.json()["path"] == "/second"
    assert third.status == 404
    assert fourth.json()["path"] == "/fourth" and fourth.json()["body"] == "body"


def test_content_length_body_streams_upstream(proxy: ProxyHandle, backend: Backend) -> None:
    client = proxy.client()
    client.send(b"POST /progress HTTP/1.1\r\nHost: web.test\r\nContent-Length: 10\r\n\r\nfirst")
    # The first half reaches the backend before the client sends the rest.
    wait_for(lambda: sum(backend.progress) == 5, what="the first half upstream")
    client.send(b"-half")
    resp = client.response()
    assert resp.json()["body"] == "first-half"
    assert dict(resp.json()["headers"])["Content-Length"] == "10"


def test_chunked_body_streams_upstream(proxy: ProxyHandle, backend: Backend) -> None:
    client = proxy.client()
    client.send(
        b"POST /progress HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n"
    )
    wait_for(lambda: backend.progress == [5], what="the first chunk upstream")
    client.send(b"6\r\n world\r\n0\r\n\r\n")
    resp = client.response()
    assert resp.status == 200
    assert resp.json()["body"] == "hello world"
    assert dict(resp.json()["headers"])["Transfer-Encoding"] == "chunked"


def test_chunked_response_is_relayed(proxy: ProxyHandle) -> None:
    client = proxy.client()
    resp = client.get("/chunked")
    assert resp.header("transfer-encoding") == "chunked"
    assert resp.body == b"alpha-beta-gamma"
    assert client.get("/next").status == 200


def test_server_sent_events_arrive_as_sent(proxy: ProxyHandle, backend: Backend) -> None:
    client = proxy.client()
    client.send(b"GET /sse HTTP/1.1\r\nHost: web.test\r\nAccept: text/event-stream\r\n\r\n")
    status, _headers = client.head()
    assert status == 200
    # The first event arrives while the backend is still holding the stream open.
    assert client.chunk() == b"data: one\n\n"
    backend.release()
    assert client.chunk() == b"data: two\n\n"
    assert client.chunk() == b""


def test_expect_100_continue(proxy: ProxyHandle, backend: Backend) -> None:
    client = proxy.client()
    client.send(
        b"PUT /up HTTP/1.1\r\nHost: web.test\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
    )
    status, _ = client.head()
    assert status == 100
    client.send(b"data")
    resp = client.response()
    assert resp.status == 200 and resp.json()["body"] == "data"


def test_expect_100_continue_to_unknown_host_is_answered_at_once(proxy: ProxyHandle) -> None:
    client = proxy.client()
    client.send(
        b"PUT /up HTTP/1.1\r\nHost: nobody.test\r\nContent-Length: 4\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    resp = client.response()
    assert resp.status == 404
    assert resp.header("connection") == "close"


def test_head_has_no_body_and_keeps_the_connection(proxy: ProxyHandle, backend: Backend) -> None:
    client = proxy.client()
    client.send(b"HEAD /h HTTP/1.1\r\nHost: web.test\r\n\r\n")
    resp = client.response(head_only=True)
    assert resp.status == 200
    assert int(resp.header("content-length")) > 0
    again = client.get("/after-head")
    assert again.json()["path"] == "/after-head"
    assert backend.connections == 1


def test_responses_without_body(proxy: ProxyHandle, backend: Backend) -> None:
    client = proxy.client()
    for code in (204, 304):
        resp = client.get(f"/status/{code}")
        assert resp.status == code
        assert not resp.has("transfer-encoding")
    assert client.get("/after").json()["path"] == "/after"
    assert backend.connections == 1


def test_close_delimited_response_is_rechunked_for_http11(proxy: ProxyHandle) -> None:
    client = proxy.client()
    resp = client.get("/close")
    assert resp.header("transfer-encoding") == "chunked"
    assert resp.body == b"until-the-end"
    assert client.get("/still-open").status == 200


def test_close_delimited_response_to_http10_client(proxy: ProxyHandle) -> None:
    client = proxy.client()
    client.send(b"GET /close HTTP/1.0\r\nHost: web.test\r\n\r\n")
    resp = client.response()
    assert not resp.has("transfer-encoding")
    assert resp.header("connection") == "close"
    assert resp.body == b"until-the-end"


def test_http10_keep_alive(proxy: ProxyHandle) -> None:
    client = proxy.client()
    client.send(b"GET /a HTTP/1.0\r\nHost: web.test\r\nConnection: keep-alive\r\n\r\n")
    resp = client.response()
    assert resp.header("connection") == "keep-alive"
    client.send(b"GET /b HTTP/1.0\r\nHost: web.test\r\n\r\n")
    resp = client.response()
    assert resp.json()["path"] == "/b"
    assert resp.header("connection") == "close"
    assert client.closed()


def test_hop_by_hop_request_fields_are_removed(proxy: ProxyHandle) -> None:
    resp = proxy.client().get(
        extra=(
            "Connection: keep-alive, X-Private\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\n"
            "Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\n"
            "X-End-To-End: kept\r\n"
        )
    )
    seen = {k.lower() for k, _ in resp.json()["headers"]}
    for name in ("connection", "x-private", "keep-alive", "proxy-connection", "te", "trailer"):
        assert name not in seen
    assert "x-end-to-end" in seen


def test_hop_by_hop_response_fields_are_removed(proxy: ProxyHandle) -> None:
    resp = proxy.client().get("/hop")
    names = {k.lower() for k, _ in resp.headers}
    for name in ("x-private", "keep-alive", "proxy-connection", "trailer"):
        assert name not in names
    assert resp.header("connection") == "keep-alive"
    assert resp.header("x-end-to-end") == "kept"
    assert resp.body == b"ok"


def test_forwarded_fields(proxy: ProxyHandle) -> None:
    resp = proxy.client().get(
        host="Web.Test:8080",
        extra=(
            "X-Forwarded-For: 10.1.1.1\r\nX-Forwarded-Proto: https\r\n"
            "X-Forwarded-Host: evil.test\r\n"
        ),
    )
    headers = dict(resp.json()["headers"])
    assert headers["X-Forwarded-For"] == "10.1.1.1, 127.0.0.1"
    assert headers["X-Forwarded-Proto"] == "http"
    assert headers["X-Forwarded-Host"] == "Web.Test:8080"
    assert headers["Host"] == "Web.Test:8080"
    plain = dict(proxy.client().get().json()["headers"])
    assert plain["X-Forwarded-For"] == "127.0.0.1"


def test_request_id_is_kept_or_generated(proxy: ProxyHandle) -> None:
    client = proxy.client()
    kept = dict(client.get(extra="X-Request-Id: abc-123\r\n").json()["headers"])
    assert kept["X-Request-Id"] == "abc-123"
    first = dict(client.get().json()["headers"])["X-Request-Id"]
    second = dict(client.get().json()["headers"])["X-Request-Id"]
    assert first and second and first != second


def test_slow_reader_backpressures_the_backend(proxy: ProxyHandle, backend: Backend) -> None:
    size = 64 * 1024 * 1024
    client = proxy.client()
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    client.send(b"GET /big/%d HTTP/1.1\r\nHost: web.test\r\n\r\n" % size)
    status, _headers = client.head()
    assert status == 200
    # While the client reads nothing, the backend cannot finish: the proxy is not
    # buffering the body for it.
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        assert not backend.big_done
        time.sleep(0.02)
    received = len(client.buf)
    while received < size:
        chunk = client.sock.recv(1 << 20)
        assert chunk
        received += len(chunk)
    assert received == size
    wait_for(lambda: backend.big_done, what="the backend to finish")


def test_many_requests_on_many_connections(
    proxy: ProxyHandle, backend_factory: Callable[[str], Backend]
) -> None:
    clients = [proxy.client() for _ in range(10)]
    for round_ in range(5):
        for i, c in enumerate(clients):
            c.send(f"GET /{round_}/{i} HTTP/1.1\r\nHost: web.test\r\n\r\n".encode())
        for i, c in enumerate(clients):
            assert c.response().json()["path"] == f"/{round_}/{i}"


def test_absolute_form_target_uses_its_authority(proxy: ProxyHandle) -> None:
    client = Client(proxy.port)
    client.send(b"GET http://web.test/abs?q=1 HTTP/1.1\r\nHost: other.test\r\n\r\n")
    resp = client.response()
    assert resp.status == 200
    assert resp.json()["path"] == "/abs?q=1"


def test_backend_not_reading_holds_the_client_back(proxy: ProxyHandle, backend: Backend) -> None:
    size = 64 * 1024 * 1024
    client = proxy.client()
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    client.send(b"POST /stall HTTP/1.1\r\nHost: web.test\r\nContent-Length: %d\r\n\r\n" % size)
    wait_for(lambda: any(r.path == "/stall" for r in backend.requests), what="the stalled request")
    block = b"u" * 65536
    sent = 0
    client.sock.settimeout(0.5)
    try:
        while sent < size:
            sent += client.sock.send(block)
    except TimeoutError:
        pass
    # The proxy stopped reading once the backend stopped: only socket buffers' worth left.
    assert sent < 16 * 1024 * 1024
    backend.release()
    client.sock.settimeout(10)
    left = size - sent
    while left:
        n = client.sock.send(block[: min(left, len(block))])
        left -= n
    resp = client.response()
    assert resp.status == 200
    assert int(resp.body) == size
