"""Real parts for the rolling-swap tests: two sws-proxy processes behind one sws-loadbalancer
process, real backends on 127.0.0.1, keep-alive clients that count every failure, and a
watcher that samples the balancer's view of the proxies throughout.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest

from agent.config import Config, ProxyEndpoint
from confdb import routes
from confdb.migrate import migrate
from sws.route_table import Route, RouteTable
from tests.conftest import wait_until

pytestmark = pytest.mark.postgres

PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def request_json(url: str, method: str = "GET", timeout: float = 2.0) -> Any:
    data = b"" if method in ("POST", "PUT") else None
    req = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as response:
        return json.loads(response.read())


# -- backends ------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").split(":")[0]
        if self.path.startswith("/hold"):
            # Answer only once the test lets go (bounded), to keep a request in flight.
            self.server.released.wait(30)  # type: ignore[attr-defined]
        body = json.dumps({"host": host, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Backend:
    """A threaded keep-alive HTTP server answering {"host": ..., "path": ...}; requests to
    /hold are answered only once `released` is set."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.server = ThreadingHTTPServer((host, 0), _Handler)
        self.server.daemon_threads = True
        # Set to answer the requests held at /hold.
        self.released = threading.Event()
        self.server.released = self.released  # type: ignore[attr-defined]
        self.address = f"{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


class EchoServer:
    """A WebSocket echo server (the `websockets` library) on its own thread and loop."""

    def __init__(self) -> None:
        import asyncio

        from websockets.asyncio.server import serve

        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: Any = None

        async def echo(ws: Any) -> None:
            async for message in ws:
                await ws.send(message)

        async def main() -> None:
            self._stop = asyncio.get_running_loop().create_future()
            async with serve(echo, "127.0.0.1", self.port):
                self._ready.set()
                await self._stop

        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(main(),), daemon=True
        )
        self._thread.start()
        assert self._ready.wait(5), "echo server did not start"

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(5)


# -- proxies and the balancer --------------------------------------------------------------------


class ProxyProcess:
    """One `python -m proxy` process on fixed 127.0.0.1 ports (kept across restarts)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.listen = free_port()
        self.admin = free_port()
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin}"

    @property
    def endpoint(self) -> ProxyEndpoint:
        return ProxyEndpoint(self.name, self.admin_url)

    def start(self) -> None:
        self.popen = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "proxy",
                "--listen",
                f"127.0.0.1:{self.listen}",
                "--admin",
                f"127.0.0.1:{self.admin}",
                "--no-access-log",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.health, timeout=20, what=f"{self.name} admin API")

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = request_json(f"{self.admin_url}/healthz")
        return body

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)

    def terminate(self) -> None:
        """SIGTERM: the proxy drains and exits by itself."""
        assert self.popen is not None
        self.popen.send_signal(signal.SIGTERM)
        self.popen.wait(30)


class Balancer:
    """One `python -m loadbalancer` process in front of the proxies."""

    def __init__(self, proxies: list[ProxyProcess]) -> None:
        self.listen = free_port()
        self.admin = free_port()
        args = [
            PYTHON,
            "-m",
            "loadbalancer",
            "--listen",
            f"127.0.0.1:{self.listen}",
            "--admin",
            f"127.0.0.1:{self.admin}",
            "--check-interval",
            "0.2",
            "--check-timeout",
            "0.5",
            "--log-level",
            "warning",
        ]
        for p in proxies:
            args += [
                "--backend",
                f"{p.name}=127.0.0.1:{p.listen},health=http://127.0.0.1:{p.admin}/readyz",
            ]
        self.popen = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: request_json(f"{self.admin_url}/healthz"), timeout=20, what="balancer")

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin}"

    def backends(self) -> dict[str, dict[str, Any]]:
        body = request_json(f"{self.admin_url}/backends")
        return {b["name"]: b for b in body["backends"]}

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)


# -- clients -------------------------------------------------------------------------------------


@dataclass
class Failure:
    started: float
    ended: float
    error: str


@dataclass
class Load:
    """Keep-alive clients through the balancer, counting answers, failures and retries.

    Before reusing a kept-alive connection a client checks that the server has not ended it
    meanwhile, as urllib3 does. A client whose connection the server closed just as the next
    request went out sends that request again on a fresh connection, as HTTP clients do
    (RFC 9112, 9.3.1); such retries are counted apart. Any error on a fresh connection, and any answer other
    than 200 from the backend for the right host, is a failure.
    """

    port: int
    domains: list[str]
    clients: int = 4
    ok: int = 0
    retried: list[Failure] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        for i in range(self.clients):
            t = threading.Thread(target=self._run, args=(i,), name=f"load-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        wait_until(lambda: self.ok >= 20, timeout=10, what="load flowing")
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def add(self, domain: str) -> None:
        with self._lock:
            self.domains = [*self.domains, domain]

    def _run(self, index: int) -> None:
        conn: http.client.HTTPConnection | None = None
        used = 0
        n = index
        # Bounded: a test that forgets to stop the load does not load the machine for long.
        deadline = time.monotonic() + 120
        while not self._stop.is_set() and time.monotonic() < deadline:
            domains = self.domains
            domain = domains[n % len(domains)]
            n += 1
            started = time.monotonic()
            for attempt in (1, 2):
                if conn is not None and _dropped(conn):
                    # The server ended this kept-alive connection while it was idle; like
                    # urllib3, notice that before reusing it.
                    conn.close()
                    conn = None
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                    used = 0
                fresh = used == 0
                try:
                    conn.request("GET", "/", headers={"Host": domain})
                    response = conn.getresponse()
                    body = response.read()
                    used += 1
                    if response.will_close:
                        conn.close()
                        conn = None
                    answer = json.loads(body) if response.status == 200 else {}
                    with self._lock:
                        if response.status == 200 and answer.get("host") == domain:
                            self.ok += 1
                        else:
                            self.failures.append(
                                Failure(
                                    started, time.monotonic(), f"{response.status} {body[:100]!r}"
                                )
                            )
                    break
                except Exception as e:
                    if conn is not None:
                        conn.close()
                    conn = None
                    record = Failure(started, time.monotonic(), f"{type(e).__name__}: {e}")
                    stale = isinstance(
                        e, (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)
                    )
                    with self._lock:
                        if fresh or not stale or attempt == 2:
                            self.failures.append(record)
                            break
                        self.retried.append(record)
            self._stop.wait(0.002)
        if conn is not None:
            conn.close()


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """The idle connection has something to read: the server's EOF (or a stray byte)."""
    if conn.sock is None:
        return True
    readable, _, _ = select.select([conn.sock], [], [], 0)
    return bool(readable)


