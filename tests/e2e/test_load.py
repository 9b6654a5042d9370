"""Zero failed requests while the platform changes underneath a steady client load.

Each scenario runs a LoadGenerator (8 keep-alive clients on 127.0.0.1 through the balancer)
against one service, does its action while the load runs, and keeps the load going until
at least MIN_REQUESTS were sent and the action has finished. Then not one request may have
failed: no refused or reset connection, no timeout, no status other than 2xx.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.e2e.conftest import ROOT, Platform
from tests.e2e.load import LoadGenerator, LoadResult

MIN_REQUESTS = 20_000
THREADS = 8
DOMAIN = "load.e2e.test"


@pytest.fixture(scope="module")
def service(
    platform: Platform, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The service under load: 3 replicas of the test app."""
    spec: dict[str, Any] = {
        "name": f"{platform.project}-load",
        "port": 8080,
        "domain": DOMAIN,
        "image": "sws/testapp:latest",
        "replicas": 3,
    }
    platform.apply(spec, tmp_path_factory.mktemp("load"))
    platform.wait_json(DOMAIN, lambda body: True)
    yield spec
    platform.swsctl("delete", spec["name"], "--wait", "--timeout", "60", check=False)


def under_load(platform: Platform, action: Callable[[], None], what: str) -> LoadResult:
    """Run `action` under load; return the load's result once both are done."""
    with LoadGenerator(platform.port, DOMAIN, threads=THREADS) as load:
        wait_until(
            lambda: load.requests >= 200, timeout=30, interval=0.01, what="the load to start"
        )
        started = time.monotonic()
        action()
        took = time.monotonic() - started
        result = load.finish(MIN_REQUESTS)
    print(f"\n{what}: action took {took:.1f}s; {result.summary()}")
    assert result.requests >= MIN_REQUESTS
    assert result.failures == 0, f"{what}: {result.summary()}"
    return result


def test_rolling_image_update(platform: Platform, service: dict[str, Any], tmp_path: Path) -> None:
    before = {c["Id"] for c in platform.service_containers(service["name"])}

    def update() -> None:
        platform.apply({**service, "image": "sws/testapp:v2"}, tmp_path)

    under_load(platform, update, "rolling update latest -> v2")
    after = platform.service_containers(service["name"])
    assert len(after) == 3
    assert not before & {c["Id"] for c in after}, "every replica was replaced"
    assert {c["Config"]["Image"] for c in after} == {"sws/testapp:v2"}
    platform.wait_json(DOMAIN, lambda body: body["version"] == "v2")
    # The scenarios that follow apply the spec as it now is, rather than rolling back.
    service["image"] = "sws/testapp:v2"


def test_scale_down_and_up(platform: Platform, service: dict[str, Any], tmp_path: Path) -> None:
    def scale() -> None:
        platform.apply({**service, "replicas": 1}, tmp_path)
        assert len(platform.service_containers(service["name"])) == 1
        platform.apply(service, tmp_path)

    under_load(platform, scale, "scale 3 -> 1 -> 3")
    assert len(platform.service_containers(service["name"])) == 3


def test_deleting_another_service(
    platform: Platform, service: dict[str, Any], tmp_path: Path
) -> None:
    other: dict[str, Any] = {
        "name": f"{platform.project}-other",
        "port": 8080,
        "domain": "other.e2e.test",
        "image": "sws/testapp:latest",
        "replicas": 2,
    }
    platform.apply(other, tmp_path)

    def delete() -> None:
        platform.swsctl("delete", other["name"], "--wait", "--timeout", "60")

    under_load(platform, delete, "deleting another service")
    assert platform.service_containers(other["name"]) == []
    assert platform.get("other.e2e.test").status == 404


def _platform_view(platform: Platform) -> dict[str, Any]:
    view: dict[str, Any] = json.loads(platform.swsctl("platform", "-o", "json").stdout)
    return view


