"""Config checks, metrics rendering and merging, and the access-log line format."""

from __future__ import annotations

import io
import json

import pytest

from proxy.access_log import AccessLog
from proxy.config import Config, parse_hostport
from proxy.metrics import Metrics, merge, render


def test_parse_hostport() -> None:
    assert parse_hostport("127.0.0.1:80") == ("127.0.0.1", 80)
    assert parse_hostport("[::1]:0") == ("::1", 0)
    assert parse_hostport(":8080") == ("0.0.0.0", 8080)
    with pytest.raises(ValueError, match=r"--listen: 'x' is not HOST:PORT"):
        parse_hostport("x", "--listen")
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        parse_hostport("a:70000")


def test_config_names_every_broken_rule() -> None:
    with pytest.raises(ValueError) as info:
        Config(workers=0, header_timeout=0, max_header_bytes=10, listen_port=70000)
    message = str(info.value)
    assert "workers: 0 must be at least 1" in message
    assert "header_timeout: 0 must be greater than 0" in message
    assert "max_header_bytes: 10 must be at least 1024" in message
    assert "listen_port: 70000 is not a port" in message


def test_tick_follows_the_shortest_timeout() -> None:
    assert Config().tick == 0.5
    assert Config(header_timeout=0.2).tick == pytest.approx(0.05)
    assert Config(header_timeout=0.001).tick == 0.01


def test_metrics_render() -> None:
    m = Metrics()
    m.observe("web", 200, 0.0004)
    m.observe("web", 204, 0.003)
    m.observe("web", 502, 20.0)
    m.observe("", 404, 0.0)
    text = render(m.snapshot(), open_connections=4, route_version=7, draining=True, workers=1)
    assert 'sws_proxy_requests_total{service="web",status="2xx"} 2' in text
    assert 'sws_proxy_requests_total{service="web",status="5xx"} 1' in text
    assert 'sws_proxy_requests_total{service="",status="4xx"} 1' in text
    assert 'sws_proxy_request_duration_seconds_bucket{service="web",le="0.0005"} 1' in text
    assert 'sws_proxy_request_duration_seconds_bucket{service="web",le="0.005"} 2' in text
    assert 'sws_proxy_request_duration_seconds_bucket{service="web",le="10.0"} 2' in text
    assert 'sws_proxy_request_duration_seconds_bucket{service="web",le="+Inf"} 3' in text
    assert 'sws_proxy_request_duration_seconds_count{service="web"} 3' in text
    assert "sws_proxy_open_connections 4" in text
    assert "sws_proxy_route_version 7" in text
    assert "sws_proxy_draining 1" in text


def test_metrics_merge_adds_up() -> None:
    a, b = Metrics(), Metrics()
    a.observe("web", 200, 0.01)
    b.observe("web", 200, 0.02)
    b.observe("api", 500, 0.02)
    total = merge([a.snapshot(), b.snapshot()])
    assert sorted(total["requests"]) == [["api", 5, 1], ["web", 2, 2]]
    assert sum(total["latency"]["web"]) == 2
    assert total["latency_sum"]["web"] == pytest.approx(0.03)


def test_access_log_line() -> None:
    stream = io.BytesIO()
    log = AccessLog(stream)
    log.record(
        host="web.test",
        method="GET",
        path="/a",
        status=200,
        nbytes=5,
        duration=0.0012345,
        service="web",
        backend="10.0.0.1:80",
        request_id="r-1",
    )
    assert stream.getvalue() == b""
    log.flush()
    line = json.loads(stream.getvalue())
    assert line["time"].endswith("Z") and len(line["time"]) == 24
    assert {k: v for k, v in line.items() if k != "time"} == {
        "event": "request",
        "host": "web.test",
        "method": "GET",
        "path": "/a",
        "status": 200,
        "bytes": 5,
        "duration": 0.001234,
        "service": "web",
        "backend": "10.0.0.1:80",
        "request_id": "r-1",
    }


def test_latency_lands_in_the_first_bucket_whose_bound_it_does_not_exceed() -> None:
    # Prometheus buckets are upper-inclusive (le): the same slot bisect_left gives.
    from bisect import bisect_left

    from proxy.metrics import BUCKETS

    values = [0.0, 1e-9, *BUCKETS, *(b * 1.0001 for b in BUCKETS), 1e9]
    metrics = Metrics()
    for seconds in values:
        metrics.observe("web", 200, seconds)
    expected = [0] * (len(BUCKETS) + 1)
    for seconds in values:
        expected[bisect_left(BUCKETS, seconds)] += 1
    assert metrics.snapshot()["latency"]["web"] == expected
