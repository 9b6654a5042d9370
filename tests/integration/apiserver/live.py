"""A real apiserver (gunicorn, as deployed: `python -m apiserver`) on a free 127.0.0.1 port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import requests

from apiserver.auth import new_token
from confdb.users import create_user_or_fail
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


@contextlib.contextmanager
def serving(database_url: str, log: Path) -> Iterator[LiveApi]:
    """Start the apiserver over `database_url`, logging to `log`; stop it afterwards."""
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
            wait_until(healthy, timeout=120, interval=0.1, what="apiserver /healthz")
            break
        except AssertionError:
            process.terminate()
            process.wait(10)
    else:
        raise AssertionError(f"apiserver did not start:\n{log.read_text()}")
    try:
        yield LiveApi(url, database_url, log)
    finally:
        process.send_signal(signal.SIGQUIT)  # gunicorn's quick shutdown: nothing is in flight
        process.wait(20)
