"""Desired state of services as the apiserver writes it, and the observed state it reads.

Theory of operation for writes. A service row is the desired state; `generation` counts its
changes so the agent can say which one it has acted on (`service_status.observed_generation`).
Every write is one transaction, and the `services_notify` trigger NOTIFYs the agent inside it:
a rolled-back write wakes nobody, a committed one always does. A write that changes nothing
does not UPDATE the row at all, so it neither bumps the generation nor wakes the agent.

Two applies of the same name may race. Each one locks the row with SELECT ... FOR UPDATE, so
updates of an existing service queue behind each other and every one of them sees the previous
one's generation. When the row does not exist yet there is nothing to lock: the insert uses
ON CONFLICT DO NOTHING, and the loser of an insert race (or of a race for a domain) finds
nothing inserted, rolls its attempt back to a savepoint and starts over, now finding the
winner's row. A domain taken by a concurrent update surfaces as a unique violation and is
handled the same way. Ownership and domain checks run inside the same transaction as the write.

Tenant isolation: a service belonging to someone else is reported exactly like one that does
not exist (NotFound), and a clash with someone else's name or domain never names their service.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb

from confdb.users import User
from sws.errors import Conflict, NotFound, SpecError, SwsError
from sws.spec import ServiceSpec

Conn = psycopg.Connection[Any]
ApplyResult = Literal["created", "updated", "unchanged"]

RECENT_EVENTS = 20
# A clean attempt only fails when another transaction won a race in between; the next attempt
# then sees the winner's committed row, so a few attempts are always enough in practice.
_APPLY_ATTEMPTS = 5


class StoredSpecError(SwsError):
    """A spec in confdb no longer validates: the store, not the caller, is at fault."""

    status = 500


@dataclass(frozen=True)
class ServiceRecord:
    name: str
    owner: str
    owner_id: int
    spec: ServiceSpec
    generation: int
    deleting: bool
    purge_volume: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ServiceStatus:
    """What the agent last reported; the defaults stand for "not looked at yet"."""

    observed_generation: int = 0
    state: str = "pending"
    message: str = ""
    ready_replicas: int = 0
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Replica:
    container_id: str
    container_name: str
    replica: int
    generation: int
    address: str
    ready: bool
    state: str
    updated_at: datetime


@dataclass(frozen=True)
class Event:
    at: datetime
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class ServiceView:
    record: ServiceRecord
    status: ServiceStatus


@dataclass(frozen=True)
class ServiceDetail:
    record: ServiceRecord
    status: ServiceStatus
    replicas: tuple[Replica, ...]
    events: tuple[Event, ...]


@dataclass(frozen=True)
class Applied:
    record: ServiceRecord
    result: ApplyResult


@dataclass(frozen=True)
class ProxyStatus:
    name: str
    route_version: int
    state: str
    message: str
    updated_at: datetime


@dataclass(frozen=True)
class PlatformView:
    route_version: int
    proxies: tuple[ProxyStatus, ...]


class _LostRace(Exception):
    """Another transaction inserted the name or domain first; start the attempt over."""


# -- writes ------------------------------------------------------------------------------------


def apply_service(conn: Conn, owner: User, spec: ServiceSpec) -> Applied:
    """Create or update `owner`'s service to `spec`, in one transaction with its NOTIFY."""
    for _ in range(_APPLY_ATTEMPTS):
        try:
            with conn.transaction():
                return _apply_once(conn, owner, spec)
        except (_LostRace, psycopg.errors.UniqueViolation):
            continue
    raise Conflict(f'service "{spec.name}" is being changed concurrently; try again')


