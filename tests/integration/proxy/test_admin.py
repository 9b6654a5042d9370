"""The admin API: route swaps, health, metrics, drain and resume."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from .conftest import Backend, ProxyHandle, wait_for


def test_get_routes_shows_the_table_in_force(proxy: ProxyHandle, backend: Backend) -> None:
    status, body = proxy.admin("GET", "/routes")
    assert status == 200
    assert body == {
        "version": 1,
        "services": [{"name": "web", "domains": ["web.test"], "backends": [backend.addr]}],
    }


def test_invalid_table_is_400_and_the_old_one_keeps_running(
    proxy: ProxyHandle, backend: Backend
) -> None:
    bad = {
        "version": 2,
        "services": [
            {"name": "web", "domains": ["web.test"], "backends": [backend.addr]},
            {"name": "x", "domains": ["x.test"], "backends": []},
            {"name": "y", "domains": ["y.test"], "backends": ["nowhere"]},
        ],
    }
    status, body = proxy.admin("PUT", "/routes", bad)
    assert status == 400
    assert body["error"] == 'services[2].backends[0]: "nowhere" is not ip:port'
    status, body = proxy.admin("PUT", "/routes", b"{not json")
    assert status == 400 and "not JSON" in body["error"]
    dup = {
        "version": 3,
        "services": [
            {"name": "a", "domains": ["web.test"], "backends": []},
            {"name": "b", "domains": ["web.test"], "backends": []},
        ],
    }
    status, body = proxy.admin("PUT", "/routes", dup)
    assert status == 400 and "already served" in body["error"]
    assert proxy.admin("GET", "/routes")[1]["version"] == 1
    assert proxy.admin("GET", "/healthz")[1]["version"] == 1
    assert proxy.client().get().status == 200


def test_put_routes_swaps(proxy: ProxyHandle, backend_factory: Callable[[str], Backend]) -> None:
    other = backend_factory("b")
    status, body = proxy.admin(
        "PUT",
        "/routes",
        {
            "version": 9,
            "services": [{"name": "web", "domains": ["new.test"], "backends": [other.addr]}],
        },
    )
    assert status == 200 and body == {"version": 9, "services": 1}
    client = proxy.client()
    assert client.get(host="new.test").json()["backend"] == "b"
    assert client.get(host="web.test").status == 404


def test_unknown_admin_paths(proxy: ProxyHandle) -> None:
    assert proxy.admin("GET", "/nothing")[0] == 404
    assert proxy.admin("DELETE", "/routes")[0] == 405
    assert proxy.admin("GET", "/drain")[0] == 405


def test_metrics(proxy: ProxyHandle) -> None:
    client = proxy.client()
    for _ in range(3):
        client.get()
    client.get(host="nobody.test")
    status, text = proxy.admin("GET", "/metrics")
    assert status == 200
    assert 'sws_proxy_requests_total{service="web",status="2xx"} 3' in text
    assert 'sws_proxy_requests_total{service="",status="4xx"} 1' in text
    assert 'sws_proxy_request_duration_seconds_count{service="web"} 3' in text
    assert 'sws_proxy_request_duration_seconds_bucket{service="web",le="+Inf"} 3' in text
    assert "sws_proxy_open_connections 1" in text
    assert "sws_proxy_route_version 1" in text


def test_drain_and_resume(proxy: ProxyHandle, backend: Backend) -> None:
    idle = proxy.client()
    assert idle.get().status == 200
    quiet = proxy.client()
    assert quiet.get().status == 200
    busy = proxy.client()
    busy.send(b"GET /hold HTTP/1.1\r\nHost: web.test\r\n\r\n")
    wait_for(lambda: any(r.path == "/hold" for r in backend.requests), what="held request")
    assert proxy.admin("GET", "/healthz")[1] == {
        "status": "ok",
        "ready": True,
        "version": 1,
        "connections": 3,
    }
    assert proxy.admin("GET", "/readyz")[0] == 200

    status, health = proxy.admin("POST", "/drain")
    assert status == 200 and health["status"] == "draining" and health["ready"] is False
    assert proxy.admin("GET", "/readyz")[0] == 503
    # An idle connection's next request, within the grace, is answered with Connection: close
    # (never a socket closed under a request in flight) ...
    resp = idle.get()
    assert resp.status == 200 and resp.header("connection") == "close"
    assert idle.closed()
    # ... and one that stays idle is closed once the grace is over.
    assert quiet.closed()
    wait_for(lambda: proxy.admin("GET", "/healthz")[1]["connections"] == 1, what="idle close")
    backend.release()
    resp = busy.response()
    assert resp.status == 200 and resp.header("connection") == "close"
    assert busy.closed()
    wait_for(lambda: proxy.admin("GET", "/healthz")[1]["connections"] == 0, what="zero")

    # New connections are still answered while draining, each with Connection: close.
    late = proxy.client()
    resp = late.get()
    assert resp.status == 200 and resp.header("connection") == "close"
    # A route swap does not end the drain.
    proxy.put_routes(2, [{"name": "web", "domains": ["web.test"], "backends": [backend.addr]}])
    assert proxy.admin("GET", "/healthz")[1]["status"] == "draining"

    status, health = proxy.admin("POST", "/resume")
    assert status == 200 and health["status"] == "ok" and health["ready"] is True
    assert proxy.admin("GET", "/readyz")[0] == 200
    again = proxy.client()
    assert again.get().header("connection") == "keep-alive"
    assert again.get().status == 200


def test_drain_answers_pending_pipelined_request_then_closes(
    proxy: ProxyHandle, backend: Backend
) -> None:
    client = proxy.client()
    with ThreadPoolExecutor(1):
        client.send(b"GET /hold HTTP/1.1\r\nHost: web.test\r\n\r\n")
        wait_for(lambda: any(r.path == "/hold" for r in backend.requests), what="held")
        proxy.admin("POST", "/drain")
        backend.release()
        assert client.response().header("connection") == "close"
        assert client.closed()
