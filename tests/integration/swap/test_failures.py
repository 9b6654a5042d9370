"""The swap when things break: a proxy killed, a proxy refusing the table, the agent killed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agent.config import ProxyEndpoint
from agent.swap import Swapper
from tests.conftest import wait_until
from tests.integration.swap.conftest import Platform, Watcher, get_through

pytestmark = pytest.mark.postgres


def test_a_killed_proxy_costs_only_its_requests_in_flight_and_is_reported(
    platform: Platform,
) -> None:
    swapper = Swapper(platform.config())
    try:
        table = platform.publish(web="web.test")
        assert swapper.round(table) is not None
        load = platform.load(clients=4)
        victim = platform.proxies[0]
        wait_until(
            lambda: platform.balancer.backends()["proxy-1"]["open_connections"] > 0,
            timeout=5,
            what="load reaching proxy-1",
        )
        try:
            # Each keep-alive client has at most one request in flight on its connection.
            on_victim = platform.balancer.backends()["proxy-1"]["open_connections"]
            killed_at = time.monotonic()
            victim.kill()
            wait_until(
                lambda: platform.balancer.backends()["proxy-1"]["health"] == "down",
                timeout=5,
                interval=0.01,
                what="balancer noticing",
            )
            noticed = time.monotonic() - killed_at
            ok_at_kill = load.ok
            wait_until(lambda: load.ok > ok_at_kill + 200, timeout=10, what="load on proxy-2")
        finally:
            load.stop()
        assert noticed < 1.0
        broken = load.failures + load.retried
        assert len(broken) <= on_victim, broken
        # Only exchanges under way when it died, none started after the balancer knew.
        assert all(f.started < killed_at + noticed for f in broken), broken

        later = platform.publish(web="web.test", more="more.test")
        views = swapper.round(later)
        assert views is not None
        recorded = platform.recorded()
        assert recorded["proxy-1"][1] == "failed"
        assert recorded["proxy-1"][2].startswith("unreachable: GET /healthz")
        # The survivor took the new table in place (no other proxy to carry the load).
        assert recorded["proxy-2"][:2] == (later.version, "serving")
        assert "updated in place: no other proxy is serving (proxy-1 " in recorded["proxy-2"][2]
        backends = platform.balancer.backends()
        # Fenced: when it comes back it must not serve its empty table before a swap.
        assert backends["proxy-1"]["state"] == "draining"
        assert backends["proxy-2"]["state"] == "enabled"
        assert get_through(platform.balancer.listen, "more.test")["host"] == "more.test"

        # Restarted, it is swapped back in (drained first: proxy-2 serves) by the next round.
        victim.start()
        assert victim.health()["version"] == 0
        assert swapper.round(later) is not None
        assert victim.health() == {
            "status": "ok",
            "ready": True,
            "version": later.version,
            "connections": 0,
        }
        assert platform.balancer.backends()["proxy-1"]["state"] == "enabled"
        assert platform.recorded()["proxy-1"][:3] == (later.version, "serving", "")
    finally:
        swapper.close()


class RefusingAdmin:
    """In front of a real proxy's admin API: passes everything on, except that while
    `refuse` is set it answers PUT /routes with 400, as a proxy does for a table it rejects."""

    def __init__(self, target: str) -> None:
        self.refuse = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.command == "PUT" and self.path == "/routes" and outer.refuse:
                    status, data = 400, {"error": "services[0]: is not a route"}
                    raw = json.dumps(data).encode()
                else:
                    req = urllib.request.Request(target + self.path, data=body, method=self.command)
                    with urllib.request.urlopen(req, timeout=5) as response:
                        status, raw = response.status, response.read()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_PUT = do_POST = _relay

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_proxy_refusing_the_table_stays_drained_and_failed_while_the_other_serves(
    platform: Platform,
) -> None:
    refusing = RefusingAdmin(platform.proxies[1].admin_url)
    endpoints = (platform.proxies[0].endpoint, ProxyEndpoint("proxy-2", refusing.url))
    swapper = Swapper(platform.config(proxies=endpoints))
    try:
        first = platform.publish(web="web.test")
        assert swapper.round(first) is not None
        load = platform.load(clients=4)
        watcher = Watcher(platform.balancer).start()
        try:
            refusing.refuse = True
            second = platform.publish(web="web.test", more="more.test")
            views = swapper.round(second)
            assert views is not None
            assert [(v.name, v.version) for v in views] == [
                ("proxy-1", second.version),
                ("proxy-2", first.version),
            ]
            backends = platform.balancer.backends()
            assert backends["proxy-2"]["state"] == "draining"
            assert backends["proxy-1"]["state"] == "enabled"
            recorded = platform.recorded()
            assert recorded["proxy-1"][:3] == (second.version, "serving", "")
            version, state, message, _ = recorded["proxy-2"]
            assert (version, state) == (first.version, "failed")
            assert message == (
                f"refused version {second.version}: PUT /routes answered 400: "
                "services[0]: is not a route"
            )
            # Only proxy-1 takes new connections, and it knows the new route.
            for _ in range(4):
                assert get_through(platform.balancer.listen, "more.test")["host"] == "more.test"
            load.add("more.test")
            ok_before = load.ok
            wait_until(lambda: load.ok > ok_before + 100, timeout=10, what="load on proxy-1")

            # Within the back-off the next round leaves it drained.
            assert swapper.round(second) is not None
            assert platform.balancer.backends()["proxy-2"]["state"] == "draining"

            # Once it takes tables again, a later round brings it back.
            refusing.refuse = False

            def back() -> bool:
                views = swapper.round(second)
                return views is not None and all(v.version == second.version for v in views)

            wait_until(back, timeout=10, interval=0.2, what="proxy-2 swapped in after back-off")
            assert platform.balancer.backends()["proxy-2"]["state"] == "enabled"
            assert platform.recorded()["proxy-2"][:3] == (second.version, "serving", "")
        finally:
            watcher.stop()
            load.stop()
        assert load.failures == [], load.failures[:5]
        assert watcher.violations == []
    finally:
        swapper.close()
        refusing.close()


def test_an_agent_killed_mid_swap_leaves_a_drained_proxy_the_next_round_finishes(
    platform: Platform,
) -> None:
    swapper = Swapper(platform.config(swap_drain_timeout=0.5))
    slow: list[Any] = []
    try:
        first = platform.publish(web="web.test")
        assert swapper.round(first) is not None
        load = platform.load(clients=2)
        try:
            # A request held in flight straight on proxy-1 keeps it from going idle.
            proxy1 = platform.proxies[0]

            def long_request() -> None:
                conn = urllib.request.Request(
                    f"http://127.0.0.1:{proxy1.listen}/hold", headers={"Host": "web.test"}
                )
                with urllib.request.urlopen(conn, timeout=30) as response:
                    slow.append(json.loads(response.read()))

            requester = threading.Thread(target=long_request, daemon=True)
            requester.start()
            wait_until(lambda: proxy1.health()["connections"] > 0, what="slow request open")

            second = platform.publish(web="web.test", more="more.test")
            env = platform.env(SWS_SWAP_DRAIN_TIMEOUT="60")
            agent = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.swap.driver"],
                env=env,
                cwd=os.getcwd(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )

            def stuck_draining() -> bool:
                lb = platform.balancer.backends()["proxy-1"]
                return bool(
                    lb["state"] == "draining"
                    and proxy1.health()["status"] == "draining"
                    and platform.recorded()["proxy-1"][1] == "draining"
                )

            try:
                wait_until(stuck_draining, timeout=15, what="the agent draining proxy-1")
            finally:
                agent.kill()
                agent.wait(10)
            assert platform.recorded()["proxy-1"][1] == "draining"
            assert proxy1.health()["version"] == first.version

            # The next agent's first round sees proxy-1 left drained and finishes the swap.
            def finished() -> bool:
                return swapper.round(second) is not None

            wait_until(finished, timeout=10, what="the swap lock freed by the dead agent")
            health = proxy1.health()
            assert (health["status"], health["version"]) == ("ok", second.version)
            assert platform.proxies[1].health()["version"] == second.version
            assert all(b["state"] == "enabled" for b in platform.balancer.backends().values())
            assert {k: v[:2] for k, v in platform.recorded().items()} == {
                "proxy-1": (second.version, "serving"),
                "proxy-2": (second.version, "serving"),
            }
            # The request held in flight through it all kept its backend and is answered.
            assert proxy1.health()["connections"] >= 1
            platform.backend.released.set()
            requester.join(15)
        finally:
            load.stop()
        assert slow == [{"host": "web.test", "path": "/hold"}]
        assert load.failures == []
    finally:
        swapper.close()
