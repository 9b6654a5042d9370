from __future__ import annotations

from loadbalancer.config import Address, BackendConfig
from loadbalancer.pool import AdminState, Health, Pool


def make_pool(*names: str, rise: int = 2, fall: int = 2) -> Pool:
    return Pool(
        [BackendConfig(n, Address("127.0.0.1", 1000 + i)) for i, n in enumerate(names)], rise, fall
    )


def backend(pool: Pool, name: str):
    found = pool.get(name)
    assert found is not None
    return found


def test_first_check_result_settles_unknown_health() -> None:
    pool = make_pool("a", "b")
    assert backend(pool, "a").health is Health.UNKNOWN
    pool.record_check(backend(pool, "a"), None)
    pool.record_check(backend(pool, "b"), "refused")
    assert backend(pool, "a").health is Health.UP
    assert backend(pool, "b").health is Health.DOWN


def test_unknown_backends_take_connections() -> None:
    pool = make_pool("a")
    picked = pool.pick()
    assert picked is not None and picked.name == "a"
    assert picked.open_connections == 1


def test_fall_consecutive_failures_take_it_down() -> None:
    pool = make_pool("a", fall=3)
    a = backend(pool, "a")
    pool.record_check(a, None)
    pool.record_check(a, "x")
    pool.record_check(a, "x")
    assert a.health is Health.UP
    pool.record_check(a, None)  # a success breaks the run
    pool.record_check(a, "x")
    pool.record_check(a, "x")
    assert a.health is Health.UP
    pool.record_check(a, "timed out")
    assert a.health is Health.DOWN
    assert (a.consecutive_failures, a.check_failures, a.last_check_error) == (3, 5, "timed out")


def test_rise_consecutive_successes_bring_it_up() -> None:
    pool = make_pool("a", rise=3)
    a = backend(pool, "a")
    pool.record_check(a, "x")
    pool.record_check(a, None)
    pool.record_check(a, None)
    pool.record_check(a, "x")
    assert a.health is Health.DOWN
    for _ in range(2):
        pool.record_check(a, None)
    assert a.health is Health.DOWN
    pool.record_check(a, None)
    assert a.health is Health.UP
    assert a.last_check_error is None


def test_a_failed_connect_takes_it_down_at_once_and_restarts_rise() -> None:
    pool = make_pool("a", "b", rise=2)
    a = backend(pool, "a")
    pool.record_check(a, None)
    pool.record_connect_failure(a, "Connection refused")
    assert a.health is Health.DOWN
    assert a.connect_failures == 1
    pool.record_check(a, None)
    assert a.health is Health.DOWN, "one good check is not enough after a passive failure"
    pool.record_check(a, None)
    assert a.health is Health.UP


def test_pick_skips_down_and_draining_and_counts_open_connections() -> None:
    pool = make_pool("a", "b", "c")
    pool.record_check(backend(pool, "a"), "x")
    pool.drain(backend(pool, "b"))
    assert backend(pool, "b").state is AdminState.DRAINING
    picks = [pool.pick() for _ in range(3)]
    assert [p.name for p in picks if p] == ["c", "c", "c"]
    assert backend(pool, "c").open_connections == 3
    pool.release(backend(pool, "c"))
    assert backend(pool, "c").open_connections == 2
    pool.drain(backend(pool, "c"))
    assert pool.pick() is None
    assert not pool.any_available()
    pool.enable(backend(pool, "b"))
    assert pool.any_available()
    picked = pool.pick()
    assert picked is not None and picked.name == "b"


def test_pick_rotates_ties_and_honours_exclusions() -> None:
    pool = make_pool("a", "b")
    first, second = pool.pick(), pool.pick()
    assert first is not None and second is not None
    assert {first.name, second.name} == {"a", "b"}
    assert pool.pick(exclude=[backend(pool, "a")]) is backend(pool, "b")
    assert pool.pick(exclude=list(pool)) is None


def test_to_json_reports_state() -> None:
    pool = make_pool("a")
    a = backend(pool, "a")
    pool.drain(a)
    document = a.to_json()
    assert document["state"] == "draining"
    assert document["health"] == "unknown"
    assert document["address"] == "127.0.0.1:1000"
    assert document["health_check"] == "tcp"
