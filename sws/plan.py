"""Reconcile planning: what the agent should do next, as a pure function.

Theory of operation
-------------------
The agent is level-based. Each pass it reads the desired state (service rows from confdb)
and the actual state (containers carrying this platform's labels, plus what the agent itself
remembers: which containers are draining, which are being stopped, which templates failed
and until when to back off) and calls `plan(desired, world, settings)`. The plan is a list
of actions; executing them moves the world one step closer. Nothing here waits: a pass that
starts a container returns a short requeue, and a later pass sees it ready and goes on. A
crash between two actions loses nothing, because the next pass recomputes everything from
what is actually there.

Each service has `replicas` *slots* (0..N-1). A container belongs to one slot and one
template (the hash of what shapes a container: image, port, env, volumeMount). Its name is
deterministic per (instance, service, slot, template), so a pass that re-plans a create
after a crash collides with the container it already made instead of making a second one.

Per slot:

* no container of the current template, and no *ready* old one: create one now (a fresh
  slot: first apply, scale up, or a slot whose old container is broken anyway).
* an old ready container and no current one: the slot needs a rolling replacement. At most
  one replacement is in progress per service at a time (surge 1): a new container is created
  only when no current-template container is still on its way to serving.
* the current container is ready but not yet in the published route table: wait; the route
  table published this pass puts it in.
* the current container is ready and published: retire the old ones of the slot.

Retiring a ready container is two-phase: first the route table is published without it and
the agent records the moment (`Drain`), then, `grace_period` later, it is stopped. A
container that is not ready is not receiving traffic and is removed at once. So the route
table only ever loses a backend after its replacement is in it, and ready backends never
drop below the desired count during an update.

A container of the current template that exits (after the runtime's own bounded restarts)
or is not ready within `start_timeout` has failed: the service is `failing`, the failure is
recorded once with its logs, and the container is kept (for its logs) until the back-off
expires, when it is replaced. Old containers keep serving meanwhile.

Deleting a service: its route goes first, then its containers are drained and stopped, then
the volume is removed only if a purge was asked, then the service row is deleted.
Containers whose service is gone altogether (orphans) are retired the same way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from sws.route_table import Route, RouteTable
from sws.spec import ServiceSpec

# Docker's container states that mean "will not run again by itself".
_DEAD_STATES = frozenset({"exited", "dead"})


# -- inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DesiredService:
    """One service row as confdb holds it."""

    spec: ServiceSpec
    generation: int
    deleting: bool = False
    purge_volume: bool = False

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class Container:
    """One container carrying this instance's labels, as observed."""

    id: str
    name: str
    service: str
    replica: int
    generation: int
    template_hash: str
    port: int
    # Docker's state: created, running, restarting, paused, exited, dead, removing.
    state: str
    ip: str = ""
    # Accepted a TCP connection on its port since it last started.
    ready: bool = False
    # When it last started (or was created, if it never started); wall-clock seconds.
    started_at: float = 0.0
    exit_code: int | None = None
    # When a route table without it was published; None while it may be routed.
    draining_since: float | None = None
    # A stop is already under way.
    stopping: bool = False

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}" if self.ip else ""

    @property
    def serving_candidate(self) -> bool:
        return self.ready and self.state == "running" and bool(self.ip)


@dataclass(frozen=True)
class Failure:
    """A remembered failure of one service template, which holds creations back until `retry_at`.

    `container_id` is the failed container ("" when no container was made, e.g. a missing
    image); a failed container is replaced only once its own failure has been recorded.
    """

    message: str
    retry_at: float
    container_id: str = ""


@dataclass(frozen=True)
class ServiceStatus:
    state: str  # pending | starting | running | failing | deleting
    message: str
    observed_generation: int
    ready_replicas: int


@dataclass(frozen=True)
class ReplicaStatus:
    container_id: str
    container_name: str
    replica: int
    generation: int
    address: str
    ready: bool
    state: str  # starting | ready | failed | draining | stopping


