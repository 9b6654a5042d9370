"""The Docker adapter's pure helpers: timestamps and image references."""

from __future__ import annotations

from agent.runtime import _split_ref, parse_time


def test_parse_time_handles_nanoseconds_and_zero() -> None:
    assert parse_time("0001-01-01T00:00:00Z") == 0.0
    assert parse_time("") == 0.0
    t = parse_time("2024-05-01T12:00:00.123456789Z")
    assert abs(t - 1714564800.123456) < 1e-5
    assert parse_time("2024-05-01T12:00:00Z") == 1714564800.0


def test_split_ref_keeps_registry_ports_out_of_tags() -> None:
    assert _split_ref("sws/testapp:v2") == ("sws/testapp", "v2")
    assert _split_ref("sws/testapp") == ("sws/testapp", "latest")
    assert _split_ref("registry:5000/app") == ("registry:5000/app", "latest")
    assert _split_ref("registry:5000/app:1.0") == ("registry:5000/app", "1.0")
    digest = "app@sha256:" + "a" * 64
    assert _split_ref(digest) == (digest, None)
