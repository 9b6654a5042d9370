"""Failing replicas: old ones keep serving, retries back off, a fix recovers."""

from __future__ import annotations

import pytest

from tests.conftest import wait_until
from tests.integration.agent.conftest import Env, get_json, running_agent

pytestmark = [pytest.mark.docker, pytest.mark.postgres]

PORT_ENV = {"name": "PORT", "value": "8080"}


def state(env: Env, name: str) -> str:
    return (env.status(name) or ("",))[0]


def test_failed_update_keeps_the_old_replicas_serving(env: Env) -> None:
    with running_agent(env.config()):
        env.apply("steady", replicas=2, env=[PORT_ENV])
        wait_until(lambda: env.running("steady", 2), timeout=40, what="steady running")
        before = env.backends("steady")
        old_ids = {c.id for c in env.containers("steady")}

        generation = env.apply(
            "steady", replicas=2, env=[PORT_ENV, {"name": "FAIL_AT_START", "value": "7"}]
        )
        wait_until(lambda: state(env, "steady") == "failing", timeout=30, what="failing")
        assert env.status("steady") == ("failing", "replica 0 exited with code 7", generation)
        # The routes stay as they were and the old replicas still answer.
        assert env.backends("steady") == before
        for backend in before:
            assert "FAIL_AT_START" not in get_json(backend)["env"]
        running = {c.id for c in env.containers("steady") if c.status == "running"}
        assert running == old_ids
        # Only the first slot was tried: surge 1 holds the rest of the update back.
        assert len(env.containers("steady")) == 3


def test_retries_back_off_and_a_fix_recovers(env: Env) -> None:
    with running_agent(env.config(backoff_initial=1.0, backoff_max=2.0)) as agent:
        env.apply("flaky", env=[PORT_ENV, {"name": "FAIL_AT_START", "value": "4"}])
        seen: set[str] = set()

        def retried() -> bool:
            containers = env.containers("flaky")
            # Never a pile of failed containers: the failed one is replaced, not joined.
            assert len(containers) <= 1
            seen.update(c.id for c in containers)
            return len(seen) >= 2

        wait_until(retried, timeout=40, interval=0.05, what="a retry after the back-off")
        assert state(env, "flaky") == "failing"
        assert agent.passes < 2000, "retrying in a hot loop"

        generation = env.apply("flaky", env=[PORT_ENV])
        wait_until(lambda: env.running("flaky", 1), timeout=30, what="fixed")
        assert env.status("flaky") == ("running", "1/1 ready", generation)


def test_replica_never_ready_fails_after_the_start_timeout(env: Env) -> None:
    with running_agent(env.config(start_timeout=2.0)):
        env.apply("sleepy", env=[PORT_ENV, {"name": "STARTUP_DELAY", "value": "60"}])
        wait_until(lambda: state(env, "sleepy") == "failing", timeout=30, what="failing")
        _, message, _ = env.status("sleepy")  # type: ignore[misc]
        assert message == "replica 0 not ready after 2s"
        failed = [m for r, m in env.events("sleepy") if r == "Failed"]
        assert failed and failed[0].startswith("replica 0 not ready after 2s")
        assert env.backends("sleepy") == ()