def _apply_once(conn: Conn, owner: User, spec: ServiceSpec) -> Applied:
    row = conn.execute(
        f"SELECT {_SERVICE_COLUMNS} FROM services s JOIN users u ON u.id = s.owner_id "
        "WHERE s.name = %s FOR UPDATE OF s",
        (spec.name,),
    ).fetchone()
    if row is None:
        _check_domain_free(conn, owner, spec.domain, spec.name)
        inserted = conn.execute(
            f"""
            INSERT INTO services (name, owner_id, domain, spec, spec_hash)
            VALUES (%s, %s, %s, %s, %s)
            ON CONFLICT DO NOTHING
            RETURNING {_RETURNING_COLUMNS}
            """,
            (spec.name, owner.id, spec.domain, Jsonb(spec.to_document()), spec.spec_hash()),
        ).fetchone()
        if inserted is None:
            raise _LostRace
        return Applied(_record((*inserted[:1], owner.name, *inserted[1:])), "created")

    current = _record(row)
    if current.owner_id != owner.id:
        raise Conflict(f'service name "{spec.name}" is already taken by another user')
    if current.spec.domain != spec.domain:
        _check_domain_free(conn, owner, spec.domain, spec.name)
    if current.spec.canonical_json() == spec.canonical_json() and not current.deleting:
        return Applied(current, "unchanged")
    updated = conn.execute(
        f"""
        UPDATE services
        SET spec = %s, spec_hash = %s, domain = %s, generation = generation + 1,
            deleting = false, purge_volume = false, updated_at = now()
        WHERE name = %s
        RETURNING {_RETURNING_COLUMNS}
        """,
        (Jsonb(spec.to_document()), spec.spec_hash(), spec.domain, spec.name),
    ).fetchone()
    assert updated is not None  # the row is locked by this transaction
    return Applied(_record((*updated[:1], owner.name, *updated[1:])), "updated")


def _check_domain_free(conn: Conn, owner: User, domain: str, name: str) -> None:
    holder = conn.execute(
        "SELECT name, owner_id FROM services WHERE domain = %s AND name <> %s", (domain, name)
    ).fetchone()
    if holder is None:
        return
    if int(holder[1]) == owner.id:
        raise Conflict(f'domain "{domain}" is already served by service "{holder[0]}"')
    raise Conflict(f'domain "{domain}" is already served by another service')


def mark_deleting(conn: Conn, owner: User, name: str, *, purge: bool = False) -> ServiceRecord:
    """Ask the agent to remove `owner`'s service (and its volume when `purge`)."""
    with conn.transaction():
        row = conn.execute(
            f"SELECT {_SERVICE_COLUMNS} FROM services s JOIN users u ON u.id = s.owner_id "
            "WHERE s.name = %s AND s.owner_id = %s FOR UPDATE OF s",
            (name, owner.id),
        ).fetchone()
        if row is None:
            raise _not_found(name)
        current = _record(row)
        # Repeating a delete changes nothing, so it must not wake the agent again.
        if current.deleting and (current.purge_volume or not purge):
            return current
        updated = conn.execute(
            f"""
            UPDATE services
            SET deleting = true, purge_volume = purge_volume OR %s,
                generation = generation + 1, updated_at = now()
            WHERE name = %s
            RETURNING {_RETURNING_COLUMNS}
            """,
            (purge, name),
        ).fetchone()
        assert updated is not None
        return _record((*updated[:1], owner.name, *updated[1:]))


# -- reads -------------------------------------------------------------------------------------


def get_service(conn: Conn, viewer: User, name: str) -> ServiceRecord:
    """`viewer`'s service (any service for an admin), or NotFound."""
    row = conn.execute(
        f"SELECT {_SERVICE_COLUMNS} FROM services s JOIN users u ON u.id = s.owner_id "
        "WHERE s.name = %s AND (s.owner_id = %s OR %s)",
        (name, viewer.id, viewer.is_admin),
    ).fetchone()
    if row is None:
        raise _not_found(name)
    return _record(row)


