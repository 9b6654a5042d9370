"""The rolling proxy swap, carried out: observe the proxies, ask `sws.swap`, act, record.

`sws.swap` holds the rules and their theory of operation; this module does the I/O. A
`Swapper` runs rounds: observe every proxy (its /healthz and the balancer's `GET /backends`),
fence proxies that went silent, then swap the proxy `next_swap` names, observe again and
ask again, until nothing is left; then record each proxy's version and state in confdb's
`proxies` table (serving, draining or failed, with a message), writing only what changed.

One swap runs at a time across every process of an instance: a round holds a session-level
advisory lock in confdb, which the agent's loop and the `sws-agent proxy drain|release`
commands all take, and which a process that dies releases with its connection. A proxy held
for maintenance (`proxies.held`) is left alone by the rounds until it is released.

`SwapLoop` is the agent's side: a thread of its own runs a round whenever a new table is
offered and every `proxy_check_interval` otherwise (a proxy that restarted with no table,
or was left drained by an agent that died, is caught up within that), while this agent leads.
It never blocks the reconcile loop, and a table published mid-round goes out next round.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

import psycopg

from agent.config import Config
from agent.logfmt import fmt
from agent.proxies import BalancerAdmin, ProxyAdmin, Refused
from confdb import routes
from confdb.db import connect
from sws.errors import Conflict, InvalidInput, SwsError, Unavailable
from sws.route_table import RouteTable
from sws.swap import (
    Mode,
    ProxyView,
    Refusal,
    Step,
    Swap,
    backoff,
    fence,
    idle,
    next_swap,
    oldest_in_service,
    serving,
    state_of,
)

log = logging.getLogger("sws.agent")

# How often a wait inside a swap looks again; the admin calls are cheap.
_POLL = 0.05
# How long a command waits for a running swap to finish before giving up.
_LOCK_WAIT = 60.0


class Interrupted(SwsError):
    """The agent is stopping; the swap is left where it is for the next round to finish."""


class Swapper:
    """Rolls route tables onto the configured proxies; used by one thread at a time."""

    def __init__(
        self,
        config: Config,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.order = tuple(e.name for e in config.proxies)
        self.proxies = {e.name: ProxyAdmin(e, config.admin_timeout) for e in config.proxies}
        self.balancer = (
            BalancerAdmin(config.loadbalancer_admin, config.admin_timeout)
            if config.loadbalancer_admin
            else None
        )
        self._stop = stop or threading.Event()
        self._clock = clock
        self._db: psycopg.Connection[Any] | None = None
        self._refusals: dict[str, Refusal] = {}
        # (version, note) per proxy: why its last swap was done in place, shown while it lasts.
        self._notes: dict[str, tuple[int, str]] = {}
        self._recorded: dict[str, tuple[int, str, str]] = {}
        self._balancer_error: str | None = None

    def close(self) -> None:
        for admin in self.proxies.values():
            admin.close()
        if self.balancer is not None:
            self.balancer.close()
        self.close_db()

    def close_db(self) -> None:
        if self._db is not None:
            with contextlib.suppress(Exception):
                self._db.close()
            self._db = None

    def _conn(self) -> psycopg.Connection[Any]:
        if self._db is None or self._db.closed:
            self._db = connect(self.config.database_url, autocommit=True)
        return self._db

    # -- observing ----------------------------------------------------------------------------

    def observe(self, held: Collection[str] = ()) -> list[ProxyView]:
        """Every proxy as it is now: its own health and the balancer's view of it."""
        balancer: dict[str, Any] | None = None
        if self.balancer is not None:
            try:
                balancer = dict(self.balancer.backends())
                if self._balancer_error is not None:
                    log.info(fmt("balancer.reachable"))
                    self._balancer_error = None
            except SwsError as e:
                if self._balancer_error != e.message:
                    log.warning(fmt("balancer.unreachable", error=e.message))
                    self._balancer_error = e.message
        return [self._view(name, held, balancer) for name in self.order]

    def _view(self, name: str, held: Collection[str], balancer: dict[str, Any] | None) -> ProxyView:
        lb = balancer.get(name) if balancer is not None else None
        try:
            version, draining, connections = self.proxies[name].health()
        except SwsError as e:
            return ProxyView(name, None, error=_reason(e), balancer=lb, held=name in held)
        return ProxyView(name, version, draining, connections, "", lb, name in held)

    def _view_one(self, name: str, held: Collection[str]) -> ProxyView:
        balancer: dict[str, Any] | None = None
        if self.balancer is not None:
            balancer = {name: self.balancer.backend(name)}
        return self._view(name, held, balancer)

    # -- rounds -------------------------------------------------------------------------------

    def round(
        self, table: RouteTable, only: Collection[str] | None = None
    ) -> list[ProxyView] | None:
        """Bring the proxies (or those in `only`) to `table`; None if another swap runs."""
        conn = self._conn()
        key = self.config.swap_lock_key
        if not routes.try_lock_swaps(conn, key):
            log.debug(fmt("swap.busy"))
            return None
        try:
            return self._round(conn, table, only)
        finally:
            with contextlib.suppress(Exception):
                routes.unlock_swaps(conn, key)

    def _round(
        self, conn: psycopg.Connection[Any], table: RouteTable, only: Collection[str] | None
    ) -> list[ProxyView]:
        held = routes.held_proxies(conn)
        done: set[str] = set()
        while True:
            views = self.observe(held)
            fenced = [n for n in fence(views) if only is None or n in only]
            for name in fenced:
                self._fence(name)
            if fenced:
                views = self.observe(held)
            swap = next_swap(views, table.version, self._clock(), self._refusals, done, only)
            if swap is None:
                break
            done.add(swap.proxy)
            view = next(v for v in views if v.name == swap.proxy)
            self._carry_out(conn, swap, view, table, held)
        self._record(conn, views, table.version)
        return views

    def _fence(self, name: str) -> None:
        assert self.balancer is not None
        try:
            self.balancer.drain(name)
        except SwsError as e:
            log.warning(fmt("proxy.fence_failed", proxy=name, error=e.message))
            return
        log.warning(
            fmt("proxy.fenced", proxy=name, reason="unreachable; out of the balancer until swapped")
        )

    def _carry_out(
        self,
        conn: psycopg.Connection[Any],
        swap: Swap,
        view: ProxyView,
        table: RouteTable,
        held: Collection[str],
    ) -> None:
        name = swap.proxy
        proxy = self.proxies[name]
        started = self._clock()
        log.info(
            fmt(
                "swap.start",
                proxy=name,
                mode=swap.mode.value,
                version=table.version,
                reason=swap.reason,
            )
        )
        if swap.mode is Mode.IN_PLACE:
            log.warning(fmt("swap.in_place", proxy=name, reason=swap.note))
        step = swap.steps[0]
        try:
            for step in swap.steps:
                if step is Step.BALANCER_DRAIN:
                    assert self.balancer is not None
                    self.balancer.drain(name)
                elif step is Step.PROXY_DRAIN:
                    proxy.drain()
                    self._write(
                        conn,
                        name,
                        view.version or 0,
                        "draining",
                        f"swapping to version {table.version}",
                    )
                elif step is Step.WAIT_IDLE:
                    self._wait_idle(name, held)
                elif step is Step.PUSH:
                    proxy.put_routes(table)
                elif step is Step.VERIFY:
                    version, _, _ = proxy.health()
                    if version != table.version:
                        raise Refused(
                            f"{name}: runs version {version} after PUT /routes of {table.version}",
                            200,
                        )
                elif step is Step.RESUME:
                    proxy.resume()
                elif step is Step.BALANCER_ENABLE:
                    assert self.balancer is not None
                    self.balancer.enable(name)
                elif step is Step.WAIT_UP:
                    self._wait_up(name)
        except Refused as e:
            if e.message.startswith("balancer"):
                # E.g. 409: the balancer saw no other proxy up after all. Nothing is wrong
                # with this proxy; the next round decides afresh.
                log.warning(fmt("swap.aborted", proxy=name, step=step.value, error=e.message))
                return
            self._refused(name, table.version, step, e)
            return
        except Interrupted:
            log.info(fmt("swap.interrupted", proxy=name, step=step.value))
            raise
        except Unavailable as e:
            event = "balancer.unreachable" if e.message.startswith("balancer") else "swap.failed"
            log.warning(fmt(event, proxy=name, step=step.value, error=e.message))
            return
        self._refusals.pop(name, None)
        if swap.mode is Mode.IN_PLACE:
            self._notes[name] = (table.version, swap.note)
        else:
            self._notes.pop(name, None)
        log.info(
            fmt(
                "swap.done",
                proxy=name,
                version=table.version,
                mode=swap.mode.value,
                ms=round((self._clock() - started) * 1000),
            )
        )

    def _refused(self, name: str, version: int, step: Step, error: Refused) -> None:
        before = self._refusals.get(name)
        count = before.count + 1 if before is not None else 1
        delay = backoff(count, self.config.backoff_initial, self.config.backoff_max)
        message = f"refused version {version}: {error.message.removeprefix(name + ': ')}"
        self._refusals[name] = Refusal(version, message, self._clock() + delay, count)
        log.warning(
            fmt(
                "swap.refused",
                proxy=name,
                version=version,
                step=step.value,
                error=error.message,
                retry_in=f"{delay:g}s",
            )
        )

    def _wait_idle(self, name: str, held: Collection[str]) -> None:
        """Wait until the drained proxy has no connection left, or the drain timeout passes."""
        started = self._clock()
        deadline = started + self.config.swap_drain_timeout
        while True:
            view = self._view_one(name, held)
            if not view.reachable:
                raise Unavailable(f"{name}: stopped answering while draining: {view.error}")
            if idle(view):
                return
            if self._clock() >= deadline:
                lb = view.balancer.connections if view.balancer is not None else 0
                log.warning(
                    fmt(
                        "swap.drain_timeout",
                        proxy=name,
                        connections=view.connections,
                        balancer_connections=lb,
                        waited=f"{self._clock() - started:.1f}s",
                        action="swapping anyway; requests in flight keep their backend",
                    )
                )
                return
            self._pause()

    def _wait_up(self, name: str) -> None:
        assert self.balancer is not None
        deadline = self._clock() + self.config.swap_up_timeout
        while True:
            view = self.balancer.backend(name)
            if view.enabled and view.up:
                return
            if self._clock() >= deadline:
                log.warning(
                    fmt(
                        "swap.not_up",
                        proxy=name,
                        health=view.health,
                        error=view.error,
                        waited=f"{self.config.swap_up_timeout:g}s",
                    )
                )
                return
            self._pause()

    def _pause(self) -> None:
        if self._stop.wait(_POLL):
            raise Interrupted("stopping")

    # -- recording ----------------------------------------------------------------------------

    def _record(self, conn: psycopg.Connection[Any], views: list[ProxyView], target: int) -> None:
        for view in views:
            state, message = state_of(view, target, self._refusals.get(view.name))
            note = self._notes.get(view.name)
            if note is not None and state == "serving" and view.version == note[0] and not message:
                message = note[1]
            self._write(conn, view.name, view.version or 0, state, message)

    def _write(
        self, conn: psycopg.Connection[Any], name: str, version: int, state: str, message: str
    ) -> None:
        row = (version, state, message)
        if self._recorded.get(name) == row:
            return
        routes.record_proxy(conn, name, version, state, message)
        self._recorded[name] = row
        level = logging.WARNING if state == "failed" else logging.INFO
        log.log(
            level, fmt("proxy.state", proxy=name, state=state, version=version, message=message)
        )

    # -- maintenance commands -----------------------------------------------------------------

    def _check_name(self, name: str) -> None:
        if name not in self.proxies:
            known = ", ".join(self.order) or "none"
            raise InvalidInput(f"proxy {name!r} is not configured (SWS_PROXIES has: {known})")

    @contextlib.contextmanager
    def _locked(self, wait: float) -> Any:
        conn = self._conn()
        key = self.config.swap_lock_key
        deadline = self._clock() + wait
        while not routes.try_lock_swaps(conn, key):
            if self._clock() >= deadline:
                raise Unavailable(f"another proxy swap is still running after {wait:g}s")
            self._pause()
        try:
            yield conn
        finally:
            with contextlib.suppress(Exception):
                routes.unlock_swaps(conn, key)

    def hold(self, name: str, timeout: float, force: bool = False) -> ProxyView:
        """Take `name` out for maintenance: drain it and hold it until `release`.

        Refused while no other proxy is serving, unless `force`. Returns the proxy as it is
        after the wait (its connections may not all be gone if `timeout` passed first).
        """
        self._check_name(name)
        if self.balancer is None:
            raise InvalidInput("SWS_LOADBALANCER_ADMIN: is required to drain a proxy")
        with self._locked(_LOCK_WAIT) as conn:
            held = set(routes.held_proxies(conn))
            views = self.observe(held)
            others = [v for v in views if v.name != name]
            if not force and not any(serving(v) for v in others):
                who = ", ".join(
                    f"{v.name} ({state_of(v, v.version or 0, None)[1] or 'not up'})" for v in others
                )
                raise Conflict(
                    f"cannot drain {name}: no other proxy is serving ({who or 'none configured'})"
                )
            view = next(v for v in views if v.name == name)
            # The balancer first: if it refuses, nothing is held. If this process dies
            # before the hold is recorded, the next round simply swaps the proxy back in.
            self.balancer.drain(name, force=force)
            routes.set_proxy_held(conn, name, True, "draining", "held for maintenance")
            self._recorded.pop(name, None)
            held.add(name)
            try:
                self.proxies[name].drain()
            except Unavailable as e:
                log.info(fmt("proxy.drain_skipped", proxy=name, error=e.message))
            log.info(fmt("proxy.held", proxy=name, version=view.version or 0))
            deadline = self._clock() + timeout
            while True:
                view = self._view_one(name, held)
                silent = not view.reachable and (view.balancer is None or idle(view))
                if silent or (view.reachable and idle(view)) or self._clock() >= deadline:
                    return view
                self._pause()

    def release(self, name: str, timeout: float) -> ProxyView:
        """End the maintenance hold and swap `name` back in through the normal path."""
        self._check_name(name)
        with self._locked(_LOCK_WAIT) as conn:
            routes.set_proxy_held(conn, name, False, "draining", "released; swapping in")
            self._recorded.pop(name, None)
            log.info(fmt("proxy.released", proxy=name))
            table = routes.latest_route_table(conn) or RouteTable.empty()
            deadline = self._clock() + timeout
            # A container just recreated takes a moment to answer.
            while not self._view_one(name, ()).reachable and self._clock() < deadline:
                self._pause()
            views = self._round(conn, table, only={name})
            view = next(v for v in views if v.name == name)
            if self.balancer is not None and view.reachable:
                # Wait for the balancer to report it up, as a swap does, within the timeout.
                while not serving(view) and self._clock() < deadline:
                    self._pause()
                    view = self._view_one(name, ())
            return view

    def state(self, view: ProxyView) -> tuple[str, str]:
        """What the round recorded for the proxy, or would."""
        recorded = self._recorded.get(view.name)
        if recorded is not None:
            return recorded[1], recorded[2]
        return state_of(view, view.version or 0, self._refusals.get(view.name))