def test_proxy_swap(platform: Platform, service: dict[str, Any], tmp_path: Path) -> None:
    before = _platform_view(platform)["routeVersion"]
    extra: dict[str, Any] = {
        "name": f"{platform.project}-swap",
        "port": 8080,
        "domain": "swap.e2e.test",
        "image": "sws/testapp:latest",
    }

    def both_serving() -> dict[str, Any] | None:
        view = _platform_view(platform)
        proxies = {p["name"]: p for p in view["proxies"]}
        done = (
            view["routeVersion"] > before
            and set(proxies) == {"proxy-1", "proxy-2"}
            and all(
                p["routeVersion"] == view["routeVersion"] and p["state"] == "serving"
                for p in proxies.values()
            )
        )
        return view if done else None

    def swap() -> None:
        # A new service is a new route table, rolled onto both proxies one after the other.
        platform.apply(extra, tmp_path)
        wait_until(both_serving, timeout=30, interval=0.2, what="both proxies on the new table")

    under_load(platform, swap, "proxy swap")
    # What confdb says, the proxies' own admin APIs say too (asked from the control network).
    view = _platform_view(platform)
    for name in ("proxy-1", "proxy-2"):
        health = json.loads(
            platform.compose(
                "exec",
                "-T",
                "agent",
                "python3",
                "-c",
                f"import urllib.request; print(urllib.request.urlopen('http://{name}-admin:9000/healthz').read().decode())",
            ).stdout
        )
        assert health["version"] >= view["routeVersion"]
    assert platform.answers("swap.e2e.test") is not None
    platform.swsctl("delete", extra["name"], "--wait", "--timeout", "60")


@pytest.mark.parametrize("component", ["apiserver", "agent", "confdb"])
def test_restart_of_a_platform_component(
    platform: Platform, service: dict[str, Any], component: str
) -> None:
    def restart() -> None:
        platform.compose("restart", component)
        platform.wait_api()

    under_load(platform, restart, f"restart {component}")
    # Still managed: the agent (restarted or reconnected) reports the service running.
    wait_until(
        lambda: platform.service_json(service["name"])["state"] == "running",
        timeout=60,
        interval=0.5,
        what="the service reported running again",
    )


def test_confdb_stopped(platform: Platform, service: dict[str, Any]) -> None:
    token = (platform.state_dir / "admin.token").read_text().strip()
    api_answers: list[int] = []

    def stop_confdb() -> None:
        platform.compose("stop", "confdb")
        # The API stays reachable through the balancer and says it cannot work.
        api_answers.append(
            wait_until(
                lambda: (
                    (s := platform.get(platform.api_domain, "/healthz", timeout=10).status) == 503
                    and s
                ),
                timeout=30,
                interval=0.2,
                what="503 from the API's /healthz",
            )
        )
        services = platform.get(
            platform.api_domain,
            "/v1/services",
            timeout=15,
            headers={"Authorization": f"Bearer {token}"},
        )
        api_answers.append(services.status)

    try:
        under_load(platform, stop_confdb, "confdb stopped")
        assert api_answers == [503, 503]
        listed = platform.swsctl("ls", check=False)
        assert listed.returncode == 1
        assert "unavailable" in listed.stderr
    finally:
        platform.compose("start", "confdb")
        platform.wait_api()
    assert platform.answers(DOMAIN) is not None


def test_recreating_apiserver_and_agent(platform: Platform, service: dict[str, Any]) -> None:
    # What an upgrade does to them (docs/operations.md): new containers, maybe new addresses.
    before = {name: platform.platform_container(name)["Id"] for name in ("apiserver", "agent")}

    def recreate() -> None:
        platform.compose("up", "-d", "--no-deps", "--force-recreate", "apiserver", "agent")
        platform.wait_api()

    under_load(platform, recreate, "apiserver and agent recreated")
    for name, old in before.items():
        assert platform.platform_container(name)["Id"] != old
    wait_until(
        lambda: platform.service_json(service["name"])["state"] == "running",
        timeout=60,
        interval=0.5,
        what="the service reported running by the new agent",
    )


def test_rolling_the_proxies(platform: Platform, service: dict[str, Any]) -> None:
    # The documented way to upgrade the proxies: one at a time, through the drain path.
    before = {name: platform.platform_container(name)["Id"] for name in ("proxy-1", "proxy-2")}

    def roll() -> None:
        platform.run(["bash", str(ROOT / "docker" / "roll-proxies")], timeout=300)

    under_load(platform, roll, "proxies recreated one at a time")
    view = _platform_view(platform)
    for name, old in before.items():
        assert platform.platform_container(name)["Id"] != old
    assert all(p["routeVersion"] == view["routeVersion"] for p in view["proxies"]), view
