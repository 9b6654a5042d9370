"""Least-in-flight choice with round-robin ties, failure windows and retries."""

from __future__ import annotations

from proxy.protocol import pick
from proxy.upstream import Backend


def backends(*inflight: int) -> tuple[Backend, ...]:
    made = []
    for i, n in enumerate(inflight):
        b = Backend(f"10.0.0.{i + 1}:80")
        b.inflight = n
        made.append(b)
    return tuple(made)


def test_fewest_in_flight_wins() -> None:
    bs = backends(3, 1, 2)
    assert pick(bs, None, 0, 0.0) is bs[1]


def test_ties_go_round_robin_by_turn() -> None:
    bs = backends(1, 0, 0, 5)
    assert [pick(bs, None, t, 0.0) for t in range(4)] == [bs[1], bs[2], bs[1], bs[2]]


def test_tried_backends_are_skipped() -> None:
    bs = backends(0, 0)
    assert pick(bs, {bs[0]}, 0, 0.0) is bs[1]
    assert pick(bs, {bs[0], bs[1]}, 0, 0.0) is None
    one = backends(0)
    assert pick(one, None, 0, 0.0) is one[0]
    assert pick(one, {one[0]}, 0, 0.0) is None


def test_failed_backends_are_used_only_when_nothing_else_is_left() -> None:
    bs = backends(5, 0)
    bs[1].failed_until = 10.0
    assert pick(bs, None, 0, 5.0) is bs[0]
    assert pick(bs, None, 0, 11.0) is bs[1]
    bs[0].failed_until = 10.0
    assert pick(bs, None, 0, 5.0) is bs[1]


def test_backend_parses_its_address() -> None:
    b = Backend("[::1]:8080")
    assert (b.host, b.port) == ("::1", 8080)
