"""The agent under crashes and competition, and how fast it reacts to a change."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.integration.agent.conftest import IMAGE_V2, Env, running_agent

pytestmark = [pytest.mark.docker, pytest.mark.postgres]

PORT_ENV = {"name": "PORT", "value": "8080"}


class AgentProcess:
    """`python -m agent` as a child process, killable with SIGKILL."""

    def __init__(self, env: Env, log_path: str) -> None:
        variables = {
            **os.environ,
            "SWS_DATABASE_URL": env.url,
            "SWS_INSTANCE": env.instance,
            "SWS_SERVICES_NETWORK": env.network,
            "SWS_INTERVAL": "10",
            "SWS_REQUEUE": "0.1",
            "SWS_GRACE_PERIOD": "0.5",
            "SWS_STOP_TIMEOUT": "2",
            "SWS_START_TIMEOUT": "20",
            "SWS_LOG_LEVEL": "INFO",
        }
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "agent"],
            env=variables,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)
        self.log.close()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self.log.close()


@pytest.fixture
def agent_process(env: Env, tmp_path: Any) -> Iterator[Any]:
    started: list[AgentProcess] = []

    def start() -> AgentProcess:
        process = AgentProcess(env, str(tmp_path / "agent.log"))
        started.append(process)
        return process

    yield start
    for process in started:
        if process.popen.poll() is None:
            process.stop()


def template_count(env: Env, service: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in env.containers(service):
        key = c.labels["sws.template-hash"]
        counts[key] = counts.get(key, 0) + 1
    return counts


def assert_converged(env: Env, service: str, replicas: int, image: str) -> None:
    containers = env.containers(service)
    assert len(containers) == replicas, [c.name for c in containers]
    assert sorted(c.labels["sws.replica"] for c in containers) == [str(i) for i in range(replicas)]
    assert all(image in c.image.tags for c in containers)
    addresses = set()
    for c in containers:
        ip = c.attrs["NetworkSettings"]["Networks"][env.network]["IPAddress"]
        addresses.add(f"{ip}:8080")
    assert set(env.backends(service)) == addresses
    # Nothing else of this instance is left: no orphans.
    assert {c.id for c in env.containers()} == {c.id for c in containers}


def test_killed_mid_update_converges_without_duplicates_or_orphans(
    env: Env, agent_process: Any
) -> None:
    first = agent_process()
    env.apply("crashy", replicas=3, env=[PORT_ENV])
    wait_until(lambda: env.running("crashy", 3), timeout=60, what="3 replicas")
    generation = env.apply("crashy", replicas=3, image=IMAGE_V2, env=[PORT_ENV])

    # Kill as soon as the first new replica exists, mid-way through the update.
    wait_until(lambda: len(template_count(env, "crashy")) == 2, timeout=30, what="update begun")
    first.kill()

    second = agent_process()
    # Kill again once the update has moved on, then let a third one finish.
    wait_until(
        lambda: sum(1 for c in env.containers("crashy") if "v2" in str(c.image.tags)) >= 2,
        timeout=60,
        what="second new replica",
    )
    second.kill()

    agent_process()
    wait_until(
        lambda: env.running("crashy", 3) and (env.status("crashy") or ("", "", 0))[2] == generation,
        timeout=90,
        what="converged after kills",
    )
    assert_converged(env, "crashy", 3, IMAGE_V2)


def test_only_one_of_two_agents_acts_and_the_other_takes_over(env: Env) -> None:
    config = env.config(interval=1.0)
    with running_agent(config) as first:
        from agent.reconciler import Agent

        second = Agent(config)
        import threading

        thread = threading.Thread(target=second.run, daemon=True)
        thread.start()
        try:
            env.apply("duo", replicas=2, env=[PORT_ENV])
            wait_until(lambda: env.running("duo", 2), timeout=40, what="duo running")
            # The standby never became leader and never ran a pass.
            assert first.leading.is_set() and not second.leading.is_set()
            assert second.passes == 0
            assert len(env.containers("duo")) == 2
            first.stop()
            wait_until(second.leading.is_set, timeout=15, what="standby takes over")
            env.apply("duo", replicas=3, env=[PORT_ENV])
            wait_until(lambda: env.running("duo", 3), timeout=40, what="scaled by the new leader")
            assert second.passes > 0
        finally:
            second.stop()
            thread.join(timeout=30)


def test_notify_wakes_the_agent_well_before_the_interval(env: Env) -> None:
    with running_agent(env.config(interval=10.0)) as agent:
        # Let the first passes settle so that the agent is idle, waiting out its interval.
        wait_until(lambda: agent.passes >= 1, timeout=10, what="first pass")
        time.sleep(0.3)
        latencies = []
        for i in range(3):
            started = time.monotonic()
            env.apply(f"fast{i}", env=[PORT_ENV])
            # Acted on: a pass has planned the service (its first status is recorded, and
            # the create is under way).
            wait_until(
                lambda i=i: env.status(f"fast{i}"),
                timeout=5,
                interval=0.01,
                what="status recorded",
            )
            latencies.append(time.monotonic() - started)
        # Docker answers slowly while it starts containers (a pass lists them), so one
        # sample may stretch; none waits for the 10 s interval, and typically well under 1 s.
        assert statistics.median(latencies) < 1.0, latencies
        assert max(latencies) < 5.0, latencies
        for i in range(3):
            wait_until(lambda i=i: env.containers(f"fast{i}"), timeout=10, what="created")
