"""The agent keeps real sws-proxy processes on the latest route table."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from agent.config import ProxyEndpoint
from tests.conftest import wait_until
from tests.integration.agent.conftest import Env, running_agent

pytestmark = [pytest.mark.docker, pytest.mark.postgres]

PORT_ENV = {"name": "PORT", "value": "8080"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Proxy:
    def __init__(self, name: str) -> None:
        self.name = name
        self.listen = free_port()
        self.admin = free_port()
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.popen = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "proxy",
                "--listen",
                f"127.0.0.1:{self.listen}",
                "--admin",
                f"127.0.0.1:{self.admin}",
                "--no-access-log",
            ],
            env={**os.environ},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.routes, timeout=15, what=f"{self.name} admin API")

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)

    def routes(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.admin}/routes"
        with urllib.request.urlopen(url, timeout=2) as response:
            body: dict[str, Any] = json.loads(response.read())
        return body

    def get(self, host: str) -> dict[str, Any]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.listen}/", headers={"Host": host})
        with urllib.request.urlopen(request, timeout=5) as response:
            body: dict[str, Any] = json.loads(response.read())
        return body

    @property
    def endpoint(self) -> ProxyEndpoint:
        return ProxyEndpoint(self.name, f"http://127.0.0.1:{self.admin}")


@pytest.fixture
def proxies() -> Iterator[list[Proxy]]:
    pytest.importorskip("proxy.cli")
    started = [Proxy("proxy-1"), Proxy("proxy-2")]
    try:
        for p in started:
            p.start()
        yield started
    finally:
        for p in started:
            p.stop()


def test_proxies_follow_the_latest_table_and_catch_up_after_restart(
    env: Env, proxies: list[Proxy]
) -> None:
    config = env.config(interval=1.0, proxies=tuple(p.endpoint for p in proxies))
    with running_agent(config):
        env.apply("site", env=[PORT_ENV, {"name": "APP_VERSION", "value": "one"}])
        wait_until(lambda: env.running("site", 1), timeout=30, what="site running")

        def current() -> bool:
            table = env.route_table()
            return table is not None and all(p.routes() == table.to_json_obj() for p in proxies)

        wait_until(current, timeout=10, what="both proxies on the latest table")
        for p in proxies:
            assert p.get("site.example.com")["env"]["APP_VERSION"] == "one"
        recorded = env.sql("SELECT name, route_version, state FROM proxies ORDER BY name")
        table = env.route_table()
        assert table is not None
        assert [(r[0], r[1], r[2]) for r in recorded] == [
            ("proxy-1", table.version, "serving"),
            ("proxy-2", table.version, "serving"),
        ]

        # A proxy that comes back empty is caught up without any change to the services.
        proxies[1].stop()
        proxies[1].start()
        wait_until(current, timeout=10, what="restarted proxy caught up")
        assert proxies[1].get("site.example.com")["env"]["APP_VERSION"] == "one"
