"""Route tables and proxies in confdb.

Every route table the agent publishes is a new row with the next version; the highest version
is the one proxies should run. Publishing the same routes again is a no-op (the version is not
part of the comparison), so a pass that changes nothing writes nothing. Each new version is
announced on the `sws_route_tables` channel for anyone who wants to follow along.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from sws.route_table import RouteTable

Conn = psycopg.Connection[Any]

ROUTES_CHANNEL = "sws_route_tables"


def latest_route_table(conn: Conn) -> RouteTable | None:
    """The newest published table, or None when none was ever published."""
    row = conn.execute(
        "SELECT version, routes FROM route_tables ORDER BY version DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    return table_from_row(int(row[0]), row[1])


def table_from_row(version: int, stored: Any) -> RouteTable:
    obj = dict(stored)
    obj["version"] = version
    return RouteTable.from_json_obj(obj)


def publish_route_table(conn: Conn, table: RouteTable) -> tuple[RouteTable, bool]:
    """Store `table`'s routes as the next version unless the latest has the same routes.

    Returns the table now in force (with its real version) and whether it is new.
    """
    with conn.transaction():
        # Serialise publishers so two never pick the same max+1.
        conn.execute("LOCK TABLE route_tables IN SHARE ROW EXCLUSIVE MODE")
        latest = latest_route_table(conn)
        wanted = table.to_json_obj()["services"]
        if latest is not None and latest.to_json_obj()["services"] == wanted:
            return latest, False
        version = (latest.version + 1) if latest is not None else 1
        fresh = RouteTable(version, table.services)
        conn.execute(
            "INSERT INTO route_tables (version, routes) VALUES (%s, %s)",
            (version, Jsonb(fresh.to_json_obj())),
        )
        conn.execute("SELECT pg_notify(%s, %s)", (ROUTES_CHANNEL, str(version)))
    return fresh, True


def route_table_history(conn: Conn, since: int = 0) -> list[RouteTable]:
    """Every table with a version above `since`, oldest first."""
    rows = conn.execute(
        "SELECT version, routes FROM route_tables WHERE version > %s ORDER BY version", (since,)
    ).fetchall()
    return [table_from_row(int(r[0]), r[1]) for r in rows]


def latest_route_version(conn: Conn) -> int:
    """The newest published version (0 when none was published): a cheap change check."""
    row = conn.execute("SELECT COALESCE(max(version), 0) FROM route_tables").fetchone()
    return int(row[0]) if row is not None else 0


@dataclass(frozen=True)
class ProxyState:
    name: str
    route_version: int
    state: str  # unknown | serving | draining | failed
    message: str
    updated_at: datetime | None = None
    # Held for maintenance: the agent's swap leaves it alone until it is released.
    held: bool = False


def record_proxy(conn: Conn, name: str, route_version: int, state: str, message: str = "") -> None:
    """Record what one proxy runs, as the agent last saw it."""
    with conn.transaction():
        conn.execute(
            """
            INSERT INTO proxies (name, route_version, state, message, updated_at)
            VALUES (%s, %s, %s, %s, now())
            ON CONFLICT (name) DO UPDATE SET
                route_version = EXCLUDED.route_version,
                state = EXCLUDED.state,
                message = EXCLUDED.message,
                updated_at = now()
            """,
            (name, route_version, state, message),
        )


def list_proxies(conn: Conn) -> list[ProxyState]:
    rows = conn.execute(
        "SELECT name, route_version, state, message, updated_at, held FROM proxies ORDER BY name"
    ).fetchall()
    return [ProxyState(str(r[0]), int(r[1]), str(r[2]), str(r[3]), r[4], bool(r[5])) for r in rows]


def set_proxy_held(conn: Conn, name: str, held: bool, state: str, message: str) -> None:
    """Hold a proxy for maintenance (or release it), recording its state in the same write."""
    with conn.transaction():
        conn.execute(
            """
            INSERT INTO proxies (name, state, message, held, updated_at)
            VALUES (%s, %s, %s, %s, now())
            ON CONFLICT (name) DO UPDATE SET
                state = EXCLUDED.state,
                message = EXCLUDED.message,
                held = EXCLUDED.held,
                updated_at = now()
            """,
            (name, state, message, held),
        )


def held_proxies(conn: Conn) -> frozenset[str]:
    """Names of the proxies held for maintenance."""
    with conn.transaction():
        rows = conn.execute("SELECT name FROM proxies WHERE held").fetchall()
    return frozenset(str(r[0]) for r in rows)


def try_lock_swaps(conn: Conn, key: int) -> bool:
    """Take the session-level lock that lets one proxy swap run at a time; False if taken.

    Held on `conn`'s session, so a process that dies releases it with its connection.
    """
    with conn.transaction():
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    return bool(row is not None and row[0])


def unlock_swaps(conn: Conn, key: int) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
