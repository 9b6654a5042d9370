"""`sws-agent proxy drain|release` around a proxy restart, with the agent's swap loop running."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from agent.swap import SwapLoop
from tests.conftest import wait_until
from tests.integration.swap.conftest import Platform, Watcher, get_through

pytestmark = pytest.mark.postgres


def sws_agent(platform: Platform, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "proxy", *args],
        env=platform.env(),
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_drain_restart_release_of_each_proxy_under_load_fails_no_request(
    platform: Platform,
) -> None:
    leading = threading.Event()
    leading.set()
    loop = SwapLoop(platform.config(), leading)
    loop.start()
    try:
        table = platform.publish(web="web.test")
        loop.offer(table)
        wait_until(
            lambda: all(p.health()["version"] == table.version for p in platform.proxies),
            timeout=10,
            what="both proxies on the first table",
        )
        load = platform.load(clients=4)
        watcher = Watcher(platform.balancer).start()
        try:
            for index, proxy in enumerate(platform.proxies):
                other = platform.proxies[1 - index]
                done = sws_agent(platform, "drain", proxy.name)
                assert done.returncode == 0, done.stderr
                assert done.stdout.strip() == f"{proxy.name}: drained and held for maintenance"
                assert platform.balancer.backends()[proxy.name]["state"] == "draining"
                assert platform.recorded()[proxy.name][1:] == (
                    "draining",
                    "held for maintenance",
                    True,
                )

                # The other one cannot be taken out too.
                refused = sws_agent(platform, "drain", other.name)
                assert refused.returncode == 1
                assert f"cannot drain {other.name}: no other proxy is serving" in refused.stderr

                proxy.terminate()
                proxy.start()
                assert proxy.health()["version"] == 0
                # A new table meanwhile goes to the other proxy in place; the held one is
                # left alone, drained with its empty table, however many rounds pass.
                table = platform.publish(**{f"svc{index}": f"svc{index}.test"})
                loop.offer(table)
                wait_until(
                    lambda: other.health()["version"] == table.version,  # noqa: B023
                    timeout=10,
                    what="the serving proxy on the newer table",
                )
                rounds = loop.rounds
                wait_until(lambda n=rounds: loop.rounds >= n + 3, timeout=10, what="more rounds")
                assert proxy.health()["version"] == 0
                assert platform.balancer.backends()[proxy.name]["state"] == "draining"
                assert (
                    f"svc{index}.test"
                    in get_through(platform.balancer.listen, f"svc{index}.test")["host"]
                )

                released = sws_agent(platform, "release", proxy.name)
                assert released.returncode == 0, released.stderr
                assert released.stdout.strip() == (
                    f"{proxy.name}: serving route version {table.version}"
                )
                backend = platform.balancer.backends()[proxy.name]
                assert (backend["state"], backend["health"]) == ("enabled", "up")
                assert proxy.health()["version"] == table.version
                assert platform.recorded()[proxy.name][:2] == (table.version, "serving")
                assert platform.recorded()[proxy.name][3] is False
                load.add(f"svc{index}.test")
        finally:
            watcher.stop()
            load.stop()
        assert load.failures == [], load.failures[:5]
        assert watcher.violations == []
        assert watcher.seen_draining == {"proxy-1", "proxy-2"}
        status = sws_agent(platform, "status")
        assert status.returncode == 0
        assert f"proxy-1  version {table.version}  serving" in status.stdout
    finally:
        loop.stop()


def test_commands_say_what_is_wrong(platform: Platform) -> None:
    unknown = sws_agent(platform, "drain", "proxy-9")
    assert unknown.returncode == 2
    assert "proxy 'proxy-9' is not configured (SWS_PROXIES has: proxy-1, proxy-2)" in (
        unknown.stderr
    )
    usage = sws_agent(platform, "frobnicate")
    assert usage.returncode == 2
