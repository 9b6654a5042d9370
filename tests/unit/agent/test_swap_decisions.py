"""The rolling swap's decisions (sws.swap): which proxy next, drained or in place, and states."""

from __future__ import annotations

from sws.swap import (
    BalancerView,
    Mode,
    ProxyView,
    Refusal,
    Step,
    backoff,
    fence,
    idle,
    needs_swap,
    next_swap,
    oldest_in_service,
    serving,
    state_of,
)

UP = BalancerView(enabled=True, health="up")
DRAINED = BalancerView(enabled=False, health="up")
DOWN = BalancerView(enabled=True, health="down", error="Connection refused")

FULL = (
    Step.BALANCER_DRAIN,
    Step.PROXY_DRAIN,
    Step.WAIT_IDLE,
    Step.PUSH,
    Step.VERIFY,
    Step.RESUME,
    Step.BALANCER_ENABLE,
    Step.WAIT_UP,
)


def proxy(
    name: str, version: int | None = 5, lb: BalancerView | None = UP, **kw: object
) -> ProxyView:
    return ProxyView(name, version, balancer=lb, **kw)  # type: ignore[arg-type]


def test_nothing_to_do_when_every_proxy_runs_the_newest_table() -> None:
    views = [proxy("proxy-1"), proxy("proxy-2")]
    assert next_swap(views, 5, 0.0, {}) is None
    assert [state_of(v, 5, None) for v in views] == [("serving", ""), ("serving", "")]


def test_a_new_table_goes_to_the_first_proxy_drained_while_the_other_serves() -> None:
    views = [proxy("proxy-1", 4), proxy("proxy-2", 4)]
    swap = next_swap(views, 5, 0.0, {})
    assert swap is not None
    assert (swap.proxy, swap.mode, swap.steps) == ("proxy-1", Mode.DRAIN, FULL)
    assert swap.reason == "runs version 4, newest is 5"
    # The round goes on with the second once the first is done.
    views = [proxy("proxy-1", 5), proxy("proxy-2", 4)]
    swap = next_swap(views, 5, 0.0, {}, done={"proxy-1"})
    assert swap is not None and (swap.proxy, swap.mode) == ("proxy-2", Mode.DRAIN)


def test_never_two_drained_at_once_a_lone_proxy_is_updated_in_place() -> None:
    for other in (
        proxy("proxy-2", None, error="connection failed"),
        proxy("proxy-2", 4, DOWN),
        proxy("proxy-2", 5, DRAINED),
        proxy("proxy-2", 4, UP, held=True),
        proxy("proxy-2", 4, BalancerView(enabled=True, health="unknown")),
    ):
        # (proxy-2 drained in the balancer and in back-off after refusing version 5)
        refusals = {"proxy-2": Refusal(5, "refused", retry_at=1.0)}
        swap = next_swap([proxy("proxy-1", 4), other], 5, 0.0, refusals)
        assert swap is not None and swap.proxy == "proxy-1"
        assert swap.mode is Mode.IN_PLACE, other
        assert swap.steps == (Step.PUSH, Step.VERIFY)
        assert swap.note.startswith("updated in place: no other proxy is serving (proxy-2 ")


def test_in_place_notes_say_why() -> None:
    held = proxy("proxy-2", 4, held=True)
    swap = next_swap([proxy("proxy-1", 4), held], 5, 0.0, {})
    assert swap is not None
    assert swap.note == "updated in place: no other proxy is serving (proxy-2 held for maintenance)"
    dead = proxy("proxy-2", None)
    swap = next_swap([proxy("proxy-1", 4), dead], 5, 0.0, {})
    assert swap is not None and "proxy-2 unreachable" in swap.note
    swap = next_swap([proxy("proxy-1", 4)], 5, 0.0, {})
    assert swap is not None and swap.note == "updated in place: it is the only proxy"


def test_without_a_balancer_every_swap_is_in_place_one_at_a_time() -> None:
    views = [proxy("proxy-1", 4, None), proxy("proxy-2", 4, None)]
    swap = next_swap(views, 5, 0.0, {})
    assert swap is not None
    assert (swap.proxy, swap.mode, swap.steps) == (
        "proxy-1",
        Mode.IN_PLACE,
        (Step.PUSH, Step.VERIFY),
    )
    assert swap.note == "updated in place: no balancer to drain it in"
    swap = next_swap(views, 5, 0.0, {}, done={"proxy-1"})
    assert swap is not None and swap.proxy == "proxy-2"


def test_a_proxy_left_drained_is_finished_first_without_pushing_again() -> None:
    # An agent died after draining proxy-2 and pushing the table to it.
    views = [proxy("proxy-1", 4), proxy("proxy-2", 5, DRAINED, draining=True)]
    swap = next_swap(views, 5, 0.0, {})
    assert swap is not None
    assert swap.proxy == "proxy-2" and swap.mode is Mode.DRAIN
    assert Step.PUSH not in swap.steps and Step.RESUME in swap.steps
    assert Step.BALANCER_ENABLE in swap.steps
    assert needs_swap(views[1], 5) == "left draining"
    assert needs_swap(proxy("p", 5, DRAINED), 5) == "left drained in the balancer"


