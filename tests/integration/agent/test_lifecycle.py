"""The agent against a real Docker Engine and a real confdb: apply, scale, update, delete."""

from __future__ import annotations

import time

import pytest

from tests.conftest import wait_until
from tests.integration.agent.conftest import IMAGE_V2, Env, get_json, post, running_agent

pytestmark = [pytest.mark.docker, pytest.mark.postgres]

PORT_ENV = {"name": "PORT", "value": "8080"}


def test_apply_runs_the_service_with_env_and_volume(env: Env) -> None:
    with running_agent(env.config()):
        generation = env.apply(
            "web",
            env=[PORT_ENV, {"name": "GREETING", "value": "hello"}],
            volumeMount="/data",
        )
        wait_until(lambda: env.running("web", 1), timeout=30, what="web running")
        assert env.status("web") == ("running", "1/1 ready", generation)
        (backend,) = env.backends("web")
        body = get_json(backend)
        assert body["env"]["GREETING"] == "hello"
        assert post(backend, "/write?name=note.txt", b"kept") in (200, 201, 204)
        assert get_json(backend)["volume"]["note.txt"] == "kept"

        (container,) = env.containers("web")
        labels = container.labels
        assert labels["sws.service"] == "web"
        assert labels["sws.generation"] == str(generation)
        assert labels["sws.managed"] == "true"
        assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "on-failure"
        volumes = env.docker.volumes.list(filters={"label": [f"sws.instance={env.instance}"]})
        assert [v.name for v in volumes] == ["web-volume"]

        reasons = [r for r, _ in env.events("web")]
        assert "Created" in reasons and "Ready" in reasons
        # A replica is reported with its address and readiness.
        rows = env.sql(
            "SELECT container_id, address, ready, state FROM replica_status WHERE service = 'web'"
        )
        assert [(r[0], r[1], r[2], r[3]) for r in rows] == [(container.id, backend, True, "ready")]


def test_three_replicas_are_three_hosts_and_scale_down_and_up(env: Env) -> None:
    with running_agent(env.config()):
        env.apply("multi", replicas=3, env=[PORT_ENV])
        wait_until(lambda: env.running("multi", 3), timeout=40, what="3 replicas running")
        hosts = {get_json(b)["hostname"] for b in env.backends("multi")}
        assert len(hosts) == 3

        env.apply("multi", replicas=1, env=[PORT_ENV])
        wait_until(lambda: env.running("multi", 1), timeout=30, what="scaled down to 1")
        assert [r for r, _ in env.events("multi")].count("ScaledDown") == 1
        (survivor,) = env.containers("multi")
        assert survivor.labels["sws.replica"] == "0"

        env.apply("multi", replicas=3, env=[PORT_ENV])
        wait_until(lambda: env.running("multi", 3), timeout=40, what="scaled up to 3")
        assert [r for r, _ in env.events("multi")].count("ScaledUp") == 1
        # Scaling does not replace the replica that was already there.
        assert survivor.id in {c.id for c in env.containers("multi")}


def test_delete_routes_first_keeps_volume_unless_purged(env: Env) -> None:
    with running_agent(env.config()):
        env.apply("keep", env=[PORT_ENV], volumeMount="/data")
        env.apply("purge", env=[PORT_ENV], volumeMount="/data")
        wait_until(
            lambda: env.running("keep", 1) and env.running("purge", 1),
            timeout=30,
            what="both running",
        )
        (keep_backend,) = env.backends("keep")
        post(keep_backend, "/write?name=f", b"data")
        table_before = env.route_table()
        assert table_before is not None

        env.delete("keep")
        env.delete("purge", purge=True)
        # Routes go first: while a table still routes to "keep", its container still runs.
        deadline = time.monotonic() + 30
        while env.service_exists("keep") or env.service_exists("purge"):
            assert time.monotonic() < deadline, "rows not deleted"
            routed = env.backends("keep")
            read_at = time.monotonic()
            running = [c for c in env.containers("keep") if c.status == "running"]
            if routed and time.monotonic() - read_at < 0.2:
                assert len(running) == 1, "container stopped while still routed"
            time.sleep(0.01)
        assert env.containers("keep") == [] and env.containers("purge") == []
        names = {v.name for v in env.docker.volumes.list()}
        assert "keep-volume" in names
        assert "purge-volume" not in names
        table = env.route_table()
        assert table is not None and table.services == ()
        history = env.sql("SELECT routes FROM route_tables ORDER BY version")
        assert history[-1][0]["services"] == []

        # Re-applying uses the kept volume: the data is still there.
        env.apply("keep", env=[PORT_ENV], volumeMount="/data")
        wait_until(lambda: env.running("keep", 1), timeout=30, what="keep back")
        (backend,) = env.backends("keep")
        assert get_json(backend)["volume"]["f"] == "data"


def test_missing_image_is_failing_with_a_clear_message(env: Env) -> None:
    with running_agent(env.config()):
        generation = env.apply("ghost", image="sws/no-such-image:v1", env=[PORT_ENV])
        wait_until(
            lambda: (env.status("ghost") or ("",))[0] == "failing", timeout=20, what="failing"
        )
        assert env.status("ghost") == (
            "failing",
            "image not found: sws/no-such-image:v1",
            generation,
        )
        assert ("ImageNotFound", "image not found: sws/no-such-image:v1") in env.events("ghost")
        assert env.containers("ghost") == []


