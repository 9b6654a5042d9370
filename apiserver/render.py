"""The JSON shapes of the API (camelCase keys), as documented in openapi.json."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from confdb.services import (
    Event,
    PlatformView,
    ProxyStatus,
    Replica,
    ServiceDetail,
    ServiceRecord,
    ServiceStatus,
    ServiceView,
)

WAITING_MESSAGE = "waiting for the agent"


def timestamp(at: datetime | None) -> str | None:
    """RFC 3339 in UTC, e.g. 2024-05-01T12:00:00.123456Z."""
    if at is None:
        return None
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def state_of(record: ServiceRecord, status: ServiceStatus) -> tuple[str, str]:
    """The service's state and message as a user should read them."""
    if record.deleting:
        if status.state == "deleting":
            return "deleting", status.message
        return "deleting", WAITING_MESSAGE + " to remove it"
    if status.updated_at is None:
        return "pending", WAITING_MESSAGE
    return status.state, status.message


def summary(view: ServiceView) -> dict[str, Any]:
    """A service as listed: what a table row needs, without env values."""
    record, status = view.record, view.status
    state, message = state_of(record, status)
    return {
        "name": record.name,
        "owner": record.owner,
        "domain": record.spec.domain,
        "image": record.spec.image,
        "generation": record.generation,
        "observedGeneration": status.observed_generation,
        "state": state,
        "message": message,
        "replicas": {"desired": record.spec.replicas, "ready": status.ready_replicas},
        "deleting": record.deleting,
        "createdAt": timestamp(record.created_at),
        "updatedAt": timestamp(record.updated_at),
    }


def detail(service: ServiceDetail) -> dict[str, Any]:
    """A service in full: its spec document, status, instances and recent events."""
    record = service.record
    body = summary(ServiceView(record, service.status))
    body.update(
        spec=record.spec.to_document(),
        purgeVolume=record.purge_volume,
        instances=[instance(r) for r in service.replicas],
        events=[event(e) for e in service.events],
    )
    return body


def instance(replica: Replica) -> dict[str, Any]:
    return {
        "name": replica.container_name,
        "container": replica.container_id,
        "replica": replica.replica,
        "generation": replica.generation,
        "address": replica.address,
        "ready": replica.ready,
        "state": replica.state,
        "updatedAt": timestamp(replica.updated_at),
    }


def event(e: Event) -> dict[str, Any]:
    return {"at": timestamp(e.at), "type": e.type, "reason": e.reason, "message": e.message}


def deletion(record: ServiceRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "generation": record.generation,
        "state": "deleting",
        "purgeVolume": record.purge_volume,
    }


def platform(view: PlatformView) -> dict[str, Any]:
    return {"routeVersion": view.route_version, "proxies": [proxy(p) for p in view.proxies]}


def proxy(p: ProxyStatus) -> dict[str, Any]:
    return {
        "name": p.name,
        "routeVersion": p.route_version,
        "state": p.state,
        "message": p.message,
        "updatedAt": timestamp(p.updated_at),
    }
