"""Host routing, backend choice, retries and the proxy's own error answers."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import Backend, ProxyHandle, free_port, wait_for


@pytest.mark.parametrize(
    "host",
    [
        "web.test",
        "WEB.Test",
        "web.test:8080",
        "web.test.",
        "Web.Test.:1",
        "web.test ",
        "web.test:1 ",
    ],
)
def test_host_routes_ignoring_port_case_and_trailing_dot(
    proxy: ProxyHandle, backend: Backend, host: str
) -> None:
    resp = proxy.client().get("/hello?x=1", host=host)
    assert resp.status == 200
    assert resp.json()["path"] == "/hello?x=1"
    assert resp.json()["backend"] == "a"


def test_http10_without_host_is_routed_as_no_host(proxy: ProxyHandle, backend: Backend) -> None:
    # HTTP/1.0 may omit Host (HTTP/1.1 may not: 400, in test_hardening); no service has "".
    client = proxy.client()
    client.send(b"GET / HTTP/1.0\r\n\r\n")
    resp = client.response()
    assert resp.status == 404
    assert b'no service for host ""' in resp.body
    assert resp.header("connection") == "close"
    assert backend.requests == []


def test_unknown_host_is_404_naming_it(proxy: ProxyHandle, backend: Backend) -> None:
    resp = proxy.client().get(host="nobody.test")
    assert resp.status == 404
    assert b'"nobody.test"' in resp.body
    assert backend.requests == []


def test_service_without_backends_is_503(proxy: ProxyHandle) -> None:
    proxy.put_routes(2, [{"name": "idle", "domains": ["idle.test"], "backends": []}])
    resp = proxy.client().get(host="idle.test")
    assert resp.status == 503
    assert resp.body == b"no healthy backend for idle\n"


def test_refused_backend_is_502(proxy: ProxyHandle) -> None:
    dead = f"127.0.0.1:{free_port()}"
    proxy.put_routes(2, [{"name": "dead", "domains": ["dead.test"], "backends": [dead]}])
    resp = proxy.client().get(host="dead.test")
    assert resp.status == 502
    assert dead.encode() in resp.body


def test_refused_backend_is_retried_on_another(proxy: ProxyHandle, backend: Backend) -> None:
    dead = f"127.0.0.1:{free_port()}"
    proxy.put_routes(
        2, [{"name": "web", "domains": ["web.test"], "backends": [dead, backend.addr]}]
    )
    client = proxy.client()
    for _ in range(6):
        resp = client.get()
        assert resp.status == 200
        assert resp.json()["backend"] == "a"
    assert len(backend.requests) == 6


def test_slow_backend_is_504(proxy_factory: Callable[..., ProxyHandle], backend: Backend) -> None:
    proxy = proxy_factory(upstream_timeout=0.3)
    proxy.put_routes(1, [{"name": "web", "domains": ["web.test"], "backends": [backend.addr]}])
    resp = proxy.client().get("/slow/3")
    assert resp.status == 504
    assert b"did not answer within 0.3s" in resp.body


def test_pooled_connection_closed_by_backend_is_retried_for_get(
    proxy: ProxyHandle, backend: Backend
) -> None:
    client = proxy.client()
    assert client.get("/drop-next").status == 200
    # The pooled connection is dropped unanswered by the backend; a GET is sent again.
    resp = client.get("/after")
    assert resp.status == 200
    assert resp.json()["path"] == "/after"
    assert backend.connections == 2


def test_pooled_connection_closed_by_backend_is_502_for_a_body(
    proxy: ProxyHandle, backend: Backend
) -> None:
    client = proxy.client()
    assert client.get("/drop-next").status == 200
    client.send(b"POST /p HTTP/1.1\r\nHost: web.test\r\nContent-Length: 3\r\n\r\nabc")
    assert client.response().status == 502


def test_least_in_flight_then_round_robin(
    proxy: ProxyHandle, backend_factory: Callable[[str], Backend]
) -> None:
    a, b = backend_factory("A"), backend_factory("B")
    proxy.put_routes(2, [{"name": "web", "domains": ["web.test"], "backends": [a.addr, b.addr]}])
    # Idle backends tie: turns alternate.
    client = proxy.client()
    names = [client.get().json()["backend"] for _ in range(6)]
    assert sorted(names) == ["A", "A", "A", "B", "B", "B"]
    assert all(names[i] != names[i + 1] for i in range(5))
    # One backend busy with a held request: every new request goes to the other.
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(lambda: proxy.client().get("/hold"))
        wait_for(lambda: _holding(a, b) != "", what="the held request")
        busy = _holding(a, b)
        for _ in range(4):
            assert proxy.client().get().json()["backend"] != busy
        a.release()
        b.release()
        assert held.result(10).status == 200


def _holding(a: Backend, b: Backend) -> str:
    """Name of the backend that has accepted the /hold request (its head was read)."""
    for backend in (a, b):
        if any(r.path == "/hold" for r in backend.requests):
            return backend.name
    return ""


def test_route_swap_keeps_in_flight_request_and_moves_next_one(
    proxy: ProxyHandle, backend: Backend, backend_factory: Callable[[str], Backend]
) -> None:
    other = backend_factory("b")
    client = proxy.client()
    client.send(b"GET /hold HTTP/1.1\r\nHost: web.test\r\n\r\n")
    wait_for(lambda: any(r.path == "/hold" for r in backend.requests), what="held request")
    proxy.put_routes(2, [{"name": "web", "domains": ["web.test"], "backends": [other.addr]}])
    backend.release()
    resp = client.response()
    assert resp.status == 200 and resp.json()["backend"] == "a"
    # Same keep-alive connection, next request: the new table.
    assert client.get().json()["backend"] == "b"
