"""The --wait logic, driven by scripted API answers and a fake clock."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from sws.errors import NotFound
from swsctl.wait import until_gone, until_rolled_out


def service(
    generation: int, observed: int, state: str, ready: int, desired: int = 2, message: str = ""
) -> dict[str, Any]:
    return {
        "generation": generation,
        "observedGeneration": observed,
        "state": state,
        "message": message,
        "replicas": {"ready": ready, "desired": desired},
    }


class Script:
    """Answers each fetch of a name with its next scripted body (the last one repeats)."""

    def __init__(self, **answers: list[Mapping[str, Any] | None]) -> None:
        self.answers = {name.replace("_", "-"): list(a) for name, a in answers.items()}
        self.fetches = 0

    def __call__(self, name: str) -> Mapping[str, Any]:
        self.fetches += 1
        queue = self.answers[name]
        body = queue.pop(0) if len(queue) > 1 else queue[0]
        if body is None:
            raise NotFound(f'service "{name}" not found')
        return body


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Iterator[Clock]:
    yield Clock()


def test_waits_for_the_new_generation_not_an_old_running_one(
    clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    fetch = Script(
        web=[
            service(3, 2, "running", 2),  # the previous generation still runs
            service(3, 2, "starting", 1, message="1/2 ready"),
            service(3, 3, "running", 2),
        ]
    )
    problems = until_rolled_out(fetch, {"web": 3}, 60, clock=clock, sleep=clock.sleep)
    assert problems == []
    assert fetch.fetches == 3
    assert capsys.readouterr().err.splitlines() == [
        "web: ready 2/2, running",
        "web: ready 1/2, starting (1/2 ready)",
        "web: ready 2/2, running",
    ]


def test_running_needs_every_replica_ready(clock: Clock) -> None:
    fetch = Script(web=[service(1, 1, "running", 1), service(1, 1, "running", 2)])
    assert until_rolled_out(fetch, {"web": 1}, 60, clock=clock, sleep=clock.sleep) == []
    assert fetch.fetches == 2


def test_failing_at_the_new_generation_is_a_problem(clock: Clock) -> None:
    fetch = Script(
        web=[service(2, 2, "failing", 0, message="image not found: x:1")],
        api=[service(1, 1, "running", 2)],
    )
    problems = until_rolled_out(fetch, {"web": 2, "api": 1}, 60, clock=clock, sleep=clock.sleep)
    assert problems == ['service "web" is failing: image not found: x:1']


def test_gives_up_at_the_deadline(clock: Clock, capsys: pytest.CaptureFixture[str]) -> None:
    fetch = Script(web=[service(1, 0, "pending", 0, message="waiting for the agent")])
    problems = until_rolled_out(fetch, {"web": 1}, 5, clock=clock, sleep=clock.sleep)
    assert problems == ['service "web" did not become ready within 5s']
    assert 5 <= clock.now <= 6
    # An unchanged state is shown once, not once per poll.
    assert capsys.readouterr().err.count("waiting for the agent") == 1


def test_until_gone_waits_for_404(clock: Clock, capsys: pytest.CaptureFixture[str]) -> None:
    fetch = Script(web=[service(2, 1, "deleting", 1), service(2, 2, "deleting", 0), None])
    assert until_gone(fetch, ["web"], 60, clock=clock, sleep=clock.sleep) == []
    assert capsys.readouterr().err.splitlines()[-1] == "web: deleted"


def test_until_gone_gives_up(clock: Clock) -> None:
    fetch = Script(web=[service(2, 1, "deleting", 1)])
    assert until_gone(fetch, ["web"], 3, clock=clock, sleep=clock.sleep) == [
        'service "web" was not removed within 3s'
    ]
