"""compose.yaml as compose itself reads it: valid, and wired so that tenants stay outside.

These need the compose CLI but no running platform; the running one is checked from inside a
tenant container by test_isolation.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.conftest import unavailable
from tests.e2e.conftest import ROOT

SENTINEL = "from-the-state-dir"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`docker/compose config` for a throwaway project, its secrets files empty."""
    if not shutil.which("docker-compose") and not shutil.which("docker"):
        unavailable("no compose CLI")
    state = tmp_path_factory.mktemp("state")
    (state / "confdb.env").write_text(f"POSTGRES_PASSWORD={SENTINEL}\n")
    (state / "database.env").write_text(
        f"SWS_DATABASE_URL=postgresql://sws:{SENTINEL}@confdb/sws\n"
    )
    env = {
        **os.environ,
        "SWS_PROJECT": "e2e-config",
        "SWS_STATE_DIR": str(state),
        "SWS_HTTP_PORT": "18999",
    }
    out = subprocess.run(
        ["bash", str(ROOT / "docker" / "compose"), "config"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode == 127 or "neither" in out.stderr:
        unavailable("no compose CLI")
    assert out.returncode == 0, out.stderr
    parsed: dict[str, Any] = yaml.safe_load(out.stdout)
    return parsed


def _networks(service: dict[str, Any]) -> set[str]:
    return set(service.get("networks") or {})


def test_only_the_balancer_publishes_a_port(config: dict[str, Any]) -> None:
    published = {name for name, svc in config["services"].items() if svc.get("ports")}
    assert published == {"loadbalancer"}
    [port] = config["services"]["loadbalancer"]["ports"]
    assert "18999" in str(port)


def test_the_networks_keep_tenants_away_from_the_insides(config: dict[str, Any]) -> None:
    services = config["services"]
    assert config["networks"]["services"]["name"] == "e2e-config-services"
    for name in ("confdb", "apiserver", "loadbalancer"):
        assert _networks(services[name]) == {"control"}, name
    for name in ("agent", "proxy-1", "proxy-2"):
        assert _networks(services[name]) == {"control", "services"}, name
    for proxy in ("proxy-1", "proxy-2"):
        aliases = services[proxy]["networks"]["control"]["aliases"]
        assert aliases == [f"{proxy}-admin"]
        # The admin API binds to the control-only alias, never to every address.
        assert f"--admin={proxy}-admin:9000" in services[proxy]["command"]


def test_the_agent_is_wired_to_its_instance_and_the_proxies(config: dict[str, Any]) -> None:
    agent = config["services"]["agent"]
    env = agent["environment"]
    assert env["SWS_INSTANCE"] == "e2e-config"
    assert env["SWS_SERVICES_NETWORK"] == "e2e-config-services"
    assert env["SWS_PROXIES"] == (
        "proxy-1=http://proxy-1-admin:9000,proxy-2=http://proxy-2-admin:9000"
    )
    assert env["SWS_API_BACKEND"] == "apiserver:8080"
    assert any(v.startswith("/var/run/docker.sock:") for v in agent["volumes"])
    lb = config["services"]["loadbalancer"]["command"]
    for proxy in ("proxy-1", "proxy-2"):
        assert f"--backend={proxy}={proxy}:8000,health=http://{proxy}-admin:9000/readyz" in lb


def test_secrets_come_from_the_state_directory_to_who_needs_them(config: dict[str, Any]) -> None:
    text = (ROOT / "compose.yaml").read_text()
    assert "POSTGRES_PASSWORD:" not in text and "POSTGRES_PASSWORD=" not in text
    assert "postgresql://" not in text
    holders = {
        name
        for name, svc in config["services"].items()
        if any(SENTINEL in str(v) for v in (svc.get("environment") or {}).values())
    }
    assert holders == {"confdb", "apiserver", "agent"}
