from __future__ import annotations

import re
import socket

from tests.integration.loadbalancer.backends import NamedHttpServer
from tests.integration.loadbalancer.conftest import http_get, wait_for

BACKEND_KEYS = {
    "name", "address", "state", "health", "health_check", "open_connections",
    "total_connections", "connect_failures", "check_failures", "consecutive_successes",
    "consecutive_failures", "last_check_error",
}  # fmt: skip

SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$"
)


def parse_metrics(text: str) -> dict[str, dict[str, float]]:
    """Parse Prometheus text; fail on any line that is not a comment, TYPE/HELP or sample."""
    families: dict[str, str] = {}
    samples: dict[str, dict[str, float]] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in {"counter", "gauge"}, line
            families[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        assert match["name"] in families, f"sample before its TYPE: {line!r}"
        labels = match["labels"] or ""
        assert labels == "" or re.fullmatch(r'backend="[^"]*"', labels), line
        samples.setdefault(match["name"], {})[labels] = float(match["value"])
    return samples


def test_backends_document_shape(balancer_factory) -> None:
    a = NamedHttpServer("a").start()
    try:
        lb = balancer_factory(f"a={a.address},health=http://{a.address}/healthz", "b=localhost:1")
        status, document = lb.admin.json("GET", "/backends")
        assert status == 200
        assert [b["name"] for b in document["backends"]] == ["a", "b"]
        for backend in document["backends"]:
            assert set(backend) == BACKEND_KEYS
        a_doc, b_doc = document["backends"]
        assert a_doc["address"] == a.address
        assert a_doc["health_check"] == f"http://{a.address}/healthz"
        assert b_doc["health_check"] == "tcp"
        assert a_doc["state"] == "enabled"
        assert a_doc["health"] in {"unknown", "up"}
        wait_for(lambda: lb.admin.backend("b")["health"] == "down")
        assert lb.admin.backend("b")["last_check_error"]
    finally:
        a.stop()


def test_unknown_backend_is_404_naming_it(balancer_factory) -> None:
    lb = balancer_factory("a=127.0.0.1:1")
    for method, path in [
        ("GET", "/backends/nope"),
        ("POST", "/backends/nope/drain"),
        ("POST", "/backends/nope/enable"),
    ]:
        status, document = lb.admin.json(method, path)
        assert status == 404
        assert document["backend"] == "nope"
        assert '"nope"' in document["error"]
        assert document["known"] == ["a"]


def test_unknown_path_and_wrong_method(balancer_factory) -> None:
    lb = balancer_factory("a=127.0.0.1:1")
    status, document = lb.admin.json("GET", "/nothing/here")
    assert status == 404
    assert "/nothing/here" in document["error"]
    status, headers, _body = lb.admin.request("GET", "/backends/a/drain")
    assert status == 405
    assert headers["Allow"] == "POST"
    status, headers, _ = lb.admin.request("DELETE", "/backends")
    assert (status, headers["Allow"]) == (405, "GET")


def test_drain_and_enable_return_the_backend_state(balancer_factory) -> None:
    lb = balancer_factory("a=127.0.0.1:1", "b=127.0.0.1:2")
    drained = lb.admin.drain("a")
    assert set(drained) == BACKEND_KEYS
    assert drained["state"] == "draining"
    assert lb.admin.drain("a")["state"] == "draining", "draining twice is harmless"
    assert lb.admin.backend("b")["state"] == "enabled"
    assert lb.admin.enable("a")["state"] == "enabled"


def test_malformed_request_gets_400(balancer_factory) -> None:
    lb = balancer_factory("a=127.0.0.1:1")
    address = lb.server.admin_address
    with socket.create_connection((address.host, address.port), timeout=5) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 400 ")


def test_keep_alive_serves_several_requests_on_one_connection(balancer_factory) -> None:
    lb = balancer_factory("a=127.0.0.1:1")
    address = lb.server.admin_address
    with socket.create_connection((address.host, address.port), timeout=5) as sock:
        for _ in range(3):
            status, body = http_get(sock, "/healthz")
            assert (status, body) == (200, b'{"status": "ok"}\n')


def test_metrics_parse_and_count(balancer_factory) -> None:
    a = NamedHttpServer("a").start()
    try:
        lb = balancer_factory(f"a={a.address}", "b=127.0.0.1:1")
        wait_for(lambda: lb.admin.backend("b")["health"] == "down")
        for _ in range(3):
            with lb.connect() as sock:
                assert http_get(sock, keep_alive=False)[1] == b"a"
        wait_for(lambda: lb.admin.backend("a")["open_connections"] == 0)
        status, headers, body = lb.admin.request("GET", "/metrics")
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        samples = parse_metrics(body.decode())
        assert samples["sws_lb_backend_connections_total"] == {
            'backend="a"': 3.0,
            'backend="b"': 0.0,
        }
        assert samples["sws_lb_backend_up"] == {'backend="a"': 1.0, 'backend="b"': 0.0}
        assert samples["sws_lb_backend_enabled"]['backend="a"'] == 1.0
        assert samples["sws_lb_backend_connections_open"]['backend="a"'] == 0.0
        assert samples["sws_lb_backend_health_check_failures_total"]['backend="b"'] >= 1
        assert samples["sws_lb_client_connections_total"][""] == 3.0
        assert samples["sws_lb_retries_total"][""] == 0.0
    finally:
        a.stop()


def test_draining_the_last_available_backend_needs_force(balancer_factory) -> None:
    a, b = NamedHttpServer("a").start(), NamedHttpServer("b").start()
    try:
        lb = balancer_factory(f"a={a.address}", f"b={b.address}")
        lb.admin.drain("a")
        status, document = lb.admin.json("POST", "/backends/b/drain")
        assert status == 409
        assert document["backend"] == "b"
        assert '"b" would leave no backend' in document["error"]
        assert lb.admin.backend("b")["state"] == "enabled"
        assert lb.admin.drain("b", force=True)["state"] == "draining"
        lb.admin.enable("a")
        lb.admin.enable("b")
        # With a down, b is the last one available too.
        a.stop()
        wait_for(lambda: lb.admin.backend("a")["health"] == "down")
        assert lb.admin.json("POST", "/backends/b/drain")[0] == 409
    finally:
        a.stop()  # stopping twice is harmless
        b.stop()
