"""Request counters and latency histograms, rendered as Prometheus text.

Counting is one dict lookup and list arithmetic on the hot path; rendering happens only when
scraped. With several workers each one counts its own requests and the admin process adds the
snapshots up, which is why the state can be exported to and merged from JSON-able dicts.
"""

from __future__ import annotations

from typing import Any

BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_CLASSES = ("0xx", "1xx", "2xx", "3xx", "4xx", "5xx")


class _Counts:
    """One service's counts: requests by status class, latency buckets, latency sum."""

    __slots__ = ("classes", "latency", "seconds")

    def __init__(self) -> None:
        # Indexed by status // 100 (statuses are below 1000).
        self.classes = [0] * 10
        # One count per bucket plus the overflow (+Inf) slot.
        self.latency = [0] * (len(BUCKETS) + 1)
        self.seconds = 0.0


class Metrics:
    """Counts finished requests by service and status class, and their latency."""

    __slots__ = ("services",)

    def __init__(self) -> None:
        self.services: dict[str, _Counts] = {}

    def observe(self, service: str, status: int, seconds: float) -> None:
        counts = self.services.get(service)
        if counts is None:
            counts = self.services[service] = _Counts()
        counts.classes[status // 100] += 1
        # bisect_left, written out: most requests end within the first few buckets, and
        # compiled (metrics.pxd) this is a few compares where a call costs far more.
        buckets = BUCKETS
        i = 0
        n = len(buckets)
        while i < n and buckets[i] < seconds:
            i += 1
        counts.latency[i] += 1
        counts.seconds += seconds

    def snapshot(self) -> dict[str, Any]:
        """Return the counts as JSON-able data (for adding up across workers)."""
        services = self.services
        return {
            "requests": [
                [s, c, n]
                for s, counts in services.items()
                for c, n in enumerate(counts.classes)
                if n
            ],
            "latency": {s: list(counts.latency) for s, counts in services.items()},
            "latency_sum": {s: counts.seconds for s, counts in services.items()},
        }


def merge(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """Add several snapshots up into one."""
    requests: dict[tuple[str, int], int] = {}
    latency: dict[str, list[int]] = {}
    latency_sum: dict[str, float] = {}
    for snap in snapshots:
        for service, cls, n in snap["requests"]:
            key = (service, cls)
            requests[key] = requests.get(key, 0) + n
        for service, counts in snap["latency"].items():
            mine = latency.setdefault(service, [0] * (len(BUCKETS) + 1))
            for i, n in enumerate(counts):
                mine[i] += n
            latency_sum[service] = latency_sum.get(service, 0.0) + snap["latency_sum"][service]
    return {
        "requests": [[s, c, n] for (s, c), n in requests.items()],
        "latency": latency,
        "latency_sum": latency_sum,
    }


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(
    snap: dict[str, Any],
    *,
    open_connections: int,
    route_version: int,
    draining: bool,
    workers: int,
) -> str:
    """Render a snapshot plus the gauges as Prometheus text exposition format."""
    lines = [
        "# HELP sws_proxy_requests_total Requests answered, by service and status class.",
        "# TYPE sws_proxy_requests_total counter",
    ]
    for service, cls, n in sorted(snap["requests"]):
        lines.append(
            f'sws_proxy_requests_total{{service="{_label(service)}",'
            f'status="{_CLASSES[cls] if 0 <= cls < 6 else "other"}"}} {n}'
        )
    lines += [
        "# HELP sws_proxy_request_duration_seconds Time from request head to response end.",
        "# TYPE sws_proxy_request_duration_seconds histogram",
    ]
    for service in sorted(snap["latency"]):
        counts = snap["latency"][service]
        label = _label(service)
        running = 0
        for bound, n in zip(BUCKETS, counts, strict=False):
            running += n
            lines.append(
                f'sws_proxy_request_duration_seconds_bucket{{service="{label}",le="{bound}"}} '
                f"{running}"
            )
        running += counts[-1]
        lines.append(
            f'sws_proxy_request_duration_seconds_bucket{{service="{label}",le="+Inf"}} {running}'
        )
        lines.append(f'sws_proxy_request_duration_seconds_count{{service="{label}"}} {running}')
        lines.append(
            f'sws_proxy_request_duration_seconds_sum{{service="{label}"}} '
            f"{snap['latency_sum'][service]:.6f}"
        )
    lines += [
        "# HELP sws_proxy_open_connections Client connections open now.",
        "# TYPE sws_proxy_open_connections gauge",
        f"sws_proxy_open_connections {open_connections}",
        "# HELP sws_proxy_route_version Version of the route table in force.",
        "# TYPE sws_proxy_route_version gauge",
        f"sws_proxy_route_version {route_version}",
        "# HELP sws_proxy_draining 1 while the proxy is draining.",
        "# TYPE sws_proxy_draining gauge",
        f"sws_proxy_draining {int(draining)}",
        "# HELP sws_proxy_workers Worker processes serving the listen address.",
        "# TYPE sws_proxy_workers gauge",
        f"sws_proxy_workers {workers}",
    ]
    return "\n".join(lines) + "\n"
