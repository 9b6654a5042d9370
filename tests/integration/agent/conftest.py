"""Fixtures for agent tests: a throwaway confdb, a unique instance and network, an agent thread.

Every test gets its own SWS instance name and services network, so nothing it creates can be
mistaken for another run's, and everything labelled with the instance is removed at the end.
Service rows are written with small SQL helpers here, standing in for the apiserver.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from agent.config import Config
from agent.reconciler import Agent
from confdb.migrate import migrate
from sws.route_table import RouteTable
from sws.spec import ServiceSpec
from tests.conftest import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.postgres]

IMAGE = "sws/testapp:latest"
IMAGE_V2 = "sws/testapp:v2"


@pytest.fixture(scope="session")
def testapp_images(docker_client: Any) -> None:
    import docker.errors

    for ref in (IMAGE, IMAGE_V2):
        try:
            docker_client.images.get(ref)
        except docker.errors.ImageNotFound:
            from tests.conftest import unavailable

            unavailable(f"image {ref} is not built (run docker/build)")


@dataclass
class Env:
    """One test's world: its confdb, its instance, and helpers over both."""

    url: str
    instance: str
    network: str
    docker: Any

    def config(self, **overrides: Any) -> Config:
        base = Config(
            database_url=self.url,
            instance=self.instance,
            network=self.network,
            interval=10.0,
            requeue=0.1,
            start_timeout=20.0,
            grace_period=0.5,
            stop_timeout=2.0,
            probe_timeout=0.3,
            backoff_initial=30.0,
        )
        return replace(base, **overrides)

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(query.encode() if not params else query, params or None)
            return list(cur.fetchall()) if cur.description else []

    def apply(self, name: str, **spec: Any) -> int:
        """Create or update service `name` as the apiserver would; return its generation."""
        document = {
            "apiVersion": "v1",
            "spec": {
                "name": name,
                "port": 8080,
                "domain": f"{name}.example.com",
                "image": IMAGE,
                **spec,
            },
        }
        parsed = ServiceSpec.from_document(document)
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO users (name, token_hash) VALUES ('tester', 'x') "
                "ON CONFLICT (name) DO NOTHING"
            )
            row = conn.execute(
                """
                INSERT INTO services (name, owner_id, domain, spec, spec_hash)
                VALUES (%s, (SELECT id FROM users WHERE name = 'tester'), %s, %s, %s)
                ON CONFLICT (name) DO UPDATE SET
                    spec = EXCLUDED.spec, spec_hash = EXCLUDED.spec_hash,
                    domain = EXCLUDED.domain, generation = services.generation + 1,
                    deleting = false, purge_volume = false, updated_at = now()
                RETURNING generation
                """,
                (name, parsed.domain, Jsonb(parsed.to_document()), parsed.spec_hash()),
            ).fetchone()
        assert row is not None
        return int(row[0])

    def delete(self, name: str, purge: bool = False) -> None:
        self.sql(
            "UPDATE services SET deleting = true, purge_volume = %s, "
            "generation = generation + 1 WHERE name = %s",
            (purge, name),
        )

    def status(self, name: str) -> tuple[str, str, int] | None:
        rows = self.sql(
            "SELECT state, message, observed_generation FROM service_status WHERE service = %s",
            (name,),
        )
        return (str(rows[0][0]), str(rows[0][1]), int(rows[0][2])) if rows else None

    def service_exists(self, name: str) -> bool:
        return bool(self.sql("SELECT 1 FROM services WHERE name = %s", (name,)))

    def events(self, name: str) -> list[tuple[str, str]]:
        rows = self.sql(
            "SELECT reason, message FROM events WHERE service = %s ORDER BY id", (name,)
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    def route_table(self) -> RouteTable | None:
        rows = self.sql("SELECT version, routes FROM route_tables ORDER BY version DESC LIMIT 1")
        if not rows:
            return None
        obj = dict(rows[0][1])
        obj["version"] = int(rows[0][0])
        return RouteTable.from_json_obj(obj)

    def backends(self, name: str) -> tuple[str, ...]:
        table = self.route_table()
        if table is None:
            return ()
        route = next((r for r in table.services if r.name == name), None)
        return route.backends if route is not None else ()

    def containers(self, service: str | None = None, all: bool = True) -> list[Any]:
        labels = [f"sws.instance={self.instance}"]
        if service is not None:
            labels.append(f"sws.service={service}")
        import docker.errors

        found = []
        for row in self.docker.api.containers(all=all, filters={"label": labels}):
            # Listed, then removed by the agent before we look closer: it is gone.
            with contextlib.suppress(docker.errors.NotFound):
                found.append(self.docker.containers.get(row["Id"]))
        return found

    def running(self, name: str, ready: int) -> bool:
        """The service runs with `ready` backends routed and its status says so."""
        st = self.status(name)
        return (
            st is not None
            and st[0] == "running"
            and len(self.backends(name)) == ready
            and len(self.containers(name)) == ready
        )


def get_json(backend: str, path: str = "/", timeout: float = 2.0) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{backend}{path}", timeout=timeout) as response:
        body: dict[str, Any] = json.loads(response.read())
    return body


def post(backend: str, path: str, body: bytes, timeout: float = 2.0) -> int:
    request = urllib.request.Request(f"http://{backend}{path}", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status)


@pytest.fixture
def env(make_database: Any, docker_client: Any, testapp_images: None) -> Iterator[Env]:
    url = make_database("sws_agent")
    with psycopg.connect(url) as conn:
        migrate(conn)
    tag = secrets.token_hex(4)
    e = Env(url=url, instance=f"t{tag}", network=f"sws-test-{tag}", docker=docker_client)
    try:
        yield e
    finally:
        cleanup(docker_client, e.instance, e.network)


def cleanup(client: Any, instance: str, network: str) -> None:
    """Remove everything labelled with the instance (containers, volumes) and the network."""
    label = {"label": [f"sws.instance={instance}"]}
    for c in client.containers.list(all=True, filters=label):
        with contextlib.suppress(Exception):
            c.remove(force=True)
    for v in client.volumes.list(filters=label):
        with contextlib.suppress(Exception):
            v.remove(force=True)
    for n in client.networks.list(names=[network]):
        with contextlib.suppress(Exception):
            n.remove()


@contextlib.contextmanager
def running_agent(config: Config) -> Iterator[Agent]:
    """Run an Agent in a thread; stop it and re-raise anything it raised."""
    agent = Agent(config)
    failure: list[BaseException] = []

    def target() -> None:
        try:
            agent.run()
        except BaseException as e:
            failure.append(e)

    thread = threading.Thread(target=target, name="agent-under-test", daemon=True)
    thread.start()
    try:
        wait_until(lambda: agent.leading.is_set() or failure, timeout=20, what="agent leading")
        if failure:
            raise failure[0]
        yield agent
    finally:
        agent.stop()
        thread.join(timeout=30)
        assert not thread.is_alive(), "agent did not stop"
    if failure:
        raise failure[0]
