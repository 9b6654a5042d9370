"""The rolling proxy swap: which proxy gets the new route table next, and how.

Theory of operation
-------------------
Two (or more) proxies sit behind the front balancer. A new route table reaches them one at a
time, so that one proxy is always serving. For one proxy the swap is

    drain it in the balancer -> drain it on itself -> wait (bounded) until its connections
    are gone -> PUT the table -> check it runs that version -> resume it -> enable it in the
    balancer -> wait (bounded) until the balancer reports it up

Every step is idempotent. The agent observes each proxy (its /healthz, the balancer's view of
it, whether an operator holds it for maintenance), asks `next_swap` which proxy to do next
and how, carries the steps out, then observes afresh and asks again until nothing is left.
Nothing but the back-off of proxies that refused a table is remembered from one round to
the next, so an agent that dies mid-swap leaves a proxy that the next round sees drained (in
the balancer or on itself) and finishes: the decision is level-based, like `sws.plan`.

Rules:

* A proxy needs a swap when it answers and runs another version than the newest, or is left
  draining on itself, or is left drained in the balancer -- unless it is held for maintenance
  (`sws-agent proxy drain`), when the swap leaves it alone entirely.
* It is drained first only if another proxy is serving: answering, not held, and enabled and
  up in the balancer. So two proxies are never drained at once. Otherwise the table is put
  in place: a route swap never breaks requests in flight on a proxy, and one proxy serving
  the new table is better than none serving.
* Proxies left drained go first, so capacity comes back before another one is taken out.
* A proxy that refused a table is retried after a back-off, and at once for a newer table.
  It stays drained in the balancer meanwhile; the others keep serving.
* A proxy that does not answer is drained in the balancer (fenced) while another serves, so
  it cannot come back from a restart serving an empty table before the agent has swapped it.
* Without a balancer (or when it does not answer) every swap is in place, still one at a time.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Mode(StrEnum):
    DRAIN = "drain"
    IN_PLACE = "in-place"


class Step(StrEnum):
    BALANCER_DRAIN = "balancer-drain"
    PROXY_DRAIN = "proxy-drain"
    WAIT_IDLE = "wait-idle"
    PUSH = "push"
    VERIFY = "verify"
    RESUME = "resume"
    BALANCER_ENABLE = "balancer-enable"
    WAIT_UP = "wait-up"


# -- observations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BalancerView:
    """One proxy as the balancer reports it (`GET /backends`)."""

    enabled: bool
    # unknown | up | down
    health: str
    connections: int = 0
    error: str = ""

    @property
    def up(self) -> bool:
        return self.health == "up"


@dataclass(frozen=True)
class ProxyView:
    """One proxy as observed: its own /healthz, the balancer's view, the maintenance hold."""

    name: str
    # The route table version it runs; None when its admin API did not answer.
    version: int | None
    draining: bool = False
    connections: int = 0
    # Why it did not answer.
    error: str = ""
    # None without a balancer, or when the balancer did not answer.
    balancer: BalancerView | None = None
    held: bool = False

    @property
    def reachable(self) -> bool:
        return self.version is not None

    @property
    def drained_in_balancer(self) -> bool:
        return self.balancer is not None and not self.balancer.enabled


@dataclass(frozen=True)
class Refusal:
    """A proxy refused `version` (or did not take it); retry not before `retry_at`."""

    version: int
    message: str
    retry_at: float
    count: int = 1


@dataclass(frozen=True)
class Swap:
    """Bring `proxy` to the newest table, carrying out `steps` in order."""

    proxy: str
    mode: Mode
    steps: tuple[Step, ...]
    # Why it needs a swap, and (in place) why it is not drained first.
    reason: str
    note: str = ""


# -- decisions ---------------------------------------------------------------------------------


def needs_swap(view: ProxyView, target: int) -> str | None:
    """Why this proxy needs a swap to `target`, or None (also for held and silent proxies)."""
    if view.held or view.version is None:
        return None
    if view.version != target:
        return f"runs version {view.version}, newest is {target}"
    if view.draining:
        return "left draining"
    if view.drained_in_balancer:
        return "left drained in the balancer"
    return None


def serving(view: ProxyView) -> bool:
    """The balancer sends it traffic and it answers: it may carry the load alone."""
    return (
        view.reachable
        and not view.held
        and view.balancer is not None
        and view.balancer.enabled
        and view.balancer.up
    )


def idle(view: ProxyView) -> bool:
    """No connection left on the proxy, nor through the balancer to it."""
    through_balancer = view.balancer.connections if view.balancer is not None else 0
    return view.connections == 0 and through_balancer == 0


