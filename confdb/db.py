"""Connections to confdb: one place that opens them and turns connection trouble into ours."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
from psycopg_pool import ConnectionPool

from sws.errors import Unavailable

CONNECT_TIMEOUT_S = 5


# What the desired-state trigger (migrations/001_initial.sql) NOTIFYs, with a service's name;
# the agent LISTENs on it and runs a pass at once, whatever the payload.
DESIRED_STATE_CHANNEL = "sws_desired_state"


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection[object]:
    """Open one connection, or raise Unavailable naming the server (never the password)."""
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.OperationalError as e:
        raise Unavailable(f"confdb unreachable at {redact(url)}: {_first_line(e)}") from None


def create_pool(
    url: str, *, min_size: int = 1, max_size: int = 10, name: str = "confdb"
) -> ConnectionPool:
    """A pool that opens lazily and keeps retrying, so a process starts while confdb is down."""
    return ConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        name=name,
        open=False,
        timeout=CONNECT_TIMEOUT_S,
        kwargs={"connect_timeout": CONNECT_TIMEOUT_S},
        check=ConnectionPool.check_connection,
    )


@contextlib.contextmanager
def translate_errors(url: str) -> Iterator[None]:
    """Turn lost-connection errors from psycopg into Unavailable."""
    try:
        yield
    except (psycopg.OperationalError, psycopg.errors.AdminShutdown) as e:
        raise Unavailable(f"confdb unreachable at {redact(url)}: {_first_line(e)}") from None
    except (
        psycopg.errors.ConnectionTimeout
    ) as e:  # pragma: no cover - subclass above on most versions
        raise Unavailable(f"confdb unreachable at {redact(url)}: {_first_line(e)}") from None


def redact(url: str) -> str:
    """The URL with any password removed, for messages and logs."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<invalid database URL>"
    host = info.get("host", "localhost")
    port = info.get("port", "5432")
    dbname = info.get("dbname", "")
    return f"postgresql://{host}:{port}/{dbname}"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