def _reason(e: SwsError) -> str:
    # "proxy-1: GET /healthz: connection failed" -> "GET /healthz: connection failed"
    return e.message.split(": ", 1)[1] if ": " in e.message else e.message


class SwapLoop:
    """The agent's swap thread: a round per new table, and every check interval."""

    def __init__(self, config: Config, leading: threading.Event) -> None:
        self.config = config
        self._leading = leading
        self._stopped = threading.Event()
        self._wake = threading.Event()
        self._table: RouteTable | None = None
        self._swapper = Swapper(config, stop=self._stopped)
        self._thread = threading.Thread(target=self._run, name="sws-agent-swap", daemon=True)
        self.rounds = 0
        # The oldest table version a proxy that may get traffic ran after the last round.
        self.caught_up = 0
        # How far behind the newest table a round may leave the proxies at worst.
        self.max_lag = (
            len(config.proxies) * (config.swap_drain_timeout + config.swap_up_timeout)
            + config.proxy_check_interval
            + 5.0
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopped.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._swapper.close()

    def offer(self, table: RouteTable) -> None:
        """The newest table; a round starts at once if it is newer than the last one."""
        current = self._table
        if current is None or table.version > current.version:
            self._table = table
            self._wake.set()

    def _run(self) -> None:
        while not self._stopped.is_set():
            table = self._table
            if table is not None and self._leading.is_set():
                try:
                    views = self._swapper.round(table)
                    if views is not None:
                        self.caught_up = oldest_in_service(views, table.version)
                    self.rounds += 1
                except Interrupted:
                    break
                except (Unavailable, psycopg.Error) as e:
                    log.warning(fmt("swap.round_failed", error=_first_line(e)))
                    self._swapper.close_db()
                except Exception:
                    # A bug must not end the swap thread; the next round starts afresh.
                    log.exception(fmt("swap.round_crashed"))
                    self._swapper.close_db()
            self._wake.wait(self.config.proxy_check_interval)
            self._wake.clear()


def _first_line(e: BaseException) -> str:
    text = getattr(e, "message", None) or str(e).strip() or type(e).__name__
    return str(text).splitlines()[0]