@dataclass(frozen=True)
class World:
    """Everything observed for one pass, including what confdb last recorded."""

    now: float
    containers: tuple[Container, ...] = ()
    # The latest published route table; None when none was ever published.
    routes: RouteTable | None = None
    statuses: Mapping[str, ServiceStatus] = field(default_factory=dict)
    replica_statuses: Mapping[str, tuple[ReplicaStatus, ...]] = field(default_factory=dict)
    # Keyed by (service, template hash).
    failures: Mapping[tuple[str, str], Failure] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    instance: str = "sws"
    start_timeout: float = 60.0
    grace_period: float = 2.0
    # How soon to look again while something is in progress.
    requeue: float = 0.25


# -- actions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateReplica:
    """Create and start a container for one slot; remove `replace` (a failed one) first."""

    service: str
    replica: int
    generation: int
    spec: ServiceSpec
    name: str
    replace: str | None = None


@dataclass(frozen=True)
class StartReplica:
    """Start a container that was created but never started (a create cut short)."""

    service: str
    container_id: str
    name: str


@dataclass(frozen=True)
class PublishRoutes:
    """Store a new route table version with these routes."""

    routes: tuple[Route, ...]


@dataclass(frozen=True)
class Drain:
    """Note that the published table no longer routes to this container."""

    service: str
    container_id: str


@dataclass(frozen=True)
class Undrain:
    """Forget that a container was routed out: it is routed again."""

    service: str
    container_id: str


@dataclass(frozen=True)
class StopReplica:
    """Stop (gracefully) and remove a drained container."""

    service: str
    container_id: str
    name: str


@dataclass(frozen=True)
class RemoveReplica:
    """Remove at once a container that serves no traffic."""

    service: str
    container_id: str
    name: str


@dataclass(frozen=True)
class RecordFailure:
    """Remember a failed container (starting the back-off); with `event`, report it."""

    service: str
    template_hash: str
    container_id: str
    message: str
    event: bool


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True)
class ClearFailure:
    """Forget a template's failure: the service has converged."""

    service: str
    template_hash: str


@dataclass(frozen=True)
class RecordEvent:
    """Record an event; with `once`, only if this agent has not recorded the same one before."""

    service: str
    reason: str
    message: str
    type: EventType = EventType.NORMAL
    once: bool = False


@dataclass(frozen=True)
class FinishDeletion:
    """Remove the volume (only when purging) and then the service row."""

    service: str
    generation: int
    volume: str | None


@dataclass(frozen=True)
class WriteStatus:
    service: str
    status: ServiceStatus
    replicas: tuple[ReplicaStatus, ...]


Action = (
    CreateReplica
    | StartReplica
    | PublishRoutes
    | Drain
    | Undrain
    | StopReplica
    | RemoveReplica
    | RecordFailure
    | ClearFailure
    | RecordEvent
    | FinishDeletion
    | WriteStatus
)

# Execution order within one pass: routes are published before anything is drained, and
# containers are stopped only after the table without them is out.
_ORDER: dict[type, int] = {
    RemoveReplica: 0,
    StartReplica: 1,
    CreateReplica: 2,
    PublishRoutes: 3,
    Drain: 4,
    Undrain: 4,
    StopReplica: 5,
    RecordFailure: 6,
    ClearFailure: 6,
    RecordEvent: 7,
    FinishDeletion: 8,
    WriteStatus: 9,
}


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    routes: tuple[Route, ...]
    # Look again this soon (seconds) because something is in progress; None: nothing is.
    requeue_after: float | None


# -- naming ------------------------------------------------------------------------------------


def container_name(instance: str, service: str, replica: int, template_hash: str) -> str:
    """The one name a slot's container of a template has: a re-planned create collides."""
    return f"{instance}-{service}-{replica}-{template_hash[:12]}"


# -- planning ----------------------------------------------------------------------------------


