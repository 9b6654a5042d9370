"""The balancer's counters and gauges in the Prometheus text format (version 0.0.4)."""

from __future__ import annotations

from collections.abc import Iterable

from loadbalancer.pool import AdminState, Backend, Health, Pool

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(
    lines: list[str],
    name: str,
    kind: str,
    help_text: str,
    samples: Iterable[tuple[Backend | None, float]],
) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")
    for backend, value in samples:
        labels = f'{{backend="{_label(backend.name)}"}}' if backend is not None else ""
        lines.append(f"{name}{labels} {value:g}")


def render(pool: Pool, open_clients: int, accepted: int, half_close_expired: int) -> str:
    backends = list(pool)
    lines: list[str] = []
    _family(
        lines,
        "sws_lb_client_connections_total",
        "counter",
        "Client connections accepted.",
        [(None, accepted)],
    )
    _family(
        lines,
        "sws_lb_client_connections_open",
        "gauge",
        "Client connections open now.",
        [(None, open_clients)],
    )
    _family(
        lines,
        "sws_lb_backend_connections_total",
        "counter",
        "Upstream connections opened, by backend.",
        [(b, b.total_connections) for b in backends],
    )
    _family(
        lines,
        "sws_lb_backend_connections_open",
        "gauge",
        "Upstream connections open or being opened, by backend.",
        [(b, b.open_connections) for b in backends],
    )
    _family(
        lines,
        "sws_lb_backend_up",
        "gauge",
        "1 if the backend's health is up or not yet known, 0 if down.",
        [(b, 0 if b.health is Health.DOWN else 1) for b in backends],
    )
    _family(
        lines,
        "sws_lb_backend_enabled",
        "gauge",
        "1 if the backend takes new connections, 0 if draining.",
        [(b, 1 if b.state is AdminState.ENABLED else 0) for b in backends],
    )
    _family(
        lines,
        "sws_lb_backend_health_check_failures_total",
        "counter",
        "Active health checks that failed, by backend.",
        [(b, b.check_failures) for b in backends],
    )
    _family(
        lines,
        "sws_lb_backend_connect_failures_total",
        "counter",
        "Upstream connects refused or timed out, by backend.",
        [(b, b.connect_failures) for b in backends],
    )
    _family(
        lines,
        "sws_lb_retries_total",
        "counter",
        "Client connections sent to another backend after a failed connect.",
        [(None, pool.retries)],
    )
    _family(
        lines,
        "sws_lb_no_backend_total",
        "counter",
        "Client connections closed because no backend could take them.",
        [(None, pool.no_backend)],
    )
    _family(
        lines,
        "sws_lb_half_close_timeouts_total",
        "counter",
        "Half-closed connections ended for staying silent.",
        [(None, half_close_expired)],
    )
    return "\n".join(lines) + "\n"
