"""The backend pool: balancing and health state of every backend.

Theory of operation
-------------------
Each backend carries two independent pieces of state.

*Admin state*, set by an operator through the admin API:

    enabled  --drain-->  draining  --enable-->  enabled

A draining backend gets no new connections; connections it already has carry on untouched
until their ends close them. ``open_connections`` tells a caller when draining is done.

*Health*, set by checks:

    unknown --1 success--> up      unknown --1 failure--> down
    up --`fall` consecutive check failures--> down
    up --one refused or timed-out connect (passive)--> down
    down --`rise` consecutive check successes--> up

A backend starts *unknown* and is checked at once; unknown counts as healthy for balancing,
so the balancer serves from its first second, and the first check result, whichever it is,
settles the health without waiting for rise or fall. A wrong optimistic guess costs nothing
visible: a refused connect is retried on another backend before the client notices.

Active checks run every ``check_interval`` seconds (a TCP connect, or an HTTP GET whose
answer must be 200). Passive health is the fast path: when opening an upstream connection
fails, the backend goes down at once and its run of check successes restarts from zero, so
the next connections avoid it and only ``rise`` good checks bring it back. With the defaults
(interval 0.5 s, rise 2, fall 2) a killed backend is avoided from the first refused connect,
and one that silently stops answering checks is avoided within about 1 s.

A backend receives new connections only when it is enabled and not down; among those,
``sws.balance.choose`` picks the one with the fewest open connections.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Collection, Iterator

from loadbalancer import logfmt
from loadbalancer.config import BackendConfig
from sws.balance import BackendView, choose

log = logging.getLogger(logfmt.LOGGER_NAME)


class AdminState(enum.Enum):
    ENABLED = "enabled"
    DRAINING = "draining"


class Health(enum.Enum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


class Backend:
    """One backend's configuration, counters and state."""

    __slots__ = (
        "address",
        "check_failures",
        "config",
        "connect_failures",
        "consecutive_failures",
        "consecutive_successes",
        "health",
        "last_check_error",
        "name",
        "open_connections",
        "state",
        "total_connections",
    )

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.name = config.name
        self.address = config.address
        self.state = AdminState.ENABLED
        self.health = Health.UNKNOWN
        self.open_connections = 0
        self.total_connections = 0
        self.connect_failures = 0
        self.check_failures = 0
        self.consecutive_successes = 0
        self.consecutive_failures = 0
        self.last_check_error: str | None = None

    @property
    def available(self) -> bool:
        return self.state is AdminState.ENABLED and self.health is not Health.DOWN

    def to_json(self) -> dict[str, object]:
        check = self.config.http_check
        return {
            "name": self.name,
            "address": str(self.address),
            "state": self.state.value,
            "health": self.health.value,
            "health_check": str(check) if check else "tcp",
            "open_connections": self.open_connections,
            "total_connections": self.total_connections,
            "connect_failures": self.connect_failures,
            "check_failures": self.check_failures,
            "consecutive_successes": self.consecutive_successes,
            "consecutive_failures": self.consecutive_failures,
            "last_check_error": self.last_check_error,
        }


class Pool:
    """All backends, in configuration order, with the transitions between their states."""

    def __init__(self, backends: Collection[BackendConfig], rise: int, fall: int) -> None:
        self._backends = [Backend(config) for config in backends]
        self._by_name = {backend.name: backend for backend in self._backends}
        self._rise = rise
        self._fall = fall
        self._turn = 0
        self.retries = 0
        self.no_backend = 0

    def __iter__(self) -> Iterator[Backend]:
        return iter(self._backends)

    def get(self, name: str) -> Backend | None:
        return self._by_name.get(name)

    def pick(self, exclude: Collection[Backend] = ()) -> Backend | None:
        """Choose the backend for a new connection and count it as open on that backend."""
        views = [
            BackendView(
                b.name,
                b.open_connections,
                b.health is not Health.DOWN,
                b.state is AdminState.ENABLED,
            )
            for b in self._backends
            if b not in exclude
        ]
        name = choose(views, self._turn)
        self._turn += 1
        if name is None:
            return None
        backend = self._by_name[name]
        backend.open_connections += 1
        return backend

    def release(self, backend: Backend) -> None:
        backend.open_connections -= 1

    def any_available(self) -> bool:
        return any(backend.available for backend in self._backends)

    def drain(self, backend: Backend) -> None:
        if backend.state is not AdminState.DRAINING:
            backend.state = AdminState.DRAINING
            logfmt.emit(
                log,
                logging.INFO,
                "backend_drain",
                backend=backend.name,
                open_connections=backend.open_connections,
            )

    def enable(self, backend: Backend) -> None:
        if backend.state is not AdminState.ENABLED:
            backend.state = AdminState.ENABLED
            logfmt.emit(log, logging.INFO, "backend_enable", backend=backend.name)

    def record_check(self, backend: Backend, error: str | None) -> None:
        """Apply one active check result (``error`` is None on success)."""
        if error is None:
            backend.consecutive_successes += 1
            backend.consecutive_failures = 0
            backend.last_check_error = None
            if backend.health is Health.UNKNOWN or (
                backend.health is Health.DOWN and backend.consecutive_successes >= self._rise
            ):
                self._set_health(backend, Health.UP, "check_passed")
            return
        backend.check_failures += 1
        backend.consecutive_failures += 1
        backend.consecutive_successes = 0
        backend.last_check_error = error
        if backend.health is Health.UNKNOWN or (
            backend.health is Health.UP and backend.consecutive_failures >= self._fall
        ):
            self._set_health(backend, Health.DOWN, "check_failed", error=error)

    def record_connect_failure(self, backend: Backend, error: str) -> None:
        """A connection to the backend was refused or timed out: take it out at once."""
        backend.connect_failures += 1
        backend.consecutive_successes = 0
        if backend.health is not Health.DOWN:
            self._set_health(backend, Health.DOWN, "connect_failed", error=error)

    def _set_health(self, backend: Backend, health: Health, reason: str, **fields: object) -> None:
        backend.health = health
        level = logging.INFO if health is Health.UP else logging.WARNING
        logfmt.emit(
            log, level, f"backend_{health.value}", backend=backend.name, reason=reason, **fields
        )
