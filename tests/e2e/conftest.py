"""The whole platform, brought up with compose for the end-to-end tests.

One platform per test session, started by `docker/up` exactly as `make up` starts one, but
with its own project name (so its containers, volumes and services network are its own), its
own HTTP port on 127.0.0.1, its own state directory and its own swsctl configuration. A
platform someone runs with `make up` on the same host is never touched. At the end
`docker/down --purge` removes everything it made, tenant containers and volumes included.

Tests drive it as a user would: the real `swsctl` in a subprocess, HTTP through the balancer
with a Host header, `docker/compose` for restarts, and the Docker Engine to inspect results.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import unavailable, wait_until

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ("sws/platform:latest", "sws/confdb:latest", "sws/testapp:latest", "sws/testapp:v2")
UP_TIMEOUT_S = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _swsctl_command() -> list[str]:
    """The installed console script (make puts the venv's first on PATH)."""
    found = shutil.which("swsctl")
    return [found] if found else [sys.executable, "-m", "swsctl"]


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Platform:
    """A running platform and the ways a test reaches it."""

    project: str
    port: int
    api_domain: str
    state_dir: Path
    config_home: Path
    env: dict[str, str]

    # -- commands ---------------------------------------------------------------------------

    def run(
        self,
        args: list[str],
        *,
        check: bool = True,
        timeout: float = 180,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            args,
            cwd=ROOT,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args[:4])}... exited {result.returncode}\n"
                f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}"
            )
        return result

    def swsctl(
        self, *args: str, token: str | None = None, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        """Run swsctl as configured by docker/up (the admin), or as the owner of `token`."""
        env = {"SWS_TOKEN": token} if token else None
        return self.run([*_swsctl_command(), *args], check=check, timeout=timeout, env=env)

    def compose(
        self, *args: str, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        return self.run(
            ["bash", str(ROOT / "docker" / "compose"), *args], check=check, timeout=timeout
        )

    def apply(
        self,
        spec: Mapping[str, Any],
        tmp: Path,
        *,
        token: str | None = None,
        wait: bool = True,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Write `spec` (the inside of `spec:`) to a file and `swsctl apply` it."""
        path = tmp / f"{spec['name']}-{secrets.token_hex(3)}.yaml"
        path.write_text(yaml.safe_dump({"apiVersion": "v1", "spec": dict(spec)}))
        args = ["apply", str(path)] + (["--wait", "--timeout", "120"] if wait else [])
        return self.swsctl(*args, token=token, check=check)

    def create_user(self, name: str, *, admin: bool = False) -> str:
        """A new user's token, printed once by create-user inside the apiserver container."""
        args = ["exec", "-T", "apiserver", "sws-apiserver", "create-user", name]
        token = self.compose(*args, *(["--admin"] if admin else [])).stdout.strip()
        assert token, f"create-user {name} printed no token"
        return token

    # -- HTTP through the balancer -----------------------------------------------------------

    def request(
        self,
        host: str,
        path: str = "/",
        *,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
    ) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers={"Host": host, **(headers or {})})
            response = conn.getresponse()
            return Response(response.status, response.read(), dict(response.getheaders()))
        finally:
            conn.close()

    def get(self, host: str, path: str = "/", **kwargs: Any) -> Response:
        return self.request(host, path, **kwargs)

    def answers(self, host: str, path: str = "/") -> Response | None:
        """The 200 answer for `host`, or None (for polling)."""
        try:
            response = self.get(host, path, timeout=2.0)
        except OSError:
            return None
        return response if response.status == 200 else None

    def wait_json(self, host: str, predicate: Any, timeout: float = 10, path: str = "/") -> Any:
        """The first 200 answer's JSON body for which `predicate` holds (routes settle quickly
        after `apply --wait` returns: the proxies get the new table moments later)."""

        def check() -> Any:
            response = self.answers(host, path)
            if response is None:
                return None
            body = response.json()
            return body if predicate(body) else None

        return wait_until(check, timeout=timeout, interval=0.05, what=f"an answer from {host}")

    def wait_api(self, timeout: float = 90) -> None:
        wait_until(
            lambda: self.answers(self.api_domain, "/healthz"),
            timeout=timeout,
            interval=0.2,
            what=f"the API at {self.api_domain} through the balancer",
        )

    # -- Docker -----------------------------------------------------------------------------

    def docker(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return self.run(["docker", *args], check=check, timeout=timeout)

    def service_containers(self, service: str) -> list[dict[str, Any]]:
        """`docker inspect` of the running containers of one service of this platform."""
        ids = self.docker(
            "ps",
            "-q",
            "--filter",
            f"label=sws.instance={self.project}",
            "--filter",
            f"label=sws.service={service}",
        ).stdout.split()
        if not ids:
            return []
        found: list[dict[str, Any]] = json.loads(self.docker("inspect", *ids).stdout)
        return found

    def platform_container(self, service: str) -> dict[str, Any]:
        ids = self.compose("ps", "-q", service).stdout.split()
        assert ids, f"no container for {service}"
        found: list[dict[str, Any]] = json.loads(self.docker("inspect", ids[0]).stdout)
        return found[0]

    def addresses(self, service: str) -> dict[str, str]:
        """{network name: IP} of a platform container."""
        networks = self.platform_container(service)["NetworkSettings"]["Networks"]
        return {name: net["IPAddress"] for name, net in networks.items()}

    @property
    def control_network(self) -> str:
        return f"{self.project}_control"

    @property
    def services_network(self) -> str:
        return f"{self.project}-services"

    def docker_start_floor(self) -> float:
        """Seconds from `docker run` of the test app until it accepts a connection: what
        starting a container costs on this host right now, with no SWS in the way."""
        started = time.monotonic()
        cid = self.docker(
            "run", "-d", "--init", "--network", self.services_network, "sws/testapp:latest"
        ).stdout.strip()
        try:
            info = json.loads(self.docker("inspect", cid).stdout)[0]
            ip = info["NetworkSettings"]["Networks"][self.services_network]["IPAddress"]

            def accepts() -> bool:
                socket.create_connection((ip, 8080), timeout=0.5).close()
                return True

            wait_until(accepts, timeout=30, interval=0.01, what="a bare test app container")
            return time.monotonic() - started
        finally:
            self.docker("rm", "-f", cid, check=False)

    def volume_exists(self, name: str) -> bool:
        return self.docker("volume", "inspect", name, check=False).returncode == 0

    def service_json(self, name: str, token: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(
            self.swsctl("status", name, "-o", "json", token=token).stdout
        )
        return out


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    compose_ok = (
        shutil.which("docker-compose")
        or subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    )
    if not shutil.which("docker") or not compose_ok:
        unavailable("no docker CLI with compose (docker-compose or the compose plugin)")
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        unavailable("the Docker Engine does not answer")
    missing = [
        image
        for image in IMAGES
        if subprocess.run(
            ["docker", "image", "inspect", image], capture_output=True, check=False
        ).returncode
    ]
    if missing:
        unavailable(f"images not built: {', '.join(missing)} (run docker/build)")

    project = f"e2e-{secrets.token_hex(4)}"
    base = tmp_path_factory.mktemp("platform")
    env = {
        **os.environ,
        "SWS_PROJECT": project,
        "SWS_STATE_DIR": str(base / "state"),
        "SWS_HTTP_PORT": str(_free_port()),
        "SWS_HTTP_BIND": "127.0.0.1",
        "SWS_API_DOMAIN": "api.e2e.test",
        "SWS_UP_TIMEOUT": "120",
        "XDG_CONFIG_HOME": str(base / "config"),
    }
    for name in ("SWS_HOST", "SWS_TOKEN"):
        env.pop(name, None)
    platform = Platform(
        project=project,
        port=int(env["SWS_HTTP_PORT"]),
        api_domain=env["SWS_API_DOMAIN"],
        state_dir=base / "state",
        config_home=base / "config",
        env=env,
    )
    log = base / "up.log"
    started = time.monotonic()
    try:
        with log.open("w") as out:
            up = subprocess.run(
                ["bash", str(ROOT / "docker" / "up"), "--no-build"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=UP_TIMEOUT_S,
                check=False,
            )
        if up.returncode != 0:
            pytest.fail(
                f"docker/up exited {up.returncode}:\n{log.read_text()[-6000:]}", pytrace=False
            )
        print(
            f"\nplatform {project} up in {time.monotonic() - started:.0f}s on 127.0.0.1:{platform.port}"
        )
        yield platform
    finally:
        down = subprocess.run(
            ["bash", str(ROOT / "docker" / "down"), "--purge"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if down.returncode != 0:
            print(f"docker/down --purge exited {down.returncode}: {down.stderr[-2000:]}")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """Where a test writes its spec files."""
    return tmp_path
