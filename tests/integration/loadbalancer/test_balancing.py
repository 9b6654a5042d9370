from __future__ import annotations

import socket
from collections import Counter

from tests.integration.loadbalancer.backends import NamedHttpServer
from tests.integration.loadbalancer.conftest import http_get, wait_for


def backend_spec(server: NamedHttpServer, health: bool = False) -> str:
    spec = f"{server.name}={server.address}"
    if health:
        spec += f",health=http://{server.address}/healthz"
    return spec


def open_held(balancer, count: int) -> tuple[list[socket.socket], list[str]]:
    """Open connections through the balancer, learn which backend serves each, keep them."""
    sockets, names = [], []
    for _ in range(count):
        sock = balancer.connect()
        status, body = http_get(sock)
        assert status == 200
        sockets.append(sock)
        names.append(body.decode())
    return sockets, names


def one_request(balancer) -> str:
    with balancer.connect() as sock:
        status, body = http_get(sock, keep_alive=False)
    assert status == 200
    return body.decode()


def test_idle_backends_share_new_connections(balancer_factory) -> None:
    a, b = NamedHttpServer("a").start(), NamedHttpServer("b").start()
    try:
        lb = balancer_factory(backend_spec(a), backend_spec(b))
        held, names = open_held(lb, 6)
        assert Counter(names) == {"a": 3, "b": 3}
        counts = lb.admin.backends()
        assert counts["a"]["open_connections"] == 3
        assert counts["b"]["open_connections"] == 3
        for sock in held:
            sock.close()
    finally:
        a.stop()
        b.stop()


def test_new_connections_go_to_the_least_loaded_backend(balancer_factory) -> None:
    a, b = NamedHttpServer("a").start(), NamedHttpServer("b").start()
    try:
        lb = balancer_factory(backend_spec(a), backend_spec(b))
        lb.admin.drain("b")
        held_a, names = open_held(lb, 4)
        assert names == ["a"] * 4
        lb.admin.enable("b")
        held_b, names = open_held(lb, 4)
        assert names == ["b"] * 4, "b had fewer connections, so every new one belongs to it"
        # Now level: the next two split one each.
        held_more, names = open_held(lb, 2)
        assert sorted(names) == ["a", "b"]
        for sock in held_a + held_b + held_more:
            sock.close()
        wait_for(lambda: all(v["open_connections"] == 0 for v in lb.admin.backends().values()))
    finally:
        a.stop()
        b.stop()


def test_drain_stops_new_connections_and_keeps_existing_ones(balancer_factory) -> None:
    a, b = NamedHttpServer("a").start(), NamedHttpServer("b").start()
    try:
        lb = balancer_factory(backend_spec(a), backend_spec(b))
        held, names = open_held(lb, 2)
        on_a = held[names.index("a")]

        drained = lb.admin.drain("a")
        assert drained["state"] == "draining"
        assert drained["open_connections"] == 1

        assert [one_request(lb) for _ in range(6)] == ["b"] * 6
        # The connection that was already on a still works, and is still on a.
        assert http_get(on_a) == (200, b"a")

        on_a.close()
        wait_for(lambda: lb.admin.backend("a")["open_connections"] == 0)

        assert lb.admin.enable("a")["state"] == "enabled"
        # b still holds one connection, a none: the next goes to a.
        assert one_request(lb) == "a"
        for sock in held:
            sock.close()
    finally:
        a.stop()
        b.stop()


def test_refused_connect_is_retried_on_the_other_backend(balancer_factory) -> None:
    a, b = NamedHttpServer("a").start(), NamedHttpServer("b").start()
    try:
        # Checks far apart, so only the passive path can notice a's death in this test.
        lb = balancer_factory(backend_spec(a), backend_spec(b), check_interval=60.0)
        wait_for(lambda: lb.admin.backend("a")["health"] == "up")
        a.stop()
        assert [one_request(lb) for _ in range(6)] == ["b"] * 6
        state = lb.admin.backend("a")
        assert state["health"] == "down"
        assert state["connect_failures"] == 1, "after one refusal a gets no more connections"
        assert state["check_failures"] == 0
        _status, _, metrics = lb.admin.request("GET", "/metrics")
        assert "sws_lb_retries_total 1\n" in metrics.decode()
    finally:
        b.stop()


