"""Benchmark the agent, side by side in one run, reported as ratios.

Two measurements:

  apply    apply -> replica ready through the agent (a service row is written, the NOTIFY
           wakes the agent, it creates and starts the container, probes it and publishes the
           route), against the floor: the same container created, started and probed directly
           through the Docker API with no agent. Median of --samples each, alternating.
  noop     the cost of a pass that has nothing to do. Two worlds: --services services at
           replicas 0 (confdb only), and --real services with one real, ready testapp
           container each. Each pass is split into its parts: the confdb snapshot, the Docker
           observation, the pure plan; the per-service cost makes the worlds comparable.
           (200 real containers overload a 2-core host with fuse-overlayfs: every container
           is a fuse-overlayfs process plus a Python server and a health check.)

Needs a PostgreSQL (SWS_BENCH_DATABASE_URL or SWS_TEST_DATABASE_URL: a superuser URL of a
maintenance database; a throwaway database is created and dropped), the Docker Engine and
the sws/testapp image. Everything it creates carries a unique instance label and is removed.

    python bench/agent/run.py --samples 15 --services 200 --real 40
    python bench/agent/run.py --skip-apply --real 0            # replicas-0 world only
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import docker.client  # noqa: E402
import psycopg  # noqa: E402
from psycopg.types.json import Jsonb  # noqa: E402

from agent.config import Config  # noqa: E402
from agent.reconciler import Agent  # noqa: E402
from confdb import observed  # noqa: E402
from confdb.migrate import migrate  # noqa: E402
from sws.plan import World, plan  # noqa: E402
from sws.spec import ServiceSpec  # noqa: E402

IMAGE = "sws/testapp:latest"


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.005)


class Bench:
    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        tag = secrets.token_hex(4)
        self.instance = f"b{tag}"
        self.network = f"sws-bench-{tag}"
        self.dbname = f"sws_bench_{tag}"
        info = psycopg.conninfo.conninfo_to_dict(server_url)
        info["dbname"] = self.dbname
        self.url = psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items() if v})
        self.docker = docker.client.DockerClient.from_env()
        self._watch: psycopg.Connection[Any] | None = None

    def __enter__(self) -> Bench:
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}"'.encode())
        with psycopg.connect(self.url) as conn:
            migrate(conn)
            conn.execute("INSERT INTO users (name, token_hash) VALUES ('bench', 'x')")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._watch is not None:
            self._watch.close()
        label = {"label": [f"sws.instance={self.instance}"]}
        for c in self.docker.containers.list(all=True, filters=label):
            with contextlib.suppress(Exception):
                c.remove(force=True)
        for n in self.docker.networks.list(names=[self.network]):
            with contextlib.suppress(Exception):
                n.remove()
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)'.encode())

    def config(self, **kw: Any) -> Config:
        return Config(
            database_url=self.url,
            instance=self.instance,
            network=self.network,
            requeue=0.05,
            grace_period=0.2,
            stop_timeout=2,
            start_timeout=600,
            **kw,
        )

    def apply(self, names: list[str], replicas: int) -> None:
        with psycopg.connect(self.url) as conn, conn.transaction():
            for name in names:
                spec = ServiceSpec.from_document(
                    {
                        "apiVersion": "v1",
                        "spec": {
                            "name": name,
                            "port": 8080,
                            "domain": f"{name}.bench.example",
                            "image": IMAGE,
                            "replicas": replicas,
                            "env": [{"name": "PORT", "value": "8080"}],
                        },
                    }
                )
                conn.execute(
                    "INSERT INTO services (name, owner_id, domain, spec, spec_hash) "
                    "VALUES (%s, (SELECT id FROM users WHERE name = 'bench'), %s, %s, %s) "
                    "ON CONFLICT (name) DO UPDATE SET spec = EXCLUDED.spec, "
                    "generation = services.generation + 1, deleting = false",
                    (name, spec.domain, Jsonb(spec.to_document()), spec.spec_hash()),
                )

    def running(self, name: str) -> bool:
        if self._watch is None:
            self._watch = psycopg.connect(self.url, autocommit=True)
        row = self._watch.execute(
            "SELECT state FROM service_status WHERE service = %s", (name,)
        ).fetchone()
        return row is not None and row[0] == "running"

    def count_services(self) -> int:
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM services").fetchone()
        return int(row[0]) if row else 0

    def remove(self, names: list[str]) -> None:
        with psycopg.connect(self.url) as conn:
            conn.execute("UPDATE services SET deleting = true WHERE name = ANY(%s)", (names,))


@contextlib.contextmanager
def agent_thread(config: Config) -> Iterator[Agent]:
    agent = Agent(config)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    wait_for(agent.leading.is_set, 30, "agent leading")
    try:
        yield agent
    finally:
        agent.stop()
        thread.join(60)


def direct_start(client: Any, network: str, instance: str, i: int) -> float:
    """Create, start and probe a testapp container with no agent: the floor."""
    api = client.api
    started = time.monotonic()
    created = api.create_container(
        image=IMAGE,
        name=f"{instance}-direct-{i}",
        environment={"PORT": "8080"},
        labels={"sws.instance": instance},
        host_config=api.create_host_config(init=True),
        networking_config=api.create_networking_config({network: api.create_endpoint_config()}),
    )
    api.start(created["Id"])
    ip = ""
    while not ip:
        ip = api.inspect_container(created["Id"])["NetworkSettings"]["Networks"][network][
            "IPAddress"
        ]

    def accepts() -> bool:
        try:
            with socket.create_connection((ip, 8080), timeout=0.2):
                return True
        except OSError:
            return False

    wait_for(accepts, 60, "direct container")
    elapsed = time.monotonic() - started
    api.remove_container(created["Id"], force=True)
    return elapsed


def bench_apply(b: Bench, samples: int) -> dict[str, float]:
    through_agent: list[float] = []
    direct: list[float] = []
    with agent_thread(b.config(interval=10.0)):
        time.sleep(0.5)
        for i in range(samples):
            name = f"apply{i}"
            started = time.monotonic()
            b.apply([name], 1)
            wait_for(lambda name=name: b.running(name), 60, name)
            through_agent.append(time.monotonic() - started)
            direct.append(direct_start(b.docker, b.network, b.instance, i))
        b.remove([f"apply{i}" for i in range(samples)])
        wait_for(
            lambda: (
                not b.docker.api.containers(
                    all=True, filters={"label": [f"sws.instance={b.instance}"]}
                )
            ),
            60,
            "cleanup",
        )
    return {
        "agent_median_s": statistics.median(through_agent),
        "direct_median_s": statistics.median(direct),
    }


def bench_noop(b: Bench, services: int, replicas: int, passes: int) -> dict[str, float]:
    names = [f"svc{i:03d}" for i in range(services)]
    b.apply(names, replicas)
    agent = Agent(b.config(interval=3600.0))
    assert agent.prepare()
    # Converge first (this creates the containers), then time passes that do nothing.
    converge_started = time.monotonic()
    while True:
        requeue = agent.run_pass()
        if requeue is None:
            break
        time.sleep(min(requeue, 0.2))
        if time.monotonic() - converge_started > 900:
            raise SystemExit("did not converge")
    converge = time.monotonic() - converge_started
    totals, snaps, observes, plans = [], [], [], []
    conn = psycopg.connect(b.url)
    for _ in range(passes):
        t0 = time.perf_counter()
        assert agent.run_pass() is None
        totals.append(time.perf_counter() - t0)
        # The parts, measured separately on the same state.
        t0 = time.perf_counter()
        snapshot = observed.read_snapshot(conn)
        snaps.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        containers = agent.observe()
        observes.append(time.perf_counter() - t0)
        desired = agent._desired(snapshot)
        world = World(
            now=time.time(),
            containers=tuple(containers),
            statuses=snapshot.statuses,
            replica_statuses=snapshot.replicas,
        )
        t0 = time.perf_counter()
        plan(desired, world, agent.settings)
        plans.append(time.perf_counter() - t0)
    conn.close()
    agent.stop()
    b.remove(names)
    # Let a real agent clean up what this world made.
    with agent_thread(b.config(interval=1.0)):
        wait_for(lambda: b.count_services() == 0, 600, "services removed")
    return {
        "converge_s": converge,
        "pass_ms": statistics.median(totals) * 1000,
        "snapshot_ms": statistics.median(snaps) * 1000,
        "observe_ms": statistics.median(observes) * 1000,
        "plan_ms": statistics.median(plans) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--real", type=int, default=40, help="services with a real container")
    parser.add_argument("--passes", type=int, default=20)
    parser.add_argument("--skip-apply", action="store_true")
    args = parser.parse_args()
    url = os.environ.get("SWS_BENCH_DATABASE_URL") or os.environ.get("SWS_TEST_DATABASE_URL")
    if not url:
        raise SystemExit("set SWS_BENCH_DATABASE_URL (a PostgreSQL superuser URL)")

    with Bench(url) as b:
        agent = Agent(b.config())
        agent.prepare()
        if not args.skip_apply:
            result = bench_apply(b, args.samples)
            ratio = result["agent_median_s"] / result["direct_median_s"]
            print(f"\napply -> ready, median of {args.samples}:")
            print("| path | median | ratio |")
            print("|---|---|---|")
            print(
                f"| direct Docker create+start+probe | {result['direct_median_s']:.3f} s | 1.00 |"
            )
            print(
                f"| through confdb + NOTIFY + agent | {result['agent_median_s']:.3f} s "
                f"| {ratio:.2f} |"
            )
        worlds = [(f"{args.services} services, replicas 0", args.services, 0)]
        if args.real:
            worlds.append((f"{args.real} services, 1 ready container each", args.real, 1))
        rows = []
        for label, count, replicas in worlds:
            rows.append((label, count, bench_noop(b, count, replicas, args.passes)))
        print(f"\nno-op pass, median of {args.passes}:")
        print("| world | pass | snapshot | observe | plan | per service | ratio |")
        print("|---|---|---|---|---|---|---|")
        base = rows[0][2]["pass_ms"] / rows[0][1]
        for label, count, r in rows:
            per = r["pass_ms"] / count
            print(
                f"| {label} | {r['pass_ms']:.1f} ms | {r['snapshot_ms']:.1f} ms "
                f"| {r['observe_ms']:.1f} ms | {r['plan_ms']:.1f} ms "
                f"| {per * 1000:.0f} us | {per / base:.2f} |"
            )
        for label, _, r in rows:
            print(f"(converging '{label}' took {r['converge_s']:.1f} s)")


if __name__ == "__main__":
    main()
