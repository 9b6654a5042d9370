"""A real apiserver (gunicorn, as deployed) on 127.0.0.1, over a throwaway confdb."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import requests
from click.testing import CliRunner, Result

from apiserver.auth import new_token
from confdb.users import create_user_or_fail
from swsctl.cli import main
from tests.conftest import wait_until

REPO = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class LiveApi:
    url: str
    database_url: str
    log: Path

    def create_user(self, name: str, *, admin: bool = False) -> str:
        """A user and its token (sws-apiserver create-user is tested on its own)."""
        token = new_token()
        with psycopg.connect(self.database_url) as conn:
            create_user_or_fail(conn, name, token, is_admin=admin)
        return token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def live_api(
    make_database: Callable[..., str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApi]:
    database_url = make_database("sws_live")
    log = tmp_path_factory.mktemp("apiserver") / "apiserver.log"
    for _ in range(3):  # the port could be taken between choosing and binding it
        port = free_port()
        env = {
            **os.environ,
            "SWS_DATABASE_URL": database_url,
            "SWS_LISTEN": f"127.0.0.1:{port}",
            "SWS_WORKERS": "2",
            "SWS_THREADS": "4",
        }
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "apiserver"],
                env=env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"

        def healthy(process: subprocess.Popen[bytes] = process, url: str = url) -> bool:
            if process.poll() is not None:
                raise RuntimeError("apiserver exited")
            return requests.get(f"{url}/healthz", timeout=2).status_code == 200

        try:
            wait_until(healthy, timeout=60, interval=0.1, what="apiserver /healthz")
            break
        except AssertionError:
            process.terminate()
            process.wait(10)
    else:
        pytest.fail(f"apiserver did not start:\n{log.read_text()}")
    yield LiveApi(url, database_url, log)
    process.send_signal(signal.SIGQUIT)  # gunicorn's quick shutdown: nothing is in flight
    process.wait(20)


@pytest.fixture
def xdg(tmp_path: Path) -> Path:
    return tmp_path / "xdg"


@pytest.fixture
def swsctl(xdg: Path) -> Callable[..., Result]:
    """Run swsctl in-process with its own config dir and no SWS_* from outside."""

    def run(
        *args: str, env: dict[str, str | None] | None = None, input: str | None = None
    ) -> Result:
        base: dict[str, str | None] = {
            "XDG_CONFIG_HOME": str(xdg),
            "SWS_HOST": None,
            "SWS_TOKEN": None,
            "SWS_API_DOMAIN": None,
        }
        return CliRunner().invoke(main, list(args), env={**base, **(env or {})}, input=input)

    return run
