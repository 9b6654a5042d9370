"""The proxy's settings: plain values, checked once when built."""

from __future__ import annotations

from dataclasses import dataclass


def parse_hostport(value: str, what: str = "address") -> tuple[str, int]:
    """Split ``HOST:PORT`` (IPv6 hosts in brackets); raise ValueError naming the rule."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{what}: {value!r} is not HOST:PORT (port 0-65535)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", int(port)


@dataclass
class Config:
    """Everything a proxy Server needs; times are seconds, sizes bytes."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    admin_host: str = "127.0.0.1"
    admin_port: int = 8081
    routes_file: str | None = None
    workers: int = 1
    access_log: bool = True
    # Waiting on a backend: for the connection, then for each read while a response is due.
    connect_timeout: float = 5.0
    upstream_timeout: float = 60.0
    # Client side: the whole header section, then each read of a request body, then the
    # gap between requests on a keep-alive connection.
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    keepalive_timeout: float = 75.0
    # How long a connection being closed keeps discarding input so the client reads our
    # last response before it sees a reset.
    linger_timeout: float = 2.0
    max_header_bytes: int = 64 * 1024
    max_url_bytes: int = 8 * 1024
    # Upstream keep-alive pool, per backend.
    upstream_max_idle: int = 256
    upstream_idle_timeout: float = 30.0
    # A backend that refused a connection is passed over for this long while others are up.
    fail_timeout: float = 2.0
    # Request bytes held for a backend not yet connected (or a pipelined request not yet
    # started) before reading from the client pauses.
    buffer_limit: int = 256 * 1024
    drain_timeout: float = 30.0
    # A drain closes idle keep-alive connections only after this long: a client that keeps
    # sending gets `Connection: close` on its next answer instead of a socket closed under it.
    drain_idle_grace: float = 1.0
    # SIGTERM first reports not ready (GET /readyz 503) and keeps serving this long, so the
    # balancer's health checks stop sending new connections before the drain closes anything.
    shutdown_delay: float = 1.5

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.workers < 1:
            problems.append(f"workers: {self.workers} must be at least 1")
        for name in (
            "connect_timeout",
            "upstream_timeout",
            "header_timeout",
            "body_timeout",
            "keepalive_timeout",
            "linger_timeout",
            "upstream_idle_timeout",
            "drain_timeout",
        ):
            if getattr(self, name) <= 0:
                problems.append(f"{name}: {getattr(self, name)} must be greater than 0")
        for name in ("drain_idle_grace", "shutdown_delay"):
            if getattr(self, name) < 0:
                problems.append(f"{name}: {getattr(self, name)} must not be negative")
        if self.fail_timeout < 0:
            problems.append(f"fail_timeout: {self.fail_timeout} must not be negative")
        for name in ("max_header_bytes", "max_url_bytes", "buffer_limit"):
            if getattr(self, name) < 1024:
                problems.append(f"{name}: {getattr(self, name)} must be at least 1024")
        if self.upstream_max_idle < 0:
            problems.append(f"upstream_max_idle: {self.upstream_max_idle} must not be negative")
        for name in ("listen_port", "admin_port"):
            if not 0 <= getattr(self, name) <= 65535:
                problems.append(f"{name}: {getattr(self, name)} is not a port (0-65535)")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def tick(self) -> float:
        """How often deadlines are checked: a quarter of the shortest timeout, within limits."""
        shortest = min(
            self.upstream_timeout,
            self.header_timeout,
            self.body_timeout,
            self.keepalive_timeout,
            self.linger_timeout,
            self.upstream_idle_timeout,
        )
        return max(0.01, min(0.5, shortest / 4))