@dataclass
class _Acc:
    """What planning a pass accumulates."""

    actions: list[Action] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    busy: bool = False
    wake_at: float | None = None

    def wake(self, at: float) -> None:
        self.wake_at = at if self.wake_at is None else min(self.wake_at, at)


def plan(desired: Iterable[DesiredService], world: World, settings: Settings) -> Plan:
    """Compute the actions that move `world` towards `desired`."""
    services = {d.name: d for d in desired}
    by_service: dict[str, list[Container]] = defaultdict(list)
    for c in world.containers:
        by_service[c.service].append(c)
    acc = _Acc()
    for name in sorted(set(services) | set(by_service)):
        containers = sorted(by_service.get(name, []), key=lambda c: (c.replica, c.name))
        service = services.get(name)
        if service is None:
            _plan_orphans(name, containers, world, settings, acc)
        elif service.deleting:
            _plan_deletion(service, containers, world, settings, acc)
        else:
            _plan_service(service, containers, world, settings, acc)

    routes = tuple(sorted(acc.routes, key=lambda r: r.name))
    published = world.routes
    if published is None or _routes_key(published.services) != _routes_key(routes):
        acc.actions.append(PublishRoutes(routes))
        acc.busy = True

    requeue: float | None = settings.requeue if acc.busy else None
    if acc.wake_at is not None:
        until = max(acc.wake_at - world.now, 0.0)
        requeue = until if requeue is None else min(requeue, until)
    actions = sorted(acc.actions, key=lambda a: _ORDER[type(a)])
    return Plan(tuple(actions), routes, requeue)


def build_routes(desired: Iterable[DesiredService], world: World, settings: Settings) -> RouteTable:
    """The route table the world should have, with the next version number."""
    routes = plan(desired, world, settings).routes
    version = (world.routes.version + 1) if world.routes is not None else 1
    return RouteTable(version, routes)


def _routes_key(routes: Sequence[Route]) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    return sorted((r.name, tuple(sorted(r.domains)), tuple(sorted(r.backends))) for r in routes)


def _published_backends(world: World, service: str) -> frozenset[str]:
    if world.routes is None:
        return frozenset()
    route = next((r for r in world.routes.services if r.name == service), None)
    return frozenset(route.backends) if route is not None else frozenset()


def _failed(c: Container, world: World, settings: Settings) -> str | None:
    """Why a container counts as failed, or None."""
    if c.state in _DEAD_STATES:
        code = "unknown" if c.exit_code is None else str(c.exit_code)
        return f"replica {c.replica} exited with code {code}"
    starting = not c.ready and c.state in ("running", "created") and c.started_at > 0
    if starting and world.now - c.started_at > settings.start_timeout:
        return f"replica {c.replica} not ready after {settings.start_timeout:g}s"
    return None


def _retire(c: Container, world: World, settings: Settings, acc: _Acc) -> None:
    """Take a container out: drain then stop if it may be routed, else remove now."""
    acc.busy = True
    if c.stopping:
        return
    if c.serving_candidate:
        if c.draining_since is None:
            acc.actions.append(Drain(c.service, c.id))
        elif world.now - c.draining_since >= settings.grace_period:
            acc.actions.append(StopReplica(c.service, c.id, c.name))
        else:
            acc.wake(c.draining_since + settings.grace_period)
    else:
        acc.actions.append(RemoveReplica(c.service, c.id, c.name))


def _replica_state(c: Container, retiring: bool, failure: str | None) -> str:
    if c.stopping:
        return "stopping"
    if retiring and c.serving_candidate:
        return "draining"
    if failure is not None:
        return "failed"
    return "ready" if c.serving_candidate else "starting"


def _replica_status(c: Container, state: str) -> ReplicaStatus:
    return ReplicaStatus(
        container_id=c.id,
        container_name=c.name,
        replica=c.replica,
        generation=c.generation,
        address=c.address,
        ready=c.serving_candidate,
        state=state,
    )