def test_replica_that_exits_at_start_is_failing_with_its_exit_code(env: Env) -> None:
    with running_agent(env.config()):
        env.apply("crash", env=[PORT_ENV, {"name": "FAIL_AT_START", "value": "3"}])
        wait_until(
            lambda: (env.status("crash") or ("",))[0] == "failing", timeout=30, what="failing"
        )
        _, message, _ = env.status("crash")  # type: ignore[misc]
        assert message == "replica 0 exited with code 3"
        failed = [m for r, m in env.events("crash") if r == "Failed"]
        assert failed and failed[0].startswith("replica 0 exited with code 3")
        # The failed container is kept for its logs, not retried in a hot loop (the back-off
        # is 30 s in these tests).
        (kept,) = env.containers("crash")
        assert kept.status == "exited"
        assert env.backends("crash") == ()


def test_unlabelled_and_foreign_containers_are_never_touched(env: Env) -> None:
    foreign = env.docker.containers.create(
        "sws/testapp:latest", labels={"sws.managed": "true", "sws.instance": "someone-else"}
    )
    plain = env.docker.containers.create("sws/testapp:latest")
    try:
        with running_agent(env.config(interval=0.5)) as agent:
            env.apply("solo", env=[PORT_ENV])
            wait_until(lambda: env.running("solo", 1), timeout=30, what="solo running")
            passes = agent.passes
            wait_until(lambda: agent.passes > passes, timeout=15, what="another pass")
        foreign.reload()
        plain.reload()
        assert foreign.status == "created" and plain.status == "created"
    finally:
        foreign.remove(force=True)
        plain.remove(force=True)


def test_image_update_replaces_replicas_one_by_one(env: Env) -> None:
    import random
    import threading
    import urllib.error

    with running_agent(env.config()):
        env.apply("roll", replicas=3, env=[PORT_ENV])
        wait_until(lambda: env.running("roll", 3), timeout=40, what="3 replicas")
        old_ids = {c.id for c in env.containers("roll")}

        stop = threading.Event()
        errors: list[str] = []
        seen_versions: set[str] = set()
        min_backends = [3]
        requests_done = [0]

        def client() -> None:
            while not stop.is_set():
                backends = env.backends("roll")
                min_backends[0] = min(min_backends[0], len(backends))
                if not backends:
                    errors.append("empty table")
                    continue
                backend = random.choice(backends)
                try:
                    seen_versions.add(str(get_json(backend).get("version")))
                    requests_done[0] += 1
                except (urllib.error.URLError, ConnectionError, OSError) as e:
                    errors.append(f"{backend}: {e}")

        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        try:
            generation = env.apply("roll", replicas=3, image=IMAGE_V2, env=[PORT_ENV])
            wait_until(
                lambda: (
                    env.running("roll", 3) and (env.status("roll") or ("", "", 0))[2] == generation
                ),
                timeout=90,
                what="rolled to v2",
            )
        finally:
            stop.set()
            thread.join(timeout=10)
        assert errors == []
        assert min_backends[0] >= 3
        assert requests_done[0] > 10
        new = env.containers("roll")
        assert not ({c.id for c in new} & old_ids)
        versions = {get_json(b)["version"] for b in env.backends("roll")}
        assert len(versions) == 1 and len(seen_versions) == 2
        assert versions != {next(iter(seen_versions - versions))}


def test_another_instances_volume_is_neither_used_nor_purged(env: Env) -> None:
    # Service volumes are named <service>-volume on the whole engine; another SWS platform
    # on it may already hold this one.
    other = f"{env.instance}-other"
    foreign = env.docker.volumes.create(
        "shared-volume",
        labels={"sws.managed": "true", "sws.instance": other, "sws.service": "shared"},
    )
    try:
        with running_agent(env.config()):
            generation = env.apply("shared", env=[PORT_ENV], volumeMount="/data")
            wait_until(
                lambda: (env.status("shared") or ("",))[0] == "failing",
                timeout=30,
                what="failing",
            )
            state, message, observed = env.status("shared")  # type: ignore[misc]
            assert (state, observed) == ("failing", generation)
            assert message.startswith(
                f'replica 0 could not start: volume shared-volume belongs to the SWS instance "{other}"'
            ), message
            assert env.containers("shared") == []

            env.delete("shared", purge=True)
            wait_until(lambda: not env.service_exists("shared"), timeout=30, what="deleted")
        foreign.reload()
        assert foreign.attrs["Labels"]["sws.instance"] == other
    finally:
        foreign.remove(force=True)


def test_an_unlabelled_volume_of_the_name_is_used_as_it_is(env: Env) -> None:
    existing = env.docker.volumes.create("adopted-volume")
    try:
        with running_agent(env.config()):
            env.apply("adopted", env=[PORT_ENV], volumeMount="/data")
            wait_until(lambda: env.running("adopted", 1), timeout=30, what="adopted running")
            (container,) = env.containers("adopted")
            mounts = {m["Name"]: m["Destination"] for m in container.attrs["Mounts"]}
            assert mounts == {"adopted-volume": "/data"}
            env.delete("adopted")
            wait_until(lambda: not env.service_exists("adopted"), timeout=30, what="deleted")
    finally:
        existing.remove(force=True)
