"""Serving the app with gunicorn, embedded, after confdb is reachable and migrated.

Start-up waits for confdb with backoff (on a fresh host it may still be starting), applies the
migrations under their advisory lock, and only then binds the listening socket, so a healthy
/healthz means a migrated schema. Each gunicorn worker builds its own app (no preloading), so
no pool or connection crosses a fork.
"""

from __future__ import annotations

import os
import time
from typing import Any

import psycopg
from flask import Flask
from gunicorn.app.base import BaseApplication

from apiserver import logfmt
from apiserver.app import create_app
from apiserver.config import Config
from confdb.db import DESIRED_STATE_CHANNEL, connect, redact, translate_errors
from confdb.migrate import migrate
from sws.errors import Unavailable

# One key=value line per request. The path is logged without its query string, and no header
# is logged at all, so a bearer token can never reach the access log.
ACCESS_LOG_FORMAT = (
    'http.request remote=%(h)s method=%(m)s path="%(U)s" status=%(s)s bytes=%(B)s '
    'duration_us=%(D)s user_agent="%(a)s"'
)
FIRST_RETRY_S = 0.5
# A NOTIFY payload no service name can be (it has a dot), like the API's route name.
ANNOUNCE_PAYLOAD = "sws.apiserver"
MAX_RETRY_S = 10.0


def wait_and_migrate(url: str, timeout: float | None = None) -> list[str]:
    """Apply pending migrations, retrying with backoff while confdb cannot be reached."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = FIRST_RETRY_S
    while True:
        try:
            with translate_errors(url), connect(url) as conn:
                applied = migrate(conn)
            for name in applied:
                logfmt.info("confdb.migrated", migration=name)
            return applied
        except Unavailable as e:
            if deadline is not None and time.monotonic() + delay > deadline:
                raise
            logfmt.warning(
                "confdb.waiting", url=redact(url), retry_in=f"{delay:g}s", error=e.message
            )
            time.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_S)


def announce(url: str) -> None:
    """Wake the agent: this apiserver, perhaps at a new address, accepts connections now.

    The agent looks the apiserver's address up on every pass and routes the API domain there;
    without this, an apiserver recreated with a new address would wait up to a whole pass
    interval for its route. Best effort: if confdb cannot be reached, the next pass finds it.
    """
    try:
        with translate_errors(url), connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_notify(%s, %s)", (DESIRED_STATE_CHANNEL, ANNOUNCE_PAYLOAD))
    except (Unavailable, psycopg.Error) as e:
        logfmt.warning("apiserver.unannounced", error=getattr(e, "message", str(e)))
        return
    logfmt.info("apiserver.announced")


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, config: Config) -> None:
        self._config = config
        super().__init__(prog="sws-apiserver")

    def load_config(self) -> None:
        c = self._config
        options: dict[str, Any] = {
            "bind": [c.listen],
            "workers": c.workers,
            "threads": c.threads,
            "worker_class": "gthread",
            "accesslog": "-" if c.access_log else None,
            "access_log_format": ACCESS_LOG_FORMAT,
            "errorlog": "-",
            "loglevel": c.log_level,
            "proc_name": "sws-apiserver",
            "timeout": 30,
            "graceful_timeout": 10,
            "keepalive": 5,
            # Several servers on one host (tests, tools) must not fight over one socket path.
            "control_socket_disable": True,
        }
        # Bound and about to spawn the workers: connections now wait in the backlog.
        options["when_ready"] = lambda _arbiter: announce(c.database_url)
        if os.path.isdir("/dev/shm"):
            # Heartbeat files on a disk-backed overlay can stall workers; memory cannot.
            options["worker_tmp_dir"] = "/dev/shm"
        for key, value in options.items():
            if key in self.cfg.settings:  # older gunicorn lacks some settings
                self.cfg.set(key, value)

    def load(self) -> Flask:
        return create_app(self._config)


class Server:
    """Runs the apiserver until gunicorn's arbiter stops (SIGTERM/SIGINT)."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def run(self) -> None:
        logfmt.configure(self.config.log_level)
        wait_and_migrate(self.config.database_url, self.config.startup_timeout)
        logfmt.info(
            "apiserver.starting",
            listen=self.config.listen,
            workers=self.config.workers,
            threads=self.config.threads,
            confdb=redact(self.config.database_url),
        )
        _Gunicorn(self.config).run()