def test_closed_port_is_found_down_and_clients_never_notice(balancer_factory) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    closed_port = probe.getsockname()[1]
    probe.close()
    b = NamedHttpServer("b").start()
    try:
        lb = balancer_factory(f"a=127.0.0.1:{closed_port}", backend_spec(b))
        assert [one_request(lb) for _ in range(4)] == ["b"] * 4
        wait_for(lambda: lb.admin.backend("a")["health"] == "down")
    finally:
        b.stop()


def test_http_health_check_takes_backend_down_and_up_with_fall_and_rise(balancer_factory) -> None:
    a, b = NamedHttpServer("a").start(), NamedHttpServer("b").start()
    try:
        lb = balancer_factory(
            backend_spec(a, health=True),
            backend_spec(b, health=True),
            check_interval=0.05,
            rise=3,
            fall=2,
        )
        wait_for(lambda: lb.admin.backend("a")["health"] == "up")
        a.healthy = False
        state = wait_for(lambda: (s := lb.admin.backend("a"))["health"] == "down" and s, timeout=3)
        assert state["consecutive_failures"] >= 2
        assert state["last_check_error"] == "status 503"
        assert [one_request(lb) for _ in range(4)] == ["b"] * 4

        a.healthy = True
        state = wait_for(lambda: (s := lb.admin.backend("a"))["health"] == "up" and s, timeout=3)
        assert state["consecutive_successes"] >= 3
        assert state["check_failures"] >= 2
        held, names = open_held(lb, 2)
        assert sorted(names) == ["a", "b"]
        for sock in held:
            sock.close()
    finally:
        a.stop()
        b.stop()


def test_no_available_backend_closes_the_client(balancer_factory) -> None:
    a = NamedHttpServer("a").start()
    try:
        lb = balancer_factory(backend_spec(a))
        assert lb.admin.json("GET", "/readyz")[0] == 200
        lb.admin.drain("a", force=True)
        status, document = lb.admin.json("GET", "/readyz")
        assert (status, document["available"]) == (503, [])
        with lb.connect() as sock:
            assert sock.recv(100) == b""
        _, _, metrics = lb.admin.request("GET", "/metrics")
        assert "sws_lb_no_backend_total 1\n" in metrics.decode()
        assert lb.admin.json("GET", "/healthz") == (200, {"status": "ok"})
    finally:
        a.stop()


def test_connect_timeout_moves_the_client_to_the_other_backend(balancer_factory) -> None:
    # A listener that never accepts, with room for one queued connection: the first health
    # check takes that room, after which the kernel drops SYNs and connects hang.
    frozen = socket.socket()
    frozen.bind(("127.0.0.1", 0))
    frozen.listen(0)
    b = NamedHttpServer("b").start()
    try:
        lb = balancer_factory(
            f"a=127.0.0.1:{frozen.getsockname()[1]}",
            backend_spec(b),
            check_interval=60.0,
            connect_timeout=0.3,
        )
        wait_for(lambda: lb.admin.backend("a")["health"] == "up")
        assert [one_request(lb) for _ in range(4)] == ["b"] * 4
        state = lb.admin.backend("a")
        assert (state["health"], state["connect_failures"]) == ("down", 1)
    finally:
        frozen.close()
        b.stop()


def test_refusals_are_counted_each_but_logged_at_most_once_a_second(
    balancer_factory, caplog
) -> None:
    lb = balancer_factory("a=127.0.0.1:1")
    lb.admin.drain("a", force=True)
    with caplog.at_level("WARNING", logger="sws.loadbalancer"):
        for _ in range(10):
            with lb.connect() as sock:
                assert sock.recv(10) == b""
    _, _, metrics = lb.admin.request("GET", "/metrics")
    assert "sws_lb_no_backend_total 10\n" in metrics.decode()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("no_backend")]
    assert 1 <= len(lines) <= 3, lines
    assert "clients_refused=1" in lines[0]
