"""sws-proxy as a process: start-up, access log, SIGTERM drain-and-exit."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Backend, Client, wait_for

ROOT = Path(__file__).resolve().parents[3]


class ProxyProcess:
    def __init__(self, tmp_path: Path, routes: dict[str, object], *args: str) -> None:
        routes_file = tmp_path / "routes.json"
        routes_file.write_text(json.dumps(routes))
        self.stdout = open(tmp_path / "stdout", "w+b")  # noqa: SIM115
        self.stderr = open(tmp_path / "stderr", "w+b")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "proxy",
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--routes",
                str(routes_file),
                *args,
            ],
            cwd=ROOT,
            stdout=self.stdout,
            stderr=self.stderr,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        wait_for(
            lambda: b"proxy_started" in self.err() or self.proc.poll() is not None,
            timeout=60,
            what="proxy_started",
        )
        found = re.search(rb"listen=127.0.0.1:(\d+) admin=127.0.0.1:(\d+)", self.err())
        assert found, self.err()
        self.port, self.admin_port = int(found[1]), int(found[2])

    def err(self) -> bytes:
        return Path(self.stderr.name).read_bytes()

    def out(self) -> bytes:
        return Path(self.stdout.name).read_bytes()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[object]:
    made: list[ProxyProcess] = []

    def make(routes: dict[str, object], *args: str) -> ProxyProcess:
        p = ProxyProcess(tmp_path, routes, *args)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


def _routes(backend: Backend) -> dict[str, object]:
    return {
        "version": 3,
        "services": [{"name": "web", "domains": ["web.test"], "backends": [backend.addr]}],
    }


def test_sigterm_drains_then_exits(start: object, backend: Backend) -> None:
    proxy = start(_routes(backend), "--drain-timeout", "20")  # type: ignore[operator]
    idle = Client(proxy.port)
    assert idle.get().status == 200
    busy = Client(proxy.port)
    busy.send(b"GET /hold HTTP/1.1\r\nHost: web.test\r\n\r\n")
    wait_for(lambda: any(r.path == "/hold" for r in backend.requests), what="held request")
    proxy.proc.send_signal(signal.SIGTERM)
    assert idle.closed()
    # Still running: the held request is in flight.
    assert proxy.proc.poll() is None
    backend.release()
    resp = busy.response()
    assert resp.status == 200 and resp.header("connection") == "close"
    assert proxy.proc.wait(10) == 0
    assert b"proxy_draining" in proxy.err()


def _admin_get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_sigterm_reports_not_ready_and_keeps_serving_before_draining(
    start: object, backend: Backend
) -> None:
    proxy = start(_routes(backend), "--shutdown-delay", "3")  # type: ignore[operator]
    assert _admin_get(proxy.admin_port, "/readyz")[0] == 200
    began = time.monotonic()
    proxy.proc.send_signal(signal.SIGTERM)
    # The balancer's health check sees "not ready" at once ...
    wait_for(
        lambda: _admin_get(proxy.admin_port, "/readyz")[0] == 503, what="/readyz answering 503"
    )
    # ... while a connection that still arrives is served normally, not closed under it.
    late = Client(proxy.port)
    resp = late.get()
    assert time.monotonic() - began < 3, "the shutdown delay ran out before the check"
    assert resp.status == 200 and resp.header("connection") == "keep-alive"
    assert b"proxy_unready" in proxy.err()
    assert proxy.proc.wait(20) == 0
    assert late.closed()


def test_not_ready_until_a_route_table_is_in_force(tmp_path: Path, backend: Backend) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stderr is not None
        line = b""
        deadline = time.monotonic() + 60
        while b"proxy_started" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
        found = re.search(rb"admin=127.0.0.1:(\d+)", line)
        assert found, line
        admin = int(found[1])
        status, health = _admin_get(admin, "/readyz")
        assert (status, health["ready"], health["version"]) == (503, False, 0)
        assert _admin_get(admin, "/healthz")[0] == 200
        import urllib.request

        body = json.dumps(_routes(backend)).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{admin}/routes", data=body, method="PUT"
        )
        with urllib.request.urlopen(request, timeout=5) as r:
            assert r.status == 200
        status, health = _admin_get(admin, "/readyz")
        assert (status, health["ready"], health["version"]) == (200, True, 3)
    finally:
        proc.kill()
        proc.wait(10)


def test_sigterm_exits_after_the_drain_timeout(start: object, backend: Backend) -> None:
    proxy = start(_routes(backend), "--drain-timeout", "0.5")  # type: ignore[operator]
    busy = Client(proxy.port)
    busy.send(b"GET /hold HTTP/1.1\r\nHost: web.test\r\n\r\n")
    wait_for(lambda: any(r.path == "/hold" for r in backend.requests), what="held request")
    began = time.monotonic()
    proxy.proc.send_signal(signal.SIGTERM)
    assert proxy.proc.wait(10) == 0
    assert time.monotonic() - began < 5
    assert busy.closed()


def test_access_log_is_one_json_line_per_request_without_query_or_secrets(
    start: object, backend: Backend
) -> None:
    proxy = start(_routes(backend))  # type: ignore[operator]
    client = Client(proxy.port)
    client.get(
        "/path/x?token=s3cret", extra="Authorization: Bearer s3cret\r\nX-Request-Id: rid-1\r\n"
    )
    client.get(host="nobody.test")
    wait_for(lambda: proxy.out().count(b"\n") >= 2, what="two access log lines")
    lines = [json.loads(line) for line in proxy.out().splitlines()]
    first = lines[0]
    assert first["host"] == "web.test"
    assert first["method"] == "GET"
    assert first["path"] == "/path/x"
    assert first["status"] == 200
    assert first["bytes"] > 0
    assert first["duration"] >= 0
    assert first["backend"] == backend.addr
    assert first["service"] == "web"
    assert first["request_id"] == "rid-1"
    assert "time" in first
    assert lines[1]["status"] == 404
    assert b"s3cret" not in proxy.out() + proxy.err()


def test_no_access_log(start: object, backend: Backend) -> None:
    proxy = start(_routes(backend), "--no-access-log")  # type: ignore[operator]
    Client(proxy.port).get()
    proxy.proc.send_signal(signal.SIGTERM)
    assert proxy.proc.wait(10) == 0
    assert proxy.out() == b""


def test_bad_routes_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    routes.write_text(
        json.dumps(
            {"version": 1, "services": [{"name": "a", "domains": ["a.x"], "backends": ["x"]}]}
        )
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--routes",
            str(routes),
        ],
        cwd=ROOT,
        capture_output=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 2
    assert result.stderr.decode().strip() == (
        f'sws-proxy: {routes}: services[0].backends[0]: "x" is not ip:port'
    )


def test_workers_share_the_port_and_follow_the_admin_api(
    start: object, backend: Backend, backend_factory: object
) -> None:
    proxy = start(_routes(backend), "--workers", "2", "--no-access-log")  # type: ignore[operator]
    clients = [Client(proxy.port) for _ in range(24)]
    prefixes = {dict(c.get().json()["headers"])["X-Request-Id"].rsplit("-", 1)[0] for c in clients}
    assert len(prefixes) == 2, "connections should be spread over both workers"
    admin = AdminClient(proxy.admin_port)
    health = admin.call("GET", "/healthz")
    assert health == {"status": "ok", "ready": True, "version": 3, "connections": 24, "workers": 2}
    other = backend_factory("b")  # type: ignore[operator]
    table = {
        "version": 4,
        "services": [{"name": "web", "domains": ["web.test"], "backends": [other.addr]}],
    }
    assert admin.call("PUT", "/routes", table) == {"version": 4, "services": 1}
    assert all(c.get().json()["backend"] == "b" for c in clients)
    metrics = admin.call("GET", "/metrics")
    assert 'sws_proxy_requests_total{service="web",status="2xx"} 48' in metrics
    assert "sws_proxy_workers 2" in metrics
    assert admin.call("POST", "/drain")["status"] == "draining"
    assert all(c.closed() for c in clients)
    proxy.proc.send_signal(signal.SIGTERM)
    assert proxy.proc.wait(20) == 0


class AdminClient:
    def __init__(self, port: int) -> None:
        self.port = port

    def call(self, method: str, path: str, body: object = None) -> Any:
        data = b"" if body is None else json.dumps(body).encode()
        c = Client(self.port)
        c.send(
            b"%s %s HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s"
            % (method.encode(), path.encode(), len(data), data)
        )
        resp = c.response()
        c.close()
        if resp.header("content-type").startswith("application/json"):
            return resp.json()
        return resp.body.decode()
