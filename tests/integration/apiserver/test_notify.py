"""Writes wake the agent through NOTIFY in their own transaction; no-op writes do not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from flask.testing import FlaskClient

from tests.integration.apiserver.conftest import Caller, document, unique
from tests.integration.apiserver.live import serving

pytestmark = pytest.mark.postgres

CHANNEL = "sws_desired_state"


@pytest.fixture
def listener(database_url: str) -> Iterator[psycopg.Connection]:
    conn = psycopg.connect(database_url, autocommit=True)
    conn.execute(f"LISTEN {CHANNEL}")
    yield conn
    conn.close()


def next_notification(conn: psycopg.Connection) -> str:
    for n in conn.notifies(timeout=10, stop_after=1):
        assert n.channel == CHANNEL
        return n.payload
    raise AssertionError("no notification within 10s")


def test_each_write_notifies_and_unchanged_writes_do_not(
    client: FlaskClient, alice: Caller, listener: psycopg.Connection
) -> None:
    name, marker = unique(), unique("marker")
    client.put(f"/v1/services/{name}", json=document(name), headers=alice.headers)
    assert next_notification(listener) == name

    assert (
        client.put(f"/v1/services/{name}", json=document(name), headers=alice.headers).json[
            "result"
        ]
        == "unchanged"
    )
    assert client.delete(f"/v1/services/{marker}", headers=alice.headers).status_code == 404
    # A later write's notification must be the very next one: nothing came in between.
    client.put(f"/v1/services/{marker}", json=document(marker), headers=alice.headers)
    assert next_notification(listener) == marker

    client.put(f"/v1/services/{name}", json=document(name, replicas=2), headers=alice.headers)
    assert next_notification(listener) == name
    client.delete(f"/v1/services/{name}", headers=alice.headers)
    assert next_notification(listener) == name
    client.delete(f"/v1/services/{name}", headers=alice.headers)  # already deleting: no change
    client.put(f"/v1/services/{marker}", json=document(marker, replicas=3), headers=alice.headers)
    assert next_notification(listener) == marker


def test_rejected_writes_notify_nobody(
    client: FlaskClient, alice: Caller, bob: Caller, listener: psycopg.Connection
) -> None:
    name, marker = unique(), unique("marker")
    client.put(f"/v1/services/{name}", json=document(name), headers=alice.headers)
    assert next_notification(listener) == name
    assert (
        client.put(f"/v1/services/{name}", json=document(name), headers=bob.headers).status_code
        == 409
    )
    other = unique()
    clash = client.put(
        f"/v1/services/{other}",
        json=document(other, domain=f"{name}.example.com"),
        headers=bob.headers,
    )
    assert clash.status_code == 409
    client.put(f"/v1/services/{marker}", json=document(marker), headers=alice.headers)
    assert next_notification(listener) == marker


def test_a_starting_apiserver_wakes_the_agent(
    database_url: str, listener: psycopg.Connection, tmp_path: Path
) -> None:
    # The agent routes the API domain to the apiserver's address as of its last pass; a
    # recreated apiserver (a new address) says it is up, so the next pass is not a whole
    # interval away.
    log = tmp_path / "apiserver.log"
    with serving(database_url, log):
        assert next_notification(listener) == "sws.apiserver"
    assert "apiserver.announced" in log.read_text()