class Watcher:
    """Samples the balancer's /backends until stopped; notes any moment with no proxy serving."""

    def __init__(self, balancer: Balancer) -> None:
        self.balancer = balancer
        self.samples = 0
        self.violations: list[dict[str, Any]] = []
        self.seen_draining: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watcher", daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        wait_until(lambda: self.samples > 0, timeout=5, what="first watcher sample")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        deadline = time.monotonic() + 120
        while not self._stop.is_set() and time.monotonic() < deadline:
            backends = self.balancer.backends()
            self.samples += 1
            for b in backends.values():
                if b["state"] == "draining":
                    self.seen_draining.add(b["name"])
            if not any(b["state"] == "enabled" and b["health"] == "up" for b in backends.values()):
                self.violations.append(backends)
            self._stop.wait(0.005)


def get_through(port: int, domain: str, path: str = "/") -> dict[str, Any]:
    """One request on a fresh connection; the answer's JSON."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": domain})
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, (domain, response.status, body)
        answer: dict[str, Any] = json.loads(body)
        return answer
    finally:
        conn.close()


# -- the platform under test ---------------------------------------------------------------------


@dataclass
class Platform:
    url: str
    backend: Backend
    proxies: list[ProxyProcess]
    balancer: Balancer
    services: dict[str, str] = field(default_factory=dict)

    def config(self, **overrides: Any) -> Config:
        base = Config(
            database_url=self.url,
            instance="swaptest",
            proxies=tuple(p.endpoint for p in self.proxies),
            loadbalancer_admin=self.balancer.admin_url,
            swap_drain_timeout=5.0,
            swap_up_timeout=5.0,
            proxy_check_interval=0.2,
            admin_timeout=2.0,
            backoff_initial=0.5,
            backoff_max=2.0,
        )
        return replace(base, **overrides)

    def env(self, **overrides: str) -> dict[str, str]:
        """The agent's environment for `python -m agent proxy ...`."""
        return {
            **os.environ,
            "SWS_DATABASE_URL": self.url,
            "SWS_INSTANCE": "swaptest",
            "SWS_PROXIES": ",".join(f"{p.name}={p.admin_url}" for p in self.proxies),
            "SWS_LOADBALANCER_ADMIN": self.balancer.admin_url,
            "SWS_SWAP_DRAIN_TIMEOUT": "5",
            "SWS_SWAP_UP_TIMEOUT": "5",
            **overrides,
        }

    def publish(self, **services: str) -> RouteTable:
        """Add services (name=domain) routed to the backend; store the next table version."""
        self.services.update(services)
        return self.publish_routes(
            tuple(
                Route(name, (domain,), (self.backend.address,))
                for name, domain in self.services.items()
            )
        )

    def publish_routes(self, routes_: tuple[Route, ...]) -> RouteTable:
        with psycopg.connect(self.url) as conn:
            table, _ = routes.publish_route_table(conn, RouteTable(0, routes_))
        return table

    def recorded(self) -> dict[str, tuple[int, str, str, bool]]:
        with psycopg.connect(self.url) as conn:
            return {
                p.name: (p.route_version, p.state, p.message, p.held)
                for p in routes.list_proxies(conn)
            }

    def load(self, clients: int = 4) -> Load:
        domains = list(self.services.values())
        return Load(self.balancer.listen, domains, clients).start()


@pytest.fixture
def swap_db(make_database: Callable[..., str]) -> str:
    url = make_database("sws_swap")
    with psycopg.connect(url) as conn:
        migrate(conn)
    return url


@pytest.fixture
def platform(swap_db: str) -> Iterator[Platform]:
    backend = Backend()
    proxies = [ProxyProcess("proxy-1"), ProxyProcess("proxy-2")]
    balancer: Balancer | None = None
    try:
        for p in proxies:
            p.start()
        balancer = Balancer(proxies)

        def both_down() -> bool:
            assert balancer is not None
            return all(b["health"] == "down" for b in balancer.backends().values())

        # A proxy with no route table yet is not ready: the balancer sends it nothing.
        wait_until(both_down, timeout=10, what="both fresh proxies not ready in the balancer")
        # A running platform's proxies already hold a table; start the tests from there.
        for p in proxies:
            empty = urllib.request.Request(
                f"{p.admin_url}/routes", data=b'{"version": 0, "services": []}', method="PUT"
            )
            with urllib.request.urlopen(empty, timeout=5) as response:
                assert response.status == 200

        def both_up() -> bool:
            assert balancer is not None
            return all(b["health"] == "up" for b in balancer.backends().values())

        wait_until(both_up, timeout=10, what="both proxies up in the balancer")
        yield Platform(swap_db, backend, proxies, balancer)
    finally:
        if balancer is not None:
            balancer.close()
        for p in proxies:
            with contextlib.suppress(Exception):
                p.kill()
        backend.close()
