"""The agent's side of confdb: one consistent read of desired state, and observed-state writes.

`read_snapshot` reads every service row, what was last recorded about it and the latest route
table in ONE repeatable-read transaction, so a pass plans against a single moment of confdb
even while the apiserver keeps writing. Writes (status, replicas, events, the final deletion
of a row) go in one transaction per pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from sws.plan import ReplicaStatus, ServiceStatus

Conn = psycopg.Connection[Any]

# Events can carry log lines; keep one row reasonable.
MAX_EVENT_MESSAGE = 4000


@dataclass(frozen=True)
class ServiceRow:
    name: str
    document: Any
    generation: int
    deleting: bool
    purge_volume: bool


@dataclass(frozen=True)
class Snapshot:
    services: tuple[ServiceRow, ...]
    statuses: dict[str, ServiceStatus] = field(default_factory=dict)
    replicas: dict[str, tuple[ReplicaStatus, ...]] = field(default_factory=dict)
    # (version, the stored table object) of the latest route table, or None.
    routes: tuple[int, Any] | None = None


@dataclass(frozen=True)
class Event:
    service: str
    reason: str
    message: str
    type: str = "Normal"


def read_snapshot(conn: Conn) -> Snapshot:
    """Read desired and recorded state as of one instant."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        services = tuple(
            ServiceRow(str(r[0]), r[1], int(r[2]), bool(r[3]), bool(r[4]))
            for r in conn.execute(
                "SELECT name, spec, generation, deleting, purge_volume FROM services ORDER BY name"
            )
        )
        statuses = {
            str(r[0]): ServiceStatus(str(r[1]), str(r[2]), int(r[3]), int(r[4]))
            for r in conn.execute(
                "SELECT service, state, message, observed_generation, ready_replicas "
                "FROM service_status"
            )
        }
        replicas: dict[str, list[ReplicaStatus]] = {}
        for r in conn.execute(
            "SELECT service, container_id, container_name, replica, generation, address, "
            "ready, state FROM replica_status"
        ):
            replicas.setdefault(str(r[0]), []).append(
                ReplicaStatus(
                    container_id=str(r[1]),
                    container_name=str(r[2]),
                    replica=int(r[3]),
                    generation=int(r[4]),
                    address=str(r[5]),
                    ready=bool(r[6]),
                    state=str(r[7]),
                )
            )
        latest = conn.execute(
            "SELECT version, routes FROM route_tables ORDER BY version DESC LIMIT 1"
        ).fetchone()
    return Snapshot(
        services=services,
        statuses=statuses,
        replicas={k: tuple(v) for k, v in replicas.items()},
        routes=(int(latest[0]), latest[1]) if latest is not None else None,
    )


@dataclass
class Writes:
    """What one pass records, flushed together by `write_observed`."""

    statuses: dict[str, tuple[ServiceStatus, tuple[ReplicaStatus, ...]]] = field(
        default_factory=dict
    )
    events: list[Event] = field(default_factory=list)
    # (service, generation) rows to delete for good.
    deletions: list[tuple[str, int]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.statuses or self.events or self.deletions)


def write_observed(conn: Conn, writes: Writes) -> list[str]:
    """Record statuses and events, then delete finished services; return the names deleted.

    Rows of services that no longer exist are skipped rather than failing the batch.
    """
    deleted: list[str] = []
    with conn.transaction():
        for event in writes.events:
            conn.execute(
                "INSERT INTO events (service, type, reason, message) "
                "SELECT %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM services WHERE name = %s)",
                (
                    event.service,
                    event.type,
                    event.reason,
                    event.message[:MAX_EVENT_MESSAGE],
                    event.service,
                ),
            )
        for name, (status, replicas) in writes.statuses.items():
            _write_status(conn, name, status, replicas)
        for name, generation in writes.deletions:
            cur = conn.execute(
                "DELETE FROM services WHERE name = %s AND deleting AND generation = %s",
                (name, generation),
            )
            if cur.rowcount:
                deleted.append(name)
    return deleted


def _write_status(
    conn: Conn, name: str, status: ServiceStatus, replicas: Sequence[ReplicaStatus]
) -> None:
    cur = conn.execute(
        """
        INSERT INTO service_status
            (service, observed_generation, state, message, ready_replicas, updated_at)
        SELECT %s, %s, %s, %s, %s, now()
        WHERE EXISTS (SELECT 1 FROM services WHERE name = %s)
        ON CONFLICT (service) DO UPDATE SET
            observed_generation = EXCLUDED.observed_generation,
            state = EXCLUDED.state,
            message = EXCLUDED.message,
            ready_replicas = EXCLUDED.ready_replicas,
            updated_at = now()
        """,
        (
            name,
            status.observed_generation,
            status.state,
            status.message[:MAX_EVENT_MESSAGE],
            status.ready_replicas,
            name,
        ),
    )
    if not cur.rowcount:
        return
    conn.execute("DELETE FROM replica_status WHERE service = %s", (name,))
    if replicas:
        with conn.cursor() as c:
            c.executemany(
                "INSERT INTO replica_status (service, container_id, container_name, replica, "
                "generation, address, ready, state, updated_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now())",
                [
                    (
                        name,
                        r.container_id,
                        r.container_name,
                        r.replica,
                        r.generation,
                        r.address,
                        r.ready,
                        r.state,
                    )
                    for r in replicas
                ],
            )


def recent_events(conn: Conn, service: str, limit: int = 50) -> list[Event]:
    """A service's latest events, newest first."""
    rows = conn.execute(
        "SELECT service, reason, message, type FROM events WHERE service = %s "
        "ORDER BY id DESC LIMIT %s",
        (service, limit),
    ).fetchall()
    return [Event(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]
