"""Requests that must never reach a backend, limits, and timeouts against slow clients."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .conftest import Backend, ProxyHandle

SMUGGLING = {
    "content-length-and-chunked": (
        b"POST / HTTP/1.1\r\nHost: web.test\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: web.test\r\n\r\n"
    ),
    "chunked-and-content-length": (
        b"POST / HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 4\r\n\r\n0\r\n\r\n"
    ),
    "differing-content-lengths": (
        b"POST / HTTP/1.1\r\nHost: web.test\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd"
    ),
    "content-length-list": (
        b"POST / HTTP/1.1\r\nHost: web.test\r\nContent-Length: 4, 40\r\n\r\nabcd"
    ),
    "invalid-chunk-size": (
        b"POST / HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nabc\r\n0\r\n\r\n"
    ),
    "chunk-size-overflow": (
        b"POST / HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"fffffffffffffffff1\r\nabc\r\n0\r\n\r\n"
    ),
    "coding-other-than-chunked": (
        b"POST / HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: gzip\r\n\r\nabc"
    ),
    "chunked-not-last": (
        b"POST / HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    ),
    "space-before-colon": (
        b"POST / HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding : chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    ),
    "two-hosts": b"GET / HTTP/1.1\r\nHost: web.test\r\nHost: other.test\r\n\r\n",
    "no-host": b"GET / HTTP/1.1\r\n\r\n",
    "bare-lf-in-header": b"GET / HTTP/1.1\r\nHost: web.test\nX: y\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(SMUGGLING))
def test_ambiguous_request_is_400_and_never_forwarded(
    proxy: ProxyHandle, backend: Backend, name: str
) -> None:
    client = proxy.client()
    client.send(SMUGGLING[name])
    resp = client.response()
    assert resp.status == 400, resp.body
    assert resp.header("connection") == "close"
    assert client.closed()
    # A good request on a new connection arrives; nothing before it did.
    assert proxy.client().get("/marker").status == 200
    assert [r.path for r in backend.requests] == ["/marker"]


def test_header_section_over_the_limit_is_431(proxy: ProxyHandle, backend: Backend) -> None:
    client = proxy.client()
    client.send(b"GET / HTTP/1.1\r\nHost: web.test\r\n" + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n")
    assert client.response().status == 431
    assert backend.requests == []


def test_many_headers_over_the_limit_is_431(proxy: ProxyHandle) -> None:
    client = proxy.client()
    fields = b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 100) for i in range(700))
    client.send(b"GET / HTTP/1.1\r\nHost: web.test\r\n" + fields + b"\r\n")
    assert client.response().status == 431


def test_unfinished_huge_header_is_431(proxy: ProxyHandle) -> None:
    client = proxy.client()
    # No end of the head in sight: the proxy must not keep buffering.
    client.send(b"GET / HTTP/1.1\r\nHost: web.test\r\nX-Big: " + b"a" * 100000)
    assert client.response().status == 431


def test_long_url_is_414(proxy: ProxyHandle, backend: Backend) -> None:
    client = proxy.client()
    client.send(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: web.test\r\n\r\n")
    assert client.response().status == 414
    assert backend.requests == []


def test_connect_is_refused(proxy: ProxyHandle, backend: Backend) -> None:
    client = proxy.client()
    client.send(b"CONNECT web.test:443 HTTP/1.1\r\nHost: web.test:443\r\n\r\n")
    assert client.response().status == 405
    assert backend.requests == []


def test_slowloris_head_times_out(
    proxy_factory: Callable[..., ProxyHandle], backend: Backend
) -> None:
    proxy = proxy_factory(header_timeout=0.3)
    proxy.put_routes(1, [{"name": "web", "domains": ["web.test"], "backends": [backend.addr]}])
    client = proxy.client()
    client.send(b"GET / HTTP/1.1\r\nHost: web.test\r\n")
    for i in range(100):
        try:
            client.send(b"X-Drip-%d: 1\r\n" % i)
        except OSError:
            break
        if client.closed(timeout=0.05):
            break
    else:
        raise AssertionError("the dripping client was never cut off")
    assert b"408" in client.buf.split(b"\r\n", 1)[0] or client.buf == b""
    assert backend.requests == []


def test_silent_new_connection_times_out(proxy_factory: Callable[..., ProxyHandle]) -> None:
    proxy = proxy_factory(header_timeout=0.2)
    assert proxy.client().closed(timeout=5)


def test_idle_keep_alive_connection_times_out(
    proxy_factory: Callable[..., ProxyHandle], backend: Backend
) -> None:
    proxy = proxy_factory(keepalive_timeout=0.3)
    proxy.put_routes(1, [{"name": "web", "domains": ["web.test"], "backends": [backend.addr]}])
    client = proxy.client()
    assert client.get().status == 200
    assert client.closed(timeout=5)


def test_stalled_body_times_out(
    proxy_factory: Callable[..., ProxyHandle], backend: Backend
) -> None:
    proxy = proxy_factory(body_timeout=0.3)
    proxy.put_routes(1, [{"name": "web", "domains": ["web.test"], "backends": [backend.addr]}])
    client = proxy.client()
    client.send(b"POST / HTTP/1.1\r\nHost: web.test\r\nContent-Length: 10\r\n\r\nabc")
    resp = client.response()
    assert resp.status == 408
    assert resp.header("connection") == "close"


@pytest.mark.parametrize("named", ["content-length", "transfer-encoding", "host"])
def test_fields_named_in_connection_never_strip_the_proxys_own_framing(
    proxy: ProxyHandle, backend: Backend, named: str
) -> None:
    # `Connection: content-length` asks a proxy to drop a hop-by-hop field of that name. If
    # the framing the proxy writes upstream were dropped with it, the backend would read the
    # body as a request of its own.
    body = b"GET /smuggled HTTP/1.1\r\nHost: web.test\r\n\r\n"
    client = proxy.client()
    client.send(
        b"POST /upload HTTP/1.1\r\nHost: web.test\r\nConnection: " + named.encode() + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    resp = client.response()
    assert resp.status == 200, resp.body
    assert proxy.client().get("/marker").status == 200
    assert [r.path for r in backend.requests] == ["/upload", "/marker"]
    upload = backend.requests[0]
    assert upload.body == body
    assert upload.header("content-length") == str(len(body)) or (
        upload.header("transfer-encoding") == "chunked"
    )
    assert upload.header("host") == "web.test"
