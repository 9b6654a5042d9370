"""The agent: observe confdb and Docker, plan (sws.plan), act; again and again.

Theory of operation
-------------------
One thread runs passes. A pass reads the desired state in one confdb snapshot, lists this
instance's containers (one Docker call; only new or not-yet-ready containers are probed or
inspected), plans with the pure `sws.plan.plan` and executes the actions. Quick actions
(publish routes, remove a container that serves nothing, record status) run inline; slow ones
(create with its image pull, graceful stop) run on a small worker pool, and what they concern
is marked so later passes neither repeat nor disturb them. The rolling proxy swap runs on a
thread of its own (`agent.swap`), offered each pass's newest table.
No pass waits for a container to become ready: while anything is in progress the plan asks
for a short requeue, and a later pass carries on. So one service's rolling update never holds
up another's.

Passes run every `interval`, at once when confdb NOTIFYs `sws_desired_state` (a listener
thread on its own autocommit connection sets a wake-up flag; bursts collapse into one pass,
because the flag is cleared just before a pass reads its snapshot), and when a worker
finishes.

Only one agent acts at a time: the active one holds a session-level advisory lock on a
connection of its own. Another agent of the same instance waits, retrying the lock each
second, and takes over when the first one's connection drops (a crash closes it, and
PostgreSQL releases the lock).

What the agent remembers between passes (which containers were seen ready, which are draining
since when, which failed and until when to back off) is an optimisation, never the truth:
after a restart it is rebuilt by probing and re-draining, which only costs one grace period.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg

from agent.config import Config
from agent.logfmt import fmt
from agent.runtime import (
    LABEL_GENERATION,
    LABEL_PORT,
    LABEL_REPLICA,
    LABEL_SERVICE,
    LABEL_TEMPLATE,
    ContainerInfo,
    ContainerRequest,
    Runtime,
)
from agent.swap import SwapLoop
from confdb import observed, routes
from confdb.db import DESIRED_STATE_CHANNEL, connect, redact
from confdb.migrate import MigrationError, migrate
from sws.errors import Conflict, NotFound, RouteTableError, SpecError, SwsError, Unavailable
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
    ServiceStatus,
    Settings,
    StartReplica,
    StopReplica,
    Undrain,
    World,
    WriteStatus,
    plan,
)
from sws.platform_routes import api_route, combine, platform_part, screen, tenant_part
from sws.route_table import Route, RouteTable
from sws.spec import ServiceSpec

log = logging.getLogger("sws.agent")


RouteHook = Callable[[RouteTable], None]


@dataclass
class _FailureRecord:
    count: int
    failure: Failure


class Agent:
    """The reconciler for one SWS instance: `run()` blocks until `stop()`."""

    def __init__(self, config: Config, on_routes: RouteHook | None = None) -> None:
        self.config = config
        self.settings = Settings(
            instance=config.instance,
            start_timeout=config.start_timeout,
            grace_period=config.grace_period,
            requeue=config.requeue,
        )
        # Called with each newly published route table: where the proxy swap plugs in.
        self._on_routes = on_routes
        self._stopped = threading.Event()
        self._wake = threading.Event()
        self.leading = threading.Event()
        self.passes = 0
        self._runtime: Runtime | None = None
        self._db: psycopg.Connection[Any] | None = None
        # Shared with workers; guarded by _mutex.
        self._mutex = threading.Lock()
        self._ready: set[str] = set()
        self._draining: dict[str, float] = {}
        # The table version that routed each draining container out.
        self._drain_versions: dict[str, int] = {}
        self._stopping: set[str] = set()
        # (service, reason, message) of one-off events already recorded.
        self._announced: set[tuple[str, str, str]] = set()
        # Names of containers a worker is creating: a pass must not plan them twice.
        self._creating: set[str] = set()
        self._failures: dict[tuple[str, str], _FailureRecord] = {}
        self._pending_events: list[observed.Event] = []
        self._latest: RouteTable | None = None
        self._swap = SwapLoop(config, self.leading) if config.proxies else None
        # The platform's own routes for this pass, and the apiserver's last resolved addresses.
        self._platform: tuple[Route, ...] = ()
        self._api_backends: tuple[str, ...] = ()
        self._api_error: str | None = None
        self._workers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sws-agent-work")
        self._probes = ThreadPoolExecutor(max_workers=16, thread_name_prefix="sws-agent-probe")

    # -- lifecycle ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask `run()` to return after the current pass; safe from any thread or signal."""
        self._stopped.set()
        self._wake.set()

    def run(self) -> None:
        log.info(
            fmt(
                "agent.start",
                instance=self.config.instance,
                network=self.config.network,
                confdb=redact(self.config.database_url),
                interval=self.config.interval,
            )
        )
        listener: threading.Thread | None = None
        try:
            if not self.prepare():
                return
            listener = threading.Thread(target=self._listen, name="sws-agent-listen", daemon=True)
            listener.start()
            if self._swap is not None:
                self._swap.start()
            while not self._stopped.is_set():
                lock_conn = self._acquire_leadership()
                if lock_conn is None:
                    break
                try:
                    self._lead(lock_conn)
                finally:
                    self.leading.clear()
                    with contextlib.suppress(Exception):
                        lock_conn.close()
        finally:
            self._stopped.set()
            if self._swap is not None:
                self._swap.stop()
            self._workers.shutdown(wait=True)
            self._probes.shutdown(wait=True)
            if listener is not None:
                listener.join(timeout=5)
            self._close_db()
            if self._runtime is not None:
                self._runtime.close()
            log.info(fmt("agent.stop", instance=self.config.instance))

    def prepare(self) -> bool:
        """Apply migrations and make sure the services network exists, retrying until both work."""
        while not self._stopped.is_set():
            try:
                with connect(self.config.database_url) as conn:
                    applied = migrate(conn)
                if applied:
                    log.info(fmt("confdb.migrated", applied=",".join(applied)))
                break
            except MigrationError:
                raise
            except (Unavailable, psycopg.Error) as e:
                log.warning(fmt("confdb.unavailable", error=_first_line(e)))
                self._stopped.wait(1.0)
        while not self._stopped.is_set():
            try:
                if self._runtime is None:
                    self._runtime = Runtime(
                        self.config.instance, self.config.network, self.config.docker_url
                    )
                network_id = self._runtime.ensure_network()
                log.info(fmt("network.ready", name=self.config.network, id=network_id[:12]))
                return True
            except SwsError as e:
                log.warning(fmt("docker.unavailable", error=e.message))
                self._stopped.wait(1.0)
        return False

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = Runtime(
                self.config.instance, self.config.network, self.config.docker_url
            )
        return self._runtime

    def _acquire_leadership(self) -> psycopg.Connection[Any] | None:
        """Block until this agent holds the instance's advisory lock (None when stopped)."""
        waiting_logged = False
        while not self._stopped.is_set():
            conn: psycopg.Connection[Any] | None = None
            try:
                conn = connect(self.config.database_url, autocommit=True)
                while not self._stopped.is_set():
                    row: Any = conn.execute(
                        "SELECT pg_try_advisory_lock(%s)", (self.config.leader_lock_key,)
                    ).fetchone()
                    if row is not None and row[0]:
                        log.info(fmt("leader.acquired", instance=self.config.instance))
                        self.leading.set()
                        return conn
                    if not waiting_logged:
                        log.info(fmt("leader.standby", instance=self.config.instance))
                        waiting_logged = True
                    self._stopped.wait(1.0)
            except (Unavailable, psycopg.Error) as e:
                log.warning(fmt("confdb.unavailable", error=_first_line(e)))
                self._stopped.wait(1.0)
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
        return None

    def _lead(self, lock_conn: psycopg.Connection[Any]) -> None:
        self._wake.set()
        while not self._stopped.is_set():
            try:
                lock_conn.execute("SELECT 1")
            except psycopg.Error as e:
                log.warning(fmt("leader.lost", error=_first_line(e)))
                return
            self._wake.clear()
            try:
                requeue = self.run_pass()
            except (Unavailable, psycopg.Error) as e:
                log.warning(fmt("pass.failed", error=_first_line(e)))
                self._close_db()
                requeue = 1.0
            except Exception:
                # A bug must not take the platform's only reconciler down; log it and go on.
                log.exception(fmt("pass.crashed"))
                self._close_db()
                requeue = 1.0
            timeout = (
                self.config.interval if requeue is None else min(requeue, self.config.interval)
            )
            self._wake.wait(timeout)

    def _listen(self) -> None:
        """Set the wake-up flag on every NOTIFY of desired-state changes."""
        while not self._stopped.is_set():
            try:
                with connect(self.config.database_url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {DESIRED_STATE_CHANNEL}")
                    # Changes made while not listening would otherwise wait a whole interval.
                    self._wake.set()
                    while not self._stopped.is_set():
                        for _ in conn.notifies(timeout=0.5):
                            self._wake.set()
            except (Unavailable, psycopg.Error) as e:
                log.warning(fmt("listen.failed", error=_first_line(e)))
                self._stopped.wait(1.0)

    # -- one pass -----------------------------------------------------------------------------

    def _conn(self) -> psycopg.Connection[Any]:
        if self._db is None or self._db.closed:
            self._db = connect(self.config.database_url)
        return self._db

    def _close_db(self) -> None:
        if self._db is not None:
            with contextlib.suppress(Exception):
                self._db.close()
            self._db = None

    def run_pass(self) -> float | None:
        """Observe, plan and act once; return how soon to look again (None: no hurry)."""
        started = time.monotonic()
        conn = self._conn()
        snapshot = observed.read_snapshot(conn)
        every = self._desired(snapshot)
        containers = self.observe()
        self._latest = (
            routes.table_from_row(*snapshot.routes) if snapshot.routes is not None else None
        )
        self._platform = self._platform_routes()
        # A service asking for the platform's domain is never routed (nor run).
        desired, refused = screen(every, (d for r in self._platform for d in r.domains))
        world = World(
            now=time.time(),
            containers=tuple(containers),
            routes=tenant_part(self._latest),
            statuses=snapshot.statuses,
            replica_statuses=snapshot.replicas,
            failures=self._failure_view(every),
        )
        result = plan(desired, world, self.settings)
        writes = observed.Writes()
        with self._mutex:
            writes.events.extend(self._pending_events)
            self._pending_events.clear()
        self._execute(result, writes)
        self._refuse(refused, snapshot.statuses, writes)
        self._publish_platform()
        if writes:
            for name in observed.write_observed(conn, writes):
                log.info(fmt("service.deleted", service=name))
        if self._swap is not None and self._latest is not None:
            self._swap.offer(self._latest)
        self.passes += 1
        if len(result.actions) > 0:
            log.debug(
                fmt(
                    "pass.done",
                    actions=len(result.actions),
                    services=len(desired),
                    containers=len(containers),
                    ms=round((time.monotonic() - started) * 1000, 1),
                )
            )
        return result.requeue_after

    def _desired(self, snapshot: observed.Snapshot) -> list[DesiredService]:
        out: list[DesiredService] = []
        for row in snapshot.services:
            try:
                spec = ServiceSpec.from_document(row.document)
            except SpecError as e:
                log.error(fmt("spec.invalid", service=row.name, error=e.message))
                continue
            out.append(DesiredService(spec, row.generation, row.deleting, row.purge_volume))
        return out

    def _failure_view(self, desired: list[DesiredService]) -> dict[tuple[str, str], Failure]:
        current = {(d.name, d.spec.template_hash()) for d in desired}
        names = {d.name for d in desired}
        self._announced = {a for a in self._announced if a[0] in names}
        with self._mutex:
            for key in list(self._failures):
                if key not in current:
                    del self._failures[key]
            return {k: r.failure for k, r in self._failures.items()}

    def observe(self) -> list[Container]:
        """This instance's containers, with readiness probed for those not yet known ready."""
        infos = self.runtime.list_containers()
        present = {i.id for i in infos}
        with self._mutex:
            self._ready &= present
            self._stopping &= present
            for cid in list(self._draining):
                if cid not in present:
                    del self._draining[cid]
                    self._drain_versions.pop(cid, None)
            for i in infos:
                if i.state != "running":
                    self._ready.discard(i.id)
            known_ready = set(self._ready)

        unsure = [i for i in infos if i.id not in known_ready]
        probed = list(self._probes.map(self._look, unsure))
        details: dict[str, tuple[float, int | None, bool]] = {
            i.id: d for i, d in zip(unsure, probed, strict=True) if d is not None
        }

        out: list[Container] = []
        with self._mutex:
            for i in infos:
                detail = details.get(i.id)
                if detail is not None and detail[2]:
                    self._ready.add(i.id)
                container = self._container(i, detail)
                if container is not None:
                    out.append(container)
        return out

    def _look(self, info: ContainerInfo) -> tuple[float, int | None, bool] | None:
        """Inspect a container not known ready, and probe it if it runs: (started, exit, ready)."""
        try:
            started, exit_code = self.runtime.inspect_state(info.id)
        except NotFound:
            return None
        ready = False
        port = _int(info.labels.get(LABEL_PORT))
        if info.state == "running" and info.ip and port is not None:
            try:
                with socket.create_connection((info.ip, port), timeout=self.config.probe_timeout):
                    ready = True
            except OSError:
                ready = False
        return started or info.created, exit_code, ready

    def _container(
        self, info: ContainerInfo, detail: tuple[float, int | None, bool] | None
    ) -> Container | None:
        labels = info.labels
        service = labels.get(LABEL_SERVICE, "")
        replica = _int(labels.get(LABEL_REPLICA))
        generation = _int(labels.get(LABEL_GENERATION))
        port = _int(labels.get(LABEL_PORT))
        template = labels.get(LABEL_TEMPLATE, "")
        if not service or replica is None or generation is None or port is None or not template:
            log.warning(fmt("container.unlabelled", name=info.name))
            return None
        started, exit_code = (detail[0], detail[1]) if detail is not None else (info.created, None)
        return Container(
            id=info.id,
            name=info.name,
            service=service,
            replica=replica,
            generation=generation,
            template_hash=template,
            port=port,
            state=info.state,
            ip=info.ip,
            ready=info.id in self._ready,
            started_at=started,
            exit_code=exit_code,
            draining_since=self._draining.get(info.id),
            stopping=info.id in self._stopping,
        )

    # -- acting -------------------------------------------------------------------------------

    def _execute(self, result: Plan, writes: observed.Writes) -> None:
        finished: set[str] = set()
        published = True
        for action in result.actions:
            if isinstance(action, Drain) and not published:
                # The table without this container is not out: it must keep running.
                continue
            try:
                if isinstance(action, FinishDeletion):
                    if self._finish_deletion(action, writes):
                        finished.add(action.service)
                elif isinstance(action, WriteStatus):
                    if action.service not in finished:
                        writes.statuses[action.service] = (action.status, action.replicas)
                else:
                    self._act(action, writes)
            except Unavailable:
                raise
            except SwsError as e:
                log.warning(fmt("action.failed", action=type(action).__name__, error=e.message))
                if isinstance(action, PublishRoutes):
                    published = False

    def _act(self, action: Any, writes: observed.Writes) -> None:
        if isinstance(action, CreateReplica):
            with self._mutex:
                if action.name in self._creating:
                    return
                self._creating.add(action.name)
            self._workers.submit(self._create_worker, action)
        elif isinstance(action, StartReplica):
            with self._mutex:
                if action.name in self._creating:
                    return
            self._start(action.service, action.container_id, action.name, writes.events)
        elif isinstance(action, PublishRoutes):
            self._publish(action)
        elif isinstance(action, Drain):
            with self._mutex:
                self._draining.setdefault(action.container_id, time.time())
                if self._latest is not None:
                    self._drain_versions.setdefault(action.container_id, self._latest.version)
        elif isinstance(action, StopReplica):
            if self._proxies_behind(action.container_id):
                return
            with self._mutex:
                self._stopping.add(action.container_id)
            self._workers.submit(self._stop_worker, action)
        elif isinstance(action, RemoveReplica):
            self.runtime.remove(action.container_id, force=True)
            self._forget(action.container_id)
            log.info(fmt("replica.removed", service=action.service, name=action.name))
            writes.events.append(
                observed.Event(action.service, "Stopped", f"removed {action.name}")
            )
        elif isinstance(action, RecordFailure):
            self._record_failure(action, writes)
        elif isinstance(action, ClearFailure):
            with self._mutex:
                self._failures.pop((action.service, action.template_hash), None)
        elif isinstance(action, Undrain):
            with self._mutex:
                self._draining.pop(action.container_id, None)
                self._drain_versions.pop(action.container_id, None)
        elif isinstance(action, RecordEvent):
            key = (action.service, action.reason, action.message)
            if action.once:
                # The plan asks again each pass until the change is done; say it once.
                if key in self._announced:
                    return
                self._announced.add(key)
            writes.events.append(
                observed.Event(action.service, action.reason, action.message, action.type.value)
            )

    def _create_worker(self, action: CreateReplica) -> None:
        events: list[observed.Event] = []
        try:
            self._create(action, events)
        except SwsError as e:
            log.warning(fmt("replica.create_failed", name=action.name, error=e.message))
        finally:
            with self._mutex:
                self._creating.discard(action.name)
                self._pending_events.extend(events)
            self._wake.set()

    def _create(self, action: CreateReplica, events: list[observed.Event]) -> None:
        """Create and start one replica, pulling its image first if it is not here."""
        spec = action.spec
        template = spec.template_hash()
        if action.replace is not None:
            self.runtime.remove(action.replace, force=True)
            self._forget(action.replace)
        if not self._ensure_image(action.service, template, spec.image, events):
            return
        volume = spec.volume_name
        if volume is not None:
            try:
                self.runtime.ensure_volume(volume, action.service)
            except Unavailable:
                raise
            except SwsError as e:
                self._fail_create(action.service, template, action.replica, e, events)
                return
        request = ContainerRequest(
            name=action.name,
            image=spec.image,
            env={e.name: e.value for e in spec.env},
            labels=self.runtime.labels(
                **{
                    LABEL_SERVICE: action.service,
                    LABEL_REPLICA: str(action.replica),
                    LABEL_GENERATION: str(action.generation),
                    LABEL_TEMPLATE: template,
                    LABEL_PORT: str(spec.port),
                }
            ),
            volume=volume,
            mount=spec.volume_mount,
        )
        try:
            container_id = self.runtime.create(request)
        except Conflict:
            # Made by an earlier pass that did not live to see it; the next pass will.
            log.info(fmt("replica.exists", service=action.service, name=action.name))
            return
        except Unavailable:
            raise
        except SwsError as e:
            self._fail_create(action.service, template, action.replica, e, events)
            return
        log.info(
            fmt(
                "replica.created",
                service=action.service,
                replica=action.replica,
                name=action.name,
                generation=action.generation,
                image=spec.image,
            )
        )
        events.append(
            observed.Event(
                action.service,
                "Created",
                f"replica {action.replica} created as {action.name} (generation "
                f"{action.generation}, image {spec.image})",
            )
        )
        self._start(action.service, container_id, action.name, events, template, action.replica)

    def _ensure_image(
        self, service: str, template: str, image: str, events: list[observed.Event]
    ) -> bool:
        """Use a local image, else pull it; a failed pull is the template's failure."""
        if self.runtime.has_image(image):
            return True
        log.info(fmt("image.pull", service=service, image=image))
        try:
            self.runtime.pull(image)
        except NotFound:
            message = f"image not found: {image}"
            log.warning(fmt("image.not_found", service=service, image=image))
            self._remember_failure(service, template, "", message)
            events.append(observed.Event(service, "ImageNotFound", message, "Warning"))
            return False
        except Unavailable:
            raise
        except SwsError as e:
            message = f"image pull failed: {image}: {e.message}"
            log.warning(fmt("image.pull_failed", service=service, image=image, error=e.message))
            self._remember_failure(service, template, "", message)
            events.append(observed.Event(service, "Failed", message, "Warning"))
            return False
        log.info(fmt("image.pulled", image=image))
        events.append(observed.Event(service, "Pulled", f"pulled {image}"))
        return True

    def _start(
        self,
        service: str,
        container_id: str,
        name: str,
        events: list[observed.Event],
        template: str = "",
        replica: int = -1,
    ) -> None:
        try:
            self.runtime.start(container_id)
        except Unavailable:
            raise
        except SwsError as e:
            with contextlib.suppress(SwsError):
                self.runtime.remove(container_id, force=True)
            if template:
                self._fail_create(service, template, replica, e, events)
            else:
                log.warning(
                    fmt("replica.start_failed", service=service, name=name, error=e.message)
                )
            return
        events.append(observed.Event(service, "Started", f"started {name}"))

    def _fail_create(
        self,
        service: str,
        template: str,
        replica: int,
        error: SwsError,
        events: list[observed.Event],
    ) -> None:
        message = f"replica {replica} could not start: {error.message}"
        self._remember_failure(service, template, "", message)
        log.warning(fmt("replica.failed", service=service, replica=replica, error=error.message))
        events.append(observed.Event(service, "Failed", message, "Warning"))

    def _platform_routes(self) -> tuple[Route, ...]:
        """The API domain's route to the apiserver's addresses, looked up afresh each pass."""
        address = self.config.api_backend_address
        if address is None or self.config.api_domain is None:
            return ()
        host, port = address
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as e:
            # Keep the last addresses: a recreated apiserver is briefly unknown to the DNS.
            if self._api_error != str(e):
                log.warning(fmt("api.unresolved", backend=self.config.api_backend, error=str(e)))
                self._api_error = str(e)
            return (api_route(self.config.api_domain, self._api_backends),)
        self._api_error = None
        v4 = sorted({f"{i[4][0]}:{port}" for i in infos if i[0] == socket.AF_INET})
        v6 = sorted(
            {f"[{str(i[4][0]).split('%')[0]}]:{port}" for i in infos if i[0] == socket.AF_INET6}
        )
        backends = tuple(v4 or v6)
        if backends != self._api_backends:
            log.info(
                fmt("api.resolved", domain=self.config.api_domain, backends=",".join(backends))
            )
            self._api_backends = backends
        return (api_route(self.config.api_domain, backends),)

    def _refuse(
        self,
        refused: list[tuple[DesiredService, str]],
        recorded: dict[str, ServiceStatus],
        writes: observed.Writes,
    ) -> None:
        """Report services that ask for a reserved domain as failing; they get no route."""
        for service, message in refused:
            status = ServiceStatus("failing", message, service.generation, 0)
            if recorded.get(service.name) != status:
                writes.statuses[service.name] = (status, ())
            key = (service.name, "Failed", message)
            if key not in self._announced:
                self._announced.add(key)
                log.warning(fmt("service.refused", service=service.name, reason=message))
                writes.events.append(observed.Event(service.name, "Failed", message, "Warning"))

    def _publish_platform(self) -> None:
        """Publish a table when only the platform's routes changed (e.g. a new apiserver IP)."""
        latest = self._latest
        if latest is None:
            return
        by_name = sorted(self._platform, key=lambda r: r.name)
        if list(platform_part(latest)) == by_name:
            return
        tenants = tenant_part(latest)
        self._publish(PublishRoutes(tenants.services if tenants is not None else ()))

    def _publish(self, action: PublishRoutes) -> None:
        try:
            wanted = RouteTable(0, combine(action.routes, self._platform))
        except RouteTableError as e:
            log.error(fmt("routes.invalid", error=e.message))
            raise
        table, changed = routes.publish_route_table(self._conn(), wanted)
        if not changed:
            return
        log.info(
            fmt(
                "routes.published",
                version=table.version,
                services=len(table.services),
                backends=len(table.backends()),
            )
        )
        self._latest = table
        if self._on_routes is not None:
            self._on_routes(table)

    def _proxies_behind(self, container_id: str) -> bool:
        """A proxy that may get traffic still runs a table routing to this container.

        The grace period starts when the table is stored; the rolling swap can take longer to
        reach the last proxy. Bounded, so a proxy stuck behind cannot keep it forever.
        """
        if self._swap is None:
            return False
        with self._mutex:
            needed = self._drain_versions.get(container_id)
            since = self._draining.get(container_id)
        if needed is None or since is None or self._swap.caught_up >= needed:
            return False
        return time.time() - since < self.config.grace_period + self._swap.max_lag

    def _stop_worker(self, action: StopReplica) -> None:
        try:
            self.runtime.stop(action.container_id, self.config.stop_timeout)
            self.runtime.remove(action.container_id, force=True)
            log.info(fmt("replica.stopped", service=action.service, name=action.name))
            with self._mutex:
                self._pending_events.append(
                    observed.Event(action.service, "Stopped", f"stopped {action.name}")
                )
        except SwsError as e:
            log.warning(fmt("replica.stop_failed", name=action.name, error=e.message))
        finally:
            self._forget(action.container_id)
            self._wake.set()

    def _record_failure(self, action: RecordFailure, writes: observed.Writes) -> None:
        self._remember_failure(
            action.service, action.template_hash, action.container_id, action.message
        )
        if not action.event:
            return
        log.warning(fmt("replica.failed", service=action.service, reason=action.message))
        message = action.message
        try:
            tail = self.runtime.logs_tail(action.container_id)
        except SwsError:
            tail = ""
        if tail:
            message += "\nlast log lines:\n" + tail
        writes.events.append(observed.Event(action.service, "Failed", message, "Warning"))

    def _remember_failure(
        self, service: str, template: str, container_id: str, message: str
    ) -> None:
        with self._mutex:
            before = self._failures.get((service, template))
            count = before.count + 1 if before is not None else 1
            delay = min(
                self.config.backoff_initial * 2 ** min(count - 1, 20), self.config.backoff_max
            )
            self._failures[(service, template)] = _FailureRecord(
                count, Failure(message, time.time() + delay, container_id)
            )

    def _finish_deletion(self, action: FinishDeletion, writes: observed.Writes) -> bool:
        if action.volume is not None:
            try:
                removed = self.runtime.remove_volume(action.volume)
            except Conflict as e:
                log.warning(fmt("volume.busy", volume=action.volume, error=e.message))
                return False
            if removed:
                log.info(fmt("volume.removed", service=action.service, volume=action.volume))
            else:
                # Another instance's data: never this platform's to purge.
                log.warning(
                    fmt(
                        "volume.kept",
                        service=action.service,
                        volume=action.volume,
                        reason="made by another SWS instance",
                    )
                )
        writes.deletions.append((action.service, action.generation))
        return True

    def _forget(self, container_id: str) -> None:
        with self._mutex:
            self._ready.discard(container_id)
            self._draining.pop(container_id, None)
            self._drain_versions.pop(container_id, None)
            self._stopping.discard(container_id)


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _first_line(e: BaseException) -> str:
    text = getattr(e, "message", None) or str(e).strip() or type(e).__name__
    return str(text).splitlines()[0]
