from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from apiserver.render import state_of, summary, timestamp
from confdb.services import ServiceRecord, ServiceStatus, ServiceView
from sws.spec import ServiceSpec
from tests.unit.apiserver.openapi_schema import conforms

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def record(deleting: bool = False) -> ServiceRecord:
    spec = ServiceSpec(name="web", port=80, domain="web.example.com", image="nginx:1", replicas=2)
    return ServiceRecord("web", "alice", 1, spec, 3, deleting, False, T0, T0)


def test_timestamps_are_utc_rfc3339() -> None:
    plus_two = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert timestamp(plus_two) == "2024-05-01T12:00:00Z"
    assert timestamp(None) is None


def test_state_before_the_agent_has_looked() -> None:
    assert state_of(record(), ServiceStatus()) == ("pending", "waiting for the agent")


def test_state_is_the_agents_once_reported() -> None:
    status = ServiceStatus(3, "failing", "image not found", 0, T0)
    assert state_of(record(), status) == ("failing", "image not found")


def test_deleting_wins_over_an_older_report() -> None:
    status = ServiceStatus(2, "running", "", 2, T0)
    state, message = state_of(record(deleting=True), status)
    assert state == "deleting"
    assert "remove" in message


def test_summary_matches_the_documented_schema() -> None:
    body = summary(ServiceView(record(), ServiceStatus(3, "running", "", 2, T0)))
    conforms(body, "ServiceSummary")
    assert body["replicas"] == {"desired": 2, "ready": 2}
