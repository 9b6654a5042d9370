"""The pure reconcile planner: one scenario per case, checked by the actions it returns."""

from __future__ import annotations

import ast
import pathlib
from dataclasses import replace

from sws.plan import (
    ClearFailure,
    Container,
    CreateReplica,
    DesiredService,
    Drain,
    Failure,
    FinishDeletion,
    Plan,
    PublishRoutes,
    RecordEvent,
    RecordFailure,
    RemoveReplica,
    ReplicaStatus,
    ServiceStatus,
    Settings,
    StartReplica,
    StopReplica,
    Undrain,
    World,
    WriteStatus,
    container_name,
    plan,
)
from sws.route_table import Route, RouteTable
from sws.spec import EnvVar, ServiceSpec

NOW = 1_000_000.0
SETTINGS = Settings(instance="sws", start_timeout=60, grace_period=2, requeue=0.25)


def spec(replicas: int = 1, image: str = "sws/testapp:latest", **kw: object) -> ServiceSpec:
    return ServiceSpec(
        name=str(kw.get("name", "web")),
        port=8080,
        domain=str(kw.get("domain", "web.example.com")),
        image=image,
        replicas=replicas,
        volume_mount=kw.get("volume_mount"),  # type: ignore[arg-type]
        env=(EnvVar("PORT", "8080"),),
    )


def desired(s: ServiceSpec, generation: int = 1, **kw: bool) -> DesiredService:
    return DesiredService(s, generation, **kw)


_ips = iter(range(2, 250))


