"""The agent's confdb queries against a real PostgreSQL: snapshot, status writes, routes."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from confdb import observed, routes
from confdb.migrate import migrate
from sws.plan import ReplicaStatus, ServiceStatus
from sws.route_table import Route, RouteTable

pytestmark = [pytest.mark.postgres]


@pytest.fixture
def url(make_database: Any) -> str:
    return str(make_database("sws_agentdb"))


@pytest.fixture
def conn(url: str) -> Any:
    with psycopg.connect(url) as c:
        migrate(c)
        c.execute("INSERT INTO users (name, token_hash) VALUES ('u', 'h')")
        for name in ("a", "b"):
            c.execute(
                "INSERT INTO services (name, owner_id, domain, spec, spec_hash) "
                "VALUES (%s, 1, %s, %s, 'x')",
                (name, f"{name}.example.com", Jsonb({"apiVersion": "v1", "spec": {}})),
            )
        c.commit()
        yield c


def table(*backends: str) -> RouteTable:
    return RouteTable(0, (Route("a", ("a.example.com",), backends),))


def test_publish_is_a_no_op_for_the_same_routes_and_versions_count_up(conn: Any, url: str) -> None:
    # conn.info.dsn leaves the password out: connect with the database's own URL.
    listener = psycopg.connect(url, autocommit=True)
    listener.execute(f"LISTEN {routes.ROUTES_CHANNEL}")
    first, changed = routes.publish_route_table(conn, table("10.0.0.1:80"))
    assert (first.version, changed) == (1, True)
    again, changed = routes.publish_route_table(conn, table("10.0.0.1:80"))
    assert (again.version, changed) == (1, False)
    second, changed = routes.publish_route_table(conn, table("10.0.0.1:80", "10.0.0.2:80"))
    assert (second.version, changed) == (2, True)
    latest = routes.latest_route_table(conn)
    assert latest is not None and latest.to_json_obj() == second.to_json_obj()
    assert [t.version for t in routes.route_table_history(conn)] == [1, 2]
    notes = [n.payload for n in listener.notifies(timeout=1.0, stop_after=2)]
    assert notes == ["1", "2"]
    listener.close()


def test_snapshot_and_status_round_trip(conn: Any) -> None:
    replica = ReplicaStatus("cid", "sws-a-0-x", 0, 1, "10.0.0.1:80", True, "ready")
    writes = observed.Writes(
        statuses={"a": (ServiceStatus("running", "1/1 ready", 1, 1), (replica,))},
        events=[observed.Event("a", "Ready", "replica 0 ready"), observed.Event("gone", "X", "")],
    )
    assert observed.write_observed(conn, writes) == []
    snap = observed.read_snapshot(conn)
    assert [s.name for s in snap.services] == ["a", "b"]
    assert snap.statuses == {"a": ServiceStatus("running", "1/1 ready", 1, 1)}
    assert snap.replicas == {"a": (replica,)}
    assert [e.reason for e in observed.recent_events(conn, "a")] == ["Ready"]
    conn.commit()


def test_final_deletion_only_of_a_deleting_row_at_that_generation(conn: Any) -> None:
    conn.execute("UPDATE services SET deleting = true, generation = 2 WHERE name = 'b'")
    conn.commit()
    writes = observed.Writes(deletions=[("a", 1), ("b", 1)])
    assert observed.write_observed(conn, writes) == []
    assert observed.write_observed(conn, observed.Writes(deletions=[("b", 2)])) == ["b"]
    assert [s.name for s in observed.read_snapshot(conn).services] == ["a"]


def test_proxies_are_recorded(conn: Any) -> None:
    routes.record_proxy(conn, "proxy-1", 3, "serving")
    routes.record_proxy(conn, "proxy-1", 4, "failed", "unreachable")
    (state,) = routes.list_proxies(conn)
    assert (state.name, state.route_version, state.state, state.message) == (
        "proxy-1",
        4,
        "failed",
        "unreachable",
    )
    conn.commit()