def backing_off(refusal: Refusal | None, target: int, now: float) -> bool:
    return refusal is not None and refusal.version == target and now < refusal.retry_at


def next_swap(
    views: Sequence[ProxyView],
    target: int,
    now: float,
    refusals: Mapping[str, Refusal],
    done: Collection[str] = (),
    only: Collection[str] | None = None,
) -> Swap | None:
    """The proxy to swap next and how, or None when this round has nothing more to do."""
    candidates: list[tuple[int, int, ProxyView, str]] = []
    for index, view in enumerate(views):
        if view.name in done or (only is not None and view.name not in only):
            continue
        reason = needs_swap(view, target)
        if reason is None or backing_off(refusals.get(view.name), target, now):
            continue
        left_drained = view.draining or view.drained_in_balancer
        candidates.append((0 if left_drained else 1, index, view, reason))
    if not candidates:
        return None
    _, _, view, reason = min(candidates, key=lambda c: (c[0], c[1]))
    others = [v for v in views if v.name != view.name]
    peer = next((v for v in others if serving(v)), None)
    if view.balancer is not None and peer is not None:
        steps = (
            Step.BALANCER_DRAIN,
            Step.PROXY_DRAIN,
            Step.WAIT_IDLE,
            *((Step.PUSH,) if view.version != target else ()),
            Step.VERIFY,
            Step.RESUME,
            Step.BALANCER_ENABLE,
            Step.WAIT_UP,
        )
        return Swap(view.name, Mode.DRAIN, steps, reason)
    in_place: list[Step] = []
    if view.version != target:
        in_place.append(Step.PUSH)
    in_place.append(Step.VERIFY)
    if view.draining:
        in_place.append(Step.RESUME)
    if view.drained_in_balancer:
        in_place.append(Step.BALANCER_ENABLE)
    if view.balancer is None:
        note = "updated in place: no balancer to drain it in"
    elif others:
        note = "updated in place: no other proxy is serving (" + _why_not_serving(others) + ")"
    else:
        note = "updated in place: it is the only proxy"
    return Swap(view.name, Mode.IN_PLACE, tuple(in_place), reason, note)


def _why_not_serving(others: Sequence[ProxyView]) -> str:
    parts: list[str] = []
    for v in others:
        if v.held:
            why = "held for maintenance"
        elif not v.reachable:
            why = "unreachable"
        elif v.balancer is None:
            why = "unknown to the balancer"
        elif not v.balancer.enabled:
            why = "drained in the balancer"
        else:
            why = f"{v.balancer.health} in the balancer"
        parts.append(f"{v.name} {why}")
    return ", ".join(parts)


def fence(views: Sequence[ProxyView]) -> tuple[str, ...]:
    """Silent proxies to drain in the balancer, so they come back only through a swap.

    Only while another proxy serves: with none serving, draining changes nothing for the
    better, and a proxy the agent merely cannot reach may still be carrying traffic.
    """
    out: list[str] = []
    for view in views:
        if view.reachable or view.held or view.balancer is None or not view.balancer.enabled:
            continue
        if any(serving(v) for v in views if v.name != view.name):
            out.append(view.name)
    return tuple(out)


def oldest_in_service(views: Sequence[ProxyView], target: int) -> int:
    """The oldest version among proxies that may be given traffic (`target` if none).

    A backend routed out by a table is safe to stop once this reaches that table's version.
    """
    versions = [
        v.version
        for v in views
        if v.version is not None
        and not v.held
        and (v.balancer is None or (v.balancer.enabled and v.balancer.health != "down"))
    ]
    return min(versions, default=target)


def state_of(view: ProxyView, target: int, refusal: Refusal | None) -> tuple[str, str]:
    """(state, message) to record for the proxy: serving, draining or failed."""
    if view.held:
        return "draining", "held for maintenance"
    if view.version is None:
        return "failed", f"unreachable: {view.error}" if view.error else "unreachable"
    if refusal is not None and refusal.version == target and view.version != target:
        return "failed", refusal.message
    if view.drained_in_balancer:
        return "draining", "drained in the balancer"
    if view.draining:
        return "draining", "draining"
    if view.balancer is not None and view.balancer.health == "down":
        why = f": {view.balancer.error}" if view.balancer.error else ""
        return "failed", f"down in the balancer{why}"
    if view.version != target:
        return "serving", f"swap to version {target} pending"
    return "serving", ""


def backoff(count: int, initial: float, maximum: float) -> float:
    """Seconds before retrying a proxy after its `count`-th refusal in a row (doubling)."""
    return float(min(initial * 2 ** min(max(count - 1, 0), 20), maximum))