def container(
    s: ServiceSpec,
    replica: int,
    *,
    ready: bool = True,
    state: str = "running",
    template: str | None = None,
    **kw: object,
) -> Container:
    h = template or s.template_hash()
    ip = kw.pop("ip", f"172.18.0.{next(_ips)}")
    return Container(
        id=f"id-{s.name}-{replica}-{h[:6]}",
        name=container_name("sws", s.name, replica, h),
        service=s.name,
        replica=replica,
        generation=1,
        template_hash=h,
        port=s.port,
        state=state,
        ip=str(ip),
        ready=ready,
        started_at=kw.pop("started_at", NOW - 5),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def table(*routes: Route, version: int = 1) -> RouteTable:
    return RouteTable(version, tuple(routes))


def route_of(s: ServiceSpec, *cs: Container) -> Route:
    return Route(s.name, (s.domain,), tuple(sorted(c.address for c in cs)))


def of(p: Plan, kind: type) -> list:  # type: ignore[type-arg]
    return [a for a in p.actions if isinstance(a, kind)]


def status_of(p: Plan, service: str = "web") -> ServiceStatus:
    writes = [a for a in of(p, WriteStatus) if a.service == service]
    assert writes, f"no status written for {service}"
    return writes[0].status


def test_fresh_service_creates_every_replica_at_once() -> None:
    s = spec(replicas=3)
    p = plan([desired(s)], World(NOW), SETTINGS)
    creates = of(p, CreateReplica)
    assert [c.replica for c in creates] == [0, 1, 2]
    assert len({c.name for c in creates}) == 3
    assert all(c.name.startswith("sws-web-") for c in creates)
    assert status_of(p).state == "starting"
    assert p.requeue_after == SETTINGS.requeue
    # The route exists with no backends yet, so the domain is known.
    assert of(p, PublishRoutes)[0].routes == (Route("web", ("web.example.com",), ()),)


def test_names_are_deterministic_per_slot_and_template() -> None:
    s = spec()
    a = plan([desired(s)], World(NOW), SETTINGS)
    b = plan([desired(s, generation=2)], World(NOW + 50), SETTINGS)
    assert of(a, CreateReplica)[0].name == of(b, CreateReplica)[0].name
    changed = spec(image="sws/testapp:v2")
    c = plan([desired(changed)], World(NOW), SETTINGS)
    assert of(c, CreateReplica)[0].name != of(a, CreateReplica)[0].name


def test_ready_replica_is_routed_and_service_runs() -> None:
    s = spec(replicas=2)
    cs = (container(s, 0), container(s, 1))
    p = plan([desired(s, generation=4)], World(NOW, cs), SETTINGS)
    assert not of(p, CreateReplica)
    publish = of(p, PublishRoutes)[0]
    assert publish.routes == (route_of(s, *cs),)
    # Running only once the table that routes them is out.
    assert status_of(p).state == "starting"
    assert [e.reason for e in of(p, RecordEvent)] == ["Ready", "Ready"]
    p = plan([desired(s, generation=4)], World(NOW, cs, routes=table(publish.routes[0])), SETTINGS)
    st = status_of(p)
    assert (st.state, st.message, st.observed_generation) == ("running", "2/2 ready", 4)


def test_steady_state_is_a_no_op() -> None:
    s = spec(replicas=2)
    cs = (container(s, 0), container(s, 1))
    rows = tuple(ReplicaStatus(c.id, c.name, c.replica, 1, c.address, True, "ready") for c in cs)
    world = World(
        NOW,
        cs,
        routes=table(route_of(s, *cs)),
        statuses={"web": ServiceStatus("running", "2/2 ready", 1, 2)},
        replica_statuses={"web": rows},
    )
    p = plan([desired(s)], world, SETTINGS)
    assert p.actions == ()
    assert p.requeue_after is None


def test_starting_replica_is_not_routed() -> None:
    s = spec()
    c = container(s, 0, ready=False)
    p = plan([desired(s)], World(NOW, (c,)), SETTINGS)
    assert of(p, PublishRoutes)[0].routes[0].backends == ()
    assert not of(p, CreateReplica)
    assert status_of(p).state == "starting"
    assert p.requeue_after == SETTINGS.requeue


def test_created_but_never_started_is_started_not_duplicated() -> None:
    s = spec()
    c = container(s, 0, ready=False, state="created", ip="")
    p = plan([desired(s)], World(NOW, (c,)), SETTINGS)
    assert of(p, StartReplica) == [StartReplica("web", c.id, c.name)]
    assert not of(p, CreateReplica)


def test_scale_up_creates_only_the_new_slots() -> None:
    s = spec(replicas=3)
    c0 = container(s, 0)
    world = World(NOW, (c0,), routes=table(route_of(s, c0)))
    p = plan([desired(s, generation=2)], world, SETTINGS)
    assert [c.replica for c in of(p, CreateReplica)] == [1, 2]
    assert "ScaledUp" in [e.reason for e in of(p, RecordEvent)]


def test_scale_down_routes_out_first_then_stops_after_grace() -> None:
    s = spec(replicas=1)
    cs = [container(s, i) for i in range(3)]
    world = World(NOW, tuple(cs), routes=table(route_of(s, *cs)))
    p = plan([desired(s, generation=2)], world, SETTINGS)
    assert of(p, PublishRoutes)[0].routes == (route_of(s, cs[0]),)
    assert {d.container_id for d in of(p, Drain)} == {cs[1].id, cs[2].id}
    assert not of(p, StopReplica)
    assert "ScaledDown" in [e.reason for e in of(p, RecordEvent)]
    # The order is publish, then drain.
    kinds = [type(a) for a in p.actions]
    assert kinds.index(PublishRoutes) < kinds.index(Drain)

    # Within the grace period: nothing stops yet, look again when it ends.
    drained = [replace(c, draining_since=NOW) for c in cs[1:]]
    world = World(NOW + 1, (cs[0], *drained), routes=table(route_of(s, cs[0])))
    p = plan([desired(s, generation=2)], world, SETTINGS)
    assert not of(p, StopReplica)
    assert p.requeue_after is not None and p.requeue_after <= 1.0

    # After it: stop both; the service is not converged until they are gone.
    world = World(NOW + 2.5, (cs[0], *drained), routes=table(route_of(s, cs[0])))
    p = plan([desired(s, generation=2)], world, SETTINGS)
    assert {a.container_id for a in of(p, StopReplica)} == {cs[1].id, cs[2].id}
    assert not of(p, PublishRoutes)
    assert status_of(p).state == "starting"


def test_rolling_update_is_one_at_a_time_and_never_below_desired() -> None:
    """Walk a 3-replica image update pass by pass, executing the plan against a model."""
    old_spec = spec(replicas=3, image="sws/testapp:latest")
    new_spec = spec(replicas=3, image="sws/testapp:v2")
    containers = {c.id: c for c in (container(old_spec, i) for i in range(3))}
    routes = table(route_of(old_spec, *containers.values()))
    now = NOW
    min_backends = 3
    created_order: list[int] = []
    for _ in range(60):
        world = World(now, tuple(containers.values()), routes=routes)
        p = plan([desired(new_spec, generation=2)], world, SETTINGS)
        creates = of(p, CreateReplica)
        assert len(creates) <= 1, "surge is one"
        starting = [
            c
            for c in containers.values()
            if c.template_hash == new_spec.template_hash() and not c.ready
        ]
        assert not (creates and starting), "no second replacement while one is starting"
        for a in p.actions:
            if isinstance(a, RemoveReplica | StopReplica):
                c = containers.pop(a.container_id)
                assert c.address not in routes.backends(), "stopped while routed"
            elif isinstance(a, Drain):
                containers[a.container_id] = replace(containers[a.container_id], draining_since=now)
            elif isinstance(a, PublishRoutes):
                routes = RouteTable(routes.version + 1, a.routes)
                min_backends = min(min_backends, len(routes.services[0].backends))
        # New containers start "not ready" and become ready on the next pass.
        for cid, c in list(containers.items()):
            if not c.ready:
                containers[cid] = replace(c, ready=True)
        for a in creates:
            created_order.append(a.replica)
            c = container(new_spec, a.replica, ready=False)
            containers[c.id] = c
        now += 1.0
        if p.requeue_after is None:
            break
    else:
        raise AssertionError("did not converge")
    assert created_order == [0, 1, 2]
    assert min_backends >= 3
    assert {c.template_hash for c in containers.values()} == {new_spec.template_hash()}
    assert len(containers) == 3
    assert routes.services[0].backends == tuple(sorted(c.address for c in containers.values()))


def test_old_replica_leaves_only_after_new_one_is_published() -> None:
    old_spec = spec(image="sws/testapp:latest")
    new_spec = spec(image="sws/testapp:v2")
    old = container(old_spec, 0)
    new = container(new_spec, 0)
    # New one ready but not yet in the published table: both are routed, nothing retires.
    world = World(NOW, (old, new), routes=table(route_of(old_spec, old)))
    p = plan([desired(new_spec, generation=2)], world, SETTINGS)
    assert of(p, PublishRoutes)[0].routes == (route_of(old_spec, old, new),)
    assert not of(p, Drain) and not of(p, StopReplica)
    # Once published, the old one is routed out.
    world = World(NOW, (old, new), routes=table(route_of(old_spec, old, new)))
    p = plan([desired(new_spec, generation=2)], world, SETTINGS)
    assert of(p, PublishRoutes)[0].routes == (route_of(new_spec, new),)
    assert of(p, Drain) == [Drain("web", old.id)]
    st = status_of(p)
    assert (st.state, st.message) == ("starting", "updating: 1/1 replaced, 1 ready")


def test_failed_new_replica_keeps_old_serving_and_backs_off() -> None:
    old_spec = spec(replicas=2, image="sws/testapp:latest")
    new_spec = spec(replicas=2, image="sws/testapp:v2")
    olds = [container(old_spec, i) for i in range(2)]
    bad = container(new_spec, 0, ready=False, state="exited", exit_code=3)
    routes = table(route_of(old_spec, *olds))
    world = World(NOW, (*olds, bad), routes=routes)
    p = plan([desired(new_spec, generation=2)], world, SETTINGS)
    failure = of(p, RecordFailure)
    assert failure == [
        RecordFailure("web", new_spec.template_hash(), bad.id, "replica 0 exited with code 3", True)
    ]
    assert not of(p, CreateReplica), "no retry before the failure is recorded"
    assert not of(p, PublishRoutes), "routes stay as they were"
    assert not of(p, Drain) and not of(p, StopReplica) and not of(p, RemoveReplica)
    st = status_of(p)
    assert (st.state, st.message, st.observed_generation) == (
        "failing",
        "replica 0 exited with code 3",
        2,
    )

    # Recorded and backing off: still nothing, and wake up when the back-off ends.
    failures = {
        ("web", new_spec.template_hash()): Failure("replica 0 exited with code 3", NOW + 30, bad.id)
    }
    world = World(NOW + 1, (*olds, bad), routes=routes, failures=failures)
    p = plan([desired(new_spec, generation=2)], world, SETTINGS)
    assert not of(p, CreateReplica) and not of(p, RecordFailure)
    assert p.requeue_after == 29

    # Back-off over: the failed container is replaced (removed first, same name).
    world = World(NOW + 31, (*olds, bad), routes=routes, failures=failures)
    p = plan([desired(new_spec, generation=2)], world, SETTINGS)
    create = of(p, CreateReplica)
    assert len(create) == 1 and create[0].replace == bad.id and create[0].name == bad.name
    assert status_of(p).state == "failing"


def test_replica_not_ready_within_start_timeout_fails() -> None:
    s = spec()
    c = container(s, 0, ready=False, started_at=NOW - 61)
    p = plan([desired(s)], World(NOW, (c,)), SETTINGS)
    assert of(p, RecordFailure)[0].message == "replica 0 not ready after 60s"
    assert status_of(p).state == "failing"


def test_image_failure_holds_creation_and_reports_it() -> None:
    s = spec(image="sws/missing:v1")
    failures = {("web", s.template_hash()): Failure("image not found: sws/missing:v1", NOW + 10)}
    p = plan([desired(s, generation=3)], World(NOW, failures=failures), SETTINGS)
    assert not of(p, CreateReplica)
    st = status_of(p)
    assert (st.state, st.message, st.observed_generation) == (
        "failing",
        "image not found: sws/missing:v1",
        3,
    )
    # A new spec (new template) is tried at once.
    fixed = spec(image="sws/testapp:v2")
    p = plan([desired(fixed, generation=4)], World(NOW, failures=failures), SETTINGS)
    assert len(of(p, CreateReplica)) == 1


def test_convergence_clears_the_failure() -> None:
    s = spec()
    c = container(s, 0)
    failures = {("web", s.template_hash()): Failure("image not found: x", NOW - 1)}
    world = World(NOW, (c,), routes=table(route_of(s, c)), failures=failures)
    p = plan([desired(s)], world, SETTINGS)
    assert of(p, ClearFailure) == [ClearFailure("web", s.template_hash())]
    assert status_of(p).state == "running"


def test_delete_routes_first_then_stops_then_finishes() -> None:
    s = spec(replicas=2, volume_mount="/data")
    cs = [container(s, i) for i in range(2)]
    world = World(NOW, tuple(cs), routes=table(route_of(s, *cs)))
    p = plan([desired(s, generation=5, deleting=True)], world, SETTINGS)
    assert of(p, PublishRoutes)[0].routes == ()
    assert {d.container_id for d in of(p, Drain)} == {c.id for c in cs}
    assert not of(p, FinishDeletion) and not of(p, StopReplica)
    assert status_of(p).state == "deleting"

    drained = tuple(replace(c, draining_since=NOW) for c in cs)
    world = World(NOW + 3, drained, routes=table())
    p = plan([desired(s, generation=5, deleting=True)], world, SETTINGS)
    assert len(of(p, StopReplica)) == 2
    assert not of(p, FinishDeletion)

    p = plan([desired(s, generation=5, deleting=True)], World(NOW + 4, routes=table()), SETTINGS)
    assert of(p, FinishDeletion) == [FinishDeletion("web", 5, None)], "volume kept"

    purge = desired(s, generation=5, deleting=True, purge_volume=True)
    p = plan([purge], World(NOW + 4, routes=table()), SETTINGS)
    assert of(p, FinishDeletion) == [FinishDeletion("web", 5, "web-volume")]


def test_orphans_are_retired_and_other_services_untouched() -> None:
    s = spec()
    gone = spec(name="gone", domain="gone.example.com")
    mine = container(s, 0)
    orphan_ready = container(gone, 0)
    orphan_dead = container(gone, 1, ready=False, state="exited", exit_code=1)
    world = World(NOW, (mine, orphan_ready, orphan_dead), routes=table(route_of(s, mine)))
    p = plan([desired(s)], world, SETTINGS)
    assert of(p, Drain) == [Drain("gone", orphan_ready.id)]
    assert of(p, RemoveReplica) == [RemoveReplica("gone", orphan_dead.id, orphan_dead.name)]
    assert all(getattr(a, "service", "web") in ("web", "gone") for a in p.actions)
    assert not [a for a in of(p, WriteStatus) if a.service == "gone"]


def test_updating_one_service_does_not_touch_another() -> None:
    a_old = spec(name="a", domain="a.example.com")
    a_new = spec(name="a", domain="a.example.com", image="sws/testapp:v2")
    b = spec(name="b", domain="b.example.com")
    ca, cb = container(a_old, 0), container(b, 0)
    world = World(NOW, (ca, cb), routes=table(route_of(a_old, ca), route_of(b, cb)))
    p = plan([desired(a_new, generation=2), desired(b)], world, SETTINGS)
    touched = {
        getattr(x, "service", None)
        for x in p.actions
        if not isinstance(x, WriteStatus | RecordEvent)
    }
    assert touched <= {"a", None}
    assert of(p, CreateReplica)[0].service == "a"


def test_domain_change_reroutes_without_replacing() -> None:
    s = spec()
    c = container(s, 0)
    moved = spec(domain="new.example.com")
    world = World(NOW, (c,), routes=table(route_of(s, c)))
    p = plan([desired(moved, generation=2)], world, SETTINGS)
    assert not of(p, CreateReplica) and not of(p, Drain)
    assert of(p, PublishRoutes)[0].routes[0].domains == ("new.example.com",)


def test_stopping_containers_are_left_alone() -> None:
    s = spec()
    c = container(s, 0)
    stopping = replace(container(s, 1), stopping=True)
    world = World(NOW, (c, stopping), routes=table(route_of(s, c)))
    p = plan([desired(s)], world, SETTINGS)
    assert not [a for a in p.actions if getattr(a, "container_id", None) == stopping.id]
    assert p.requeue_after == SETTINGS.requeue


def test_planner_module_does_no_io() -> None:
    source = pathlib.Path("sws/plan.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {n.name.split(".")[0] for n in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"socket", "docker", "psycopg", "asyncio", "flask", "requests"}


def test_undone_deletion_routes_a_draining_replica_again() -> None:
    s = spec()
    c = replace(container(s, 0), draining_since=NOW - 1)
    world = World(NOW, (c,), routes=table())
    p = plan([desired(s, generation=3)], world, SETTINGS)
    assert of(p, Undrain) == [Undrain("web", c.id)]
    assert of(p, PublishRoutes)[0].routes == (route_of(s, c),)
    assert not of(p, StopReplica)


def test_scale_events_name_the_generation_and_are_one_offs() -> None:
    s = spec(replicas=1)
    cs = [container(s, i) for i in range(2)]
    p = plan([desired(s, generation=7)], World(NOW, tuple(cs)), SETTINGS)
    (event,) = [e for e in of(p, RecordEvent) if e.reason == "ScaledDown"]
    assert event.once and event.message == "scaling to 1 replica(s) (generation 7)"