def _ready_events(service: str, containers: Iterable[Container], world: World, acc: _Acc) -> None:
    """A Ready event for each container seen ready for the first time (per confdb)."""
    recorded = {r.container_id: r for r in world.replica_statuses.get(service, ())}
    for c in containers:
        if c.serving_candidate and not c.stopping:
            before = recorded.get(c.id)
            if before is None or not before.ready:
                acc.actions.append(
                    RecordEvent(service, "Ready", f"replica {c.replica} ready at {c.address}")
                )


def _write_status(
    service: str,
    status: ServiceStatus,
    replicas: list[ReplicaStatus],
    world: World,
    acc: _Acc,
) -> None:
    rows = tuple(sorted(replicas, key=lambda r: (r.replica, r.container_id)))
    before_rows = tuple(
        sorted(world.replica_statuses.get(service, ()), key=lambda r: (r.replica, r.container_id))
    )
    if world.statuses.get(service) != status or before_rows != rows:
        acc.actions.append(WriteStatus(service, status, rows))


def _plan_orphans(
    name: str, containers: list[Container], world: World, settings: Settings, acc: _Acc
) -> None:
    for c in containers:
        _retire(c, world, settings, acc)


def _plan_deletion(
    service: DesiredService,
    containers: list[Container],
    world: World,
    settings: Settings,
    acc: _Acc,
) -> None:
    name = service.name
    before = world.statuses.get(name)
    if before is None or before.state != "deleting":
        acc.actions.append(
            RecordEvent(
                name,
                "Deleting",
                f"routes removed; stopping replicas (generation {service.generation})",
                once=True,
            )
        )
    rows: list[ReplicaStatus] = []
    for c in containers:
        _retire(c, world, settings, acc)
        rows.append(_replica_status(c, _replica_state(c, True, None)))
    if not containers:
        volume = service.spec.volume_name if service.purge_volume else None
        acc.actions.append(FinishDeletion(name, service.generation, volume))
        acc.busy = True
        return
    status = ServiceStatus(
        state="deleting",
        message=f"deleting: {len(containers)} replica(s) left",
        observed_generation=service.generation,
        ready_replicas=0,
    )
    _write_status(name, status, rows, world, acc)