def test_left_drained_with_no_other_serving_is_resumed_and_enabled_in_place() -> None:
    views = [proxy("proxy-1", 5, DRAINED, draining=True), proxy("proxy-2", None)]
    swap = next_swap(views, 5, 0.0, {})
    assert swap is not None and swap.mode is Mode.IN_PLACE
    assert swap.steps == (Step.VERIFY, Step.RESUME, Step.BALANCER_ENABLE)


def test_held_and_silent_proxies_are_left_alone() -> None:
    views = [proxy("proxy-1", 0, DRAINED, held=True, draining=True), proxy("proxy-2", None)]
    assert next_swap(views, 5, 0.0, {}) is None
    assert state_of(views[0], 5, None) == ("draining", "held for maintenance")


def test_only_limits_the_round() -> None:
    views = [proxy("proxy-1", 4), proxy("proxy-2", 4)]
    swap = next_swap(views, 5, 0.0, {}, only={"proxy-2"})
    assert swap is not None and swap.proxy == "proxy-2"


def test_a_refusing_proxy_backs_off_but_a_newer_table_is_tried_at_once() -> None:
    refusal = Refusal(5, "refused version 5: PUT /routes answered 400: bad", retry_at=10.0)
    views = [proxy("proxy-1", 4, DRAINED), proxy("proxy-2", 5)]
    assert next_swap(views, 5, 9.0, {"proxy-1": refusal}) is None
    assert state_of(views[0], 5, refusal) == ("failed", refusal.message)
    swap = next_swap(views, 5, 10.0, {"proxy-1": refusal})
    assert swap is not None and swap.proxy == "proxy-1" and swap.mode is Mode.DRAIN
    swap = next_swap(views, 6, 9.0, {"proxy-1": refusal})
    assert swap is not None and swap.proxy == "proxy-1"


def test_backoff_doubles_up_to_the_maximum() -> None:
    assert [backoff(n, 5, 300) for n in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert backoff(30, 5, 300) == 300


def test_silent_proxies_are_fenced_only_while_another_serves() -> None:
    dead = proxy("proxy-1", None, UP)
    assert fence([dead, proxy("proxy-2")]) == ("proxy-1",)
    assert fence([dead, proxy("proxy-2", 5, DOWN)]) == ()
    assert fence([proxy("proxy-1", None, DRAINED), proxy("proxy-2")]) == ()
    assert fence([proxy("proxy-1", None, None), proxy("proxy-2")]) == ()
    assert fence([proxy("proxy-1", None, UP, held=True), proxy("proxy-2")]) == ()


def test_serving_needs_the_balancer_to_send_it_traffic() -> None:
    assert serving(proxy("p"))
    assert not serving(proxy("p", lb=None))
    assert not serving(proxy("p", lb=DRAINED))
    assert not serving(proxy("p", lb=DOWN))
    assert not serving(proxy("p", None))
    assert not serving(proxy("p", held=True))


def test_idle_counts_both_sides() -> None:
    assert idle(proxy("p", lb=DRAINED))
    assert not idle(proxy("p", lb=DRAINED, connections=1))
    assert not idle(proxy("p", lb=BalancerView(enabled=False, health="up", connections=2)))
    assert idle(proxy("p", lb=None))


def test_states_for_swsctl_platform() -> None:
    assert state_of(proxy("p", None, error="GET /healthz: connection failed"), 5, None) == (
        "failed",
        "unreachable: GET /healthz: connection failed",
    )
    assert state_of(proxy("p", 5, DOWN), 5, None) == (
        "failed",
        "down in the balancer: Connection refused",
    )
    assert state_of(proxy("p", 5, DRAINED), 5, None) == ("draining", "drained in the balancer")
    assert state_of(proxy("p", 5, draining=True), 5, None) == ("draining", "draining")
    assert state_of(proxy("p", 4), 5, None) == ("serving", "swap to version 5 pending")
    # A refusal of an older table no longer counts once the proxy runs the newest.
    assert state_of(proxy("p", 5), 5, Refusal(5, "x", 0.0)) == ("serving", "")


def test_a_routed_out_backend_may_stop_once_every_proxy_in_service_has_the_table() -> None:
    assert oldest_in_service([proxy("proxy-1", 7), proxy("proxy-2", 6)], 7) == 6
    # Proxies that get no traffic do not hold it back.
    assert oldest_in_service([proxy("proxy-1", 7), proxy("proxy-2", 3, DRAINED)], 7) == 7
    assert oldest_in_service([proxy("proxy-1", 7), proxy("proxy-2", None)], 7) == 7
    assert oldest_in_service([proxy("proxy-1", 7), proxy("proxy-2", 3, held=True)], 7) == 7
    assert oldest_in_service([proxy("proxy-1", 7), proxy("proxy-2", 3, DOWN)], 7) == 7
    assert oldest_in_service([proxy("proxy-1", 4, None), proxy("proxy-2", 5, None)], 7) == 4
    assert oldest_in_service([], 7) == 7