def service_detail(
    conn: Conn, viewer: User, name: str, *, events: int = RECENT_EVENTS
) -> ServiceDetail:
    """The service with its status, replicas and most recent events (newest first)."""
    record = get_service(conn, viewer, name)
    status_row = conn.execute(
        f"SELECT {_STATUS_COLUMNS} FROM service_status st WHERE st.service = %s", (name,)
    ).fetchone()
    replica_rows = conn.execute(
        """
        SELECT container_id, container_name, replica, generation, address, ready, state,
               updated_at
        FROM replica_status WHERE service = %s ORDER BY replica, container_name
        """,
        (name,),
    ).fetchall()
    event_rows = conn.execute(
        "SELECT at, type, reason, message FROM events WHERE service = %s ORDER BY id DESC LIMIT %s",
        (name, events),
    ).fetchall()
    return ServiceDetail(
        record=record,
        status=_status(status_row),
        replicas=tuple(
            Replica(
                container_id=str(r[0]),
                container_name=str(r[1]),
                replica=int(r[2]),
                generation=int(r[3]),
                address=str(r[4]),
                ready=bool(r[5]),
                state=str(r[6]),
                updated_at=r[7],
            )
            for r in replica_rows
        ),
        events=tuple(
            Event(at=r[0], type=str(r[1]), reason=str(r[2]), message=str(r[3])) for r in event_rows
        ),
    )


def list_services(conn: Conn, owner: User | None) -> list[ServiceView]:
    """`owner`'s services, or every service when `owner` is None, by name."""
    rows = conn.execute(
        f"""
        SELECT {_SERVICE_COLUMNS}, {_STATUS_COLUMNS}
        FROM services s
        JOIN users u ON u.id = s.owner_id
        LEFT JOIN service_status st ON st.service = s.name
        WHERE %s::bigint IS NULL OR s.owner_id = %s::bigint
        ORDER BY s.name
        """,
        (None if owner is None else owner.id, None if owner is None else owner.id),
    ).fetchall()
    width = len(_SERVICE_COLUMNS.split(","))
    return [ServiceView(_record(r[:width]), _status(r[width:])) for r in rows]


def platform_view(conn: Conn) -> PlatformView:
    """The newest published route table's version and what each proxy runs."""
    version_row = conn.execute("SELECT COALESCE(max(version), 0) FROM route_tables").fetchone()
    proxy_rows = conn.execute(
        "SELECT name, route_version, state, message, updated_at FROM proxies ORDER BY name"
    ).fetchall()
    return PlatformView(
        route_version=int(version_row[0]) if version_row else 0,
        proxies=tuple(
            ProxyStatus(
                name=str(r[0]),
                route_version=int(r[1]),
                state=str(r[2]),
                message=str(r[3]),
                updated_at=r[4],
            )
            for r in proxy_rows
        ),
    )


def ping(conn: Conn) -> None:
    conn.execute("SELECT 1").fetchone()


# -- rows --------------------------------------------------------------------------------------

_SERVICE_COLUMNS = (
    "s.name, u.name, s.owner_id, s.spec, s.generation, s.deleting, s.purge_volume, "
    "s.created_at, s.updated_at"
)
# The same columns less the owner's name, which RETURNING cannot join in.
_RETURNING_COLUMNS = (
    "name, owner_id, spec, generation, deleting, purge_volume, created_at, updated_at"
)
_STATUS_COLUMNS = "st.observed_generation, st.state, st.message, st.ready_replicas, st.updated_at"


def _record(row: tuple[Any, ...]) -> ServiceRecord:
    name, owner, owner_id, document, generation, deleting, purge, created, updated = row
    try:
        spec = ServiceSpec.from_document(document)
    except SpecError as e:
        raise StoredSpecError(f'stored spec of service "{name}" no longer validates: {e}') from None
    return ServiceRecord(
        name=str(name),
        owner=str(owner),
        owner_id=int(owner_id),
        spec=spec,
        generation=int(generation),
        deleting=bool(deleting),
        purge_volume=bool(purge),
        created_at=created,
        updated_at=updated,
    )


def _status(row: tuple[Any, ...] | None) -> ServiceStatus:
    if row is None or row[0] is None:
        return ServiceStatus()
    observed, state, message, ready, updated = row
    return ServiceStatus(
        observed_generation=int(observed),
        state=str(state),
        message=str(message),
        ready_replicas=int(ready),
        updated_at=updated,
    )


def _not_found(name: str) -> NotFound:
    return NotFound(f'service "{name}" not found')