def _plan_service(
    service: DesiredService,
    containers: list[Container],
    world: World,
    settings: Settings,
    acc: _Acc,
) -> None:
    spec = service.spec
    name = service.name
    want = spec.replicas
    current = spec.template_hash()
    failure = world.failures.get((name, current))
    backing_off = failure is not None and failure.retry_at > world.now
    if backing_off and failure is not None:
        acc.wake(failure.retry_at)
    published = _published_backends(world, name)

    live = [c for c in containers if not c.stopping]
    retiring: set[str] = {c.id for c in containers if c.stopping}
    by_slot: dict[int, list[Container]] = defaultdict(list)
    for c in live:
        if c.replica >= want:
            retiring.add(c.id)
        else:
            by_slot[c.replica].append(c)

    failures: dict[str, str] = {}
    failure_message: str | None = None
    in_progress = 0
    fresh: list[tuple[int, str | None]] = []  # (slot, failed container to replace)
    rolling: list[int] = []
    converged = True

    for slot in range(want):
        in_slot = by_slot.get(slot, [])
        mine = [c for c in in_slot if c.template_hash == current]
        old = [c for c in in_slot if c.template_hash != current]
        # Names are unique per template, so at most one is expected; keep the oldest.
        cur = mine[0] if mine else None
        for extra in mine[1:]:
            retiring.add(extra.id)
        old_ready = [c for c in old if c.serving_candidate]
        for c in old:
            if not c.serving_candidate:
                retiring.add(c.id)
        if old:
            converged = False

        if cur is None:
            converged = False
            if old_ready:
                rolling.append(slot)
            else:
                fresh.append((slot, None))
            continue

        why = _failed(cur, world, settings)
        if why is not None:
            converged = False
            failures[cur.id] = why
            failure_message = failure_message or why
            recorded = failure is not None and failure.container_id == cur.id
            if not recorded:
                was = next(
                    (r for r in world.replica_statuses.get(name, ()) if r.container_id == cur.id),
                    None,
                )
                acc.actions.append(
                    RecordFailure(
                        name,
                        current,
                        cur.id,
                        why,
                        event=was is None or was.state != "failed",
                    )
                )
                acc.busy = True
            elif not backing_off:
                fresh.append((slot, cur.id))
            in_progress += 1
            continue

        if not cur.serving_candidate:
            converged = False
            in_progress += 1
            acc.busy = True
            if cur.state == "created" and not backing_off:
                acc.actions.append(StartReplica(name, cur.id, cur.name))
            continue

        if cur.address not in published:
            # Ready, and this pass's table puts it in; its old peers go next pass.
            converged = False
            in_progress += 1
            acc.busy = True
            continue
        for c in old_ready:
            retiring.add(c.id)

    # Creations: fresh slots at once; rolling replacements one at a time (surge 1).
    creations = list(fresh)
    if rolling and in_progress == 0 and not fresh:
        creations.append((rolling[0], None))
    existing_slots = {c.replica for c in live if c.replica < want}
    if creations and not backing_off:
        for slot, replace in creations:
            acc.actions.append(
                CreateReplica(
                    service=name,
                    replica=slot,
                    generation=service.generation,
                    spec=spec,
                    name=container_name(settings.instance, name, slot, current),
                    replace=replace,
                )
            )
        acc.busy = True
        grown = [slot for slot, replace in creations if replace is None and slot not in by_slot]
        if grown and existing_slots:
            acc.actions.append(
                RecordEvent(
                    name,
                    "ScaledUp",
                    f"scaling to {want} replica(s) (generation {service.generation})",
                    once=True,
                )
            )

    surplus = [c for c in live if c.replica >= want]
    if surplus and any(c.draining_since is None for c in surplus):
        acc.actions.append(
            RecordEvent(
                name,
                "ScaledDown",
                f"scaling to {want} replica(s) (generation {service.generation})",
                once=True,
            )
        )

    for c in containers:
        if c.id in retiring:
            converged = False
            _retire(c, world, settings, acc)

    # The route: every ready container that is not on its way out, of any template.
    backends = tuple(
        sorted(c.address for c in live if c.serving_candidate and c.id not in retiring)
    )
    acc.routes.append(Route(name=name, domains=(spec.domain,), backends=backends))
    for c in live:
        if c.draining_since is not None and c.id not in retiring:
            # Wanted again (a deletion or scale-down was undone): its next drain starts afresh.
            acc.actions.append(Undrain(name, c.id))

    _ready_events(name, live, world, acc)

    rows = [
        _replica_status(c, _replica_state(c, c.id in retiring, failures.get(c.id)))
        for c in containers
    ]
    before = world.statuses.get(name)
    previous_observed = before.observed_generation if before is not None else 0
    ready_count = len(backends)
    if failure_message is None and failure is not None and not converged:
        failure_message = failure.message
    if failure_message is not None:
        status = ServiceStatus("failing", failure_message, service.generation, ready_count)
    elif converged:
        if failure is not None:
            acc.actions.append(ClearFailure(name, current))
        status = ServiceStatus("running", f"{want}/{want} ready", service.generation, ready_count)
    else:
        updated = sum(
            1
            for c in live
            if c.template_hash == current
            and c.replica < want
            and c.serving_candidate
            and c.id not in retiring
        )
        outdated = any(c.template_hash != current for c in live)
        message = (
            f"updating: {updated}/{want} replaced, {ready_count} ready"
            if outdated
            else f"{updated}/{want} ready"
        )
        status = ServiceStatus("starting", message, previous_observed, ready_count)
    _write_status(name, status, rows, world, acc)
