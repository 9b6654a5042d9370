"""Route tables rolled onto two real proxies behind a real balancer, under load."""

from __future__ import annotations

import logging
import socket

import pytest
from websockets.sync.client import connect as ws_connect

from agent.swap import Swapper
from sws.route_table import Route
from tests.conftest import wait_until
from tests.integration.swap.conftest import EchoServer, Platform, Watcher, get_through

pytestmark = pytest.mark.postgres


def test_five_swaps_under_load_fail_no_request_and_never_drain_both(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    swapper = Swapper(platform.config())
    try:
        first = platform.publish(svc0="svc0.test")
        assert swapper.round(first) is not None
        load = platform.load(clients=4)
        watcher = Watcher(platform.balancer).start()
        caplog.set_level(logging.INFO, logger="sws.agent")
        try:
            for i in range(1, 6):
                table = platform.publish(**{f"svc{i}": f"svc{i}.test"})
                views = swapper.round(table)
                assert views is not None
                assert [(v.name, v.version, v.draining) for v in views] == [
                    ("proxy-1", table.version, False),
                    ("proxy-2", table.version, False),
                ]
                # Fresh connections land on either proxy; every one must know the new route.
                for _ in range(6):
                    assert get_through(platform.balancer.listen, f"svc{i}.test")["host"] == (
                        f"svc{i}.test"
                    )
                load.add(f"svc{i}.test")
                ok_before = load.ok
                # The load keeps flowing (now also to the new domain) before the next swap.
                wait_until(lambda n=ok_before: load.ok > n + 50, timeout=10, what="load after swap")
        finally:
            watcher.stop()
            load.stop()
        assert load.failures == [], load.failures[:5]
        assert load.ok > 500
        assert watcher.samples > 50
        assert watcher.violations == [], watcher.violations[:3]
        # Each proxy really was taken out of the balancer for its swaps, one at a time.
        print(
            f"ok={load.ok} retried={len(load.retried)} samples={watcher.samples} "
            f"seen_draining={sorted(watcher.seen_draining)}"
        )
        drains = [r for r in caplog.records if "swap.start" in r.getMessage()]
        assert len(drains) == 10 and all("mode=drain" in r.getMessage() for r in drains)
        recorded = platform.recorded()
        assert {k: v[:2] for k, v in recorded.items()} == {
            "proxy-1": (table.version, "serving"),
            "proxy-2": (table.version, "serving"),
        }
    finally:
        swapper.close()


def test_a_websocket_opened_before_a_swap_still_echoes_after_it(platform: Platform) -> None:
    echo = EchoServer()
    # The tunnel keeps its proxy busy: the drain wait runs out and the swap goes on anyway.
    swapper = Swapper(platform.config(swap_drain_timeout=0.5))
    try:
        ws_route = Route("ws", ("ws.test",), (echo.address,))
        first = platform.publish_routes((ws_route,))
        assert swapper.round(first) is not None
        sock = socket.create_connection(("127.0.0.1", platform.balancer.listen), timeout=5)
        with ws_connect("ws://ws.test/", sock=sock, open_timeout=5) as ws:
            ws.send("before")
            assert ws.recv(timeout=5) == "before"
            second = platform.publish_routes(
                (ws_route, Route("web", ("web.test",), (platform.backend.address,)))
            )
            views = swapper.round(second)
            assert views is not None and all(v.version == second.version for v in views)
            assert all(b["state"] == "enabled" for b in platform.balancer.backends().values())
            for i in range(3):
                ws.send(f"after {i}")
                assert ws.recv(timeout=5) == f"after {i}"
        assert get_through(platform.balancer.listen, "web.test")["host"] == "web.test"
    finally:
        swapper.close()
        echo.close()
