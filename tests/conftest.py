"""Fixtures for the real systems SWS integrates with: PostgreSQL and the Docker Engine.

PostgreSQL comes from, in order: `SWS_TEST_DATABASE_URL` (a server the caller runs; each test
session gets throwaway databases on it), or a container of the project's own confdb image
(`sws/confdb`, built by docker/build) started through testcontainers. When neither is there,
tests that need it skip, saying how to get it; with `SWS_TEST_STRICT=1` (as in CI) they fail
instead, so nothing skips silently where everything is meant to run.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator

import pytest

# No registry is reachable here, so testcontainers must not start its reaper container
# (it would try to pull it); every fixture removes what it starts.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

CONFDB_IMAGE = os.environ.get("SWS_CONFDB_IMAGE", "sws/confdb:latest")
STRICT = os.environ.get("SWS_TEST_STRICT") == "1"


def unavailable(reason: str) -> None:
    """Skip, or fail in strict mode, because a real component is absent."""
    if STRICT:
        pytest.fail(f"{reason} (SWS_TEST_STRICT=1: nothing may skip)", pytrace=False)
    pytest.skip(reason)


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll `predicate` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:
            last_error = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}") from last_error
        time.sleep(interval)


@pytest.fixture(scope="session")
def docker_client():  # type: ignore[no-untyped-def]
    """A client of the real Docker Engine."""
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as e:
        unavailable(f"no Docker Engine: {e}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def postgres_server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a real PostgreSQL server's maintenance database, as a superuser."""
    url = os.environ.get("SWS_TEST_DATABASE_URL")
    if url:
        yield url
        return
    client = request.getfixturevalue("docker_client")
    import docker.errors

    try:
        client.images.get(CONFDB_IMAGE)
    except docker.errors.ImageNotFound:
        unavailable(
            f"no PostgreSQL: image {CONFDB_IMAGE} is not built (run docker/build) "
            "and SWS_TEST_DATABASE_URL is not set"
        )
    from testcontainers.core.container import DockerContainer

    password = secrets.token_hex(12)
    container = (
        DockerContainer(CONFDB_IMAGE)
        .with_env("POSTGRES_USER", "sws")
        .with_env("POSTGRES_PASSWORD", password)
        .with_env("POSTGRES_DB", "postgres")
        .with_exposed_ports(5432)
        .with_command("postgres -c max_connections=300 -c fsync=off")
    )
    container.start()
    try:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(5432)
        url = f"postgresql://sws:{password}@{host}:{port}/postgres"

        import psycopg

        def ready() -> bool:
            with psycopg.connect(url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True

        wait_until(ready, timeout=60, interval=0.2, what=f"PostgreSQL in {CONFDB_IMAGE}")
        yield url
    finally:
        container.stop()


def _database_url(server_url: str, dbname: str) -> str:
    import psycopg

    info = psycopg.conninfo.conninfo_to_dict(server_url)
    info["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items() if v is not None})


@pytest.fixture(scope="session")
def make_database(postgres_server_url: str):  # type: ignore[no-untyped-def]
    """A factory of empty throwaway databases, dropped at the end of the session."""
    import psycopg

    created: list[str] = []

    def make(prefix: str = "sws_test") -> str:
        name = f"{prefix}_{secrets.token_hex(6)}"
        with psycopg.connect(postgres_server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        created.append(name)
        return _database_url(postgres_server_url, name)

    yield make
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


@pytest.fixture(scope="session")
def database_url(make_database) -> str:  # type: ignore[no-untyped-def]
    """One migrated throwaway database for the whole test session."""
    import psycopg

    from confdb.migrate import migrate

    url: str = make_database()
    with psycopg.connect(url) as conn:
        migrate(conn)
    return url
