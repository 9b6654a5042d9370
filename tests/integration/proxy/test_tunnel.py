"""WebSocket tunnels and long streams survive route swaps."""

from __future__ import annotations

from collections.abc import Callable

from websockets.sync.client import connect

from .conftest import Backend, LoopThread, ProxyHandle, WsEcho


def test_websocket_is_tunnelled_and_keeps_its_backend_across_swaps(
    proxy: ProxyHandle, loop_thread: LoopThread
) -> None:
    one, two = WsEcho(loop_thread, "one"), WsEcho(loop_thread, "two")
    try:
        proxy.put_routes(2, [{"name": "ws", "domains": ["127.0.0.1"], "backends": [one.addr]}])
        url = f"ws://127.0.0.1:{proxy.port}/socket"
        with connect(url, open_timeout=10) as ws:
            ws.send("hello")
            assert ws.recv(timeout=10) == "one:hello"
            proxy.put_routes(3, [{"name": "ws", "domains": ["127.0.0.1"], "backends": [two.addr]}])
            proxy.put_routes(4, [])
            for i in range(3):
                ws.send(f"after-{i}")
                assert ws.recv(timeout=10) == f"one:after-{i}"
            big = "x" * 300_000
            ws.send(big)
            assert ws.recv(timeout=10) == "one:" + big
            proxy.put_routes(5, [{"name": "ws", "domains": ["127.0.0.1"], "backends": [two.addr]}])
            with connect(url, open_timeout=10) as new:
                new.send("hi")
                assert new.recv(timeout=10) == "two:hi"
            ws.send("still")
            assert ws.recv(timeout=10) == "one:still"
        health = proxy.admin("GET", "/healthz")[1]
        assert health["version"] == 5
    finally:
        one.close()
        two.close()


def test_declined_upgrade_is_answered_and_closed(proxy: ProxyHandle, backend: Backend) -> None:
    client = proxy.client()
    client.send(
        b"GET /plain HTTP/1.1\r\nHost: web.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        b"early bytes that must not reach the backend as HTTP"
    )
    resp = client.response()
    assert resp.status == 200
    assert resp.header("connection") == "close"
    seen = {k.lower(): v for k, v in resp.json()["headers"]}
    assert seen["upgrade"] == "websocket"
    assert client.closed()
    assert [r.path for r in backend.requests] == ["/plain"]


def test_sse_stream_survives_a_route_swap(
    proxy: ProxyHandle, backend: Backend, backend_factory: Callable[[str], Backend]
) -> None:
    other = backend_factory("b")
    client = proxy.client()
    client.send(b"GET /sse HTTP/1.1\r\nHost: web.test\r\n\r\n")
    assert client.head()[0] == 200
    assert client.chunk() == b"data: one\n\n"
    proxy.put_routes(2, [{"name": "web", "domains": ["web.test"], "backends": [other.addr]}])
    backend.release()
    assert client.chunk() == b"data: two\n\n"
    assert client.chunk() == b""
    assert client.get().json()["backend"] == "b"
