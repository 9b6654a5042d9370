"""sws-apiserver's commands: create-user, migrate, and serve waiting for confdb at start."""

from __future__ import annotations

import logging
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import requests
from click.testing import CliRunner
from flask.testing import FlaskClient

from apiserver.cli import main
from confdb.users import hash_token
from tests.conftest import wait_until
from tests.integration.apiserver.conftest import Caller, document, unique
from tests.integration.apiserver.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """The commands set up process-wide logging; give the other tests theirs back."""
    saved = {}
    for name in ("sws.apiserver", "psycopg.pool"):
        log = logging.getLogger(name)
        saved[name] = (list(log.handlers), log.level, log.propagate)
    yield
    for name, (handlers, level, propagate) in saved.items():
        log = logging.getLogger(name)
        log.handlers[:] = handlers
        log.setLevel(level)
        log.propagate = propagate


def run(database_url: str, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args), env={"SWS_DATABASE_URL": database_url})


def stored(database_url: str, name: str) -> tuple[str, bool] | None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT token_hash, is_admin FROM users WHERE name = %s", (name,)
        ).fetchone()
    return None if row is None else (row[0], row[1])


def test_create_user_prints_the_token_once_and_stores_its_hash(database_url: str) -> None:
    name = unique("user")
    result = run(database_url, "create-user", name, "--admin")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert len(token) >= 43
    assert stored(database_url, name) == (hash_token(token), True)
    assert token not in result.stderr

    again = run(database_url, "create-user", name)
    assert again.exit_code == 1
    assert again.stderr.strip().endswith(f'error: user "{name}" already exists')
    assert stored(database_url, name) == (hash_token(token), True)


def test_create_user_if_missing_is_quiet_and_changes_nothing(database_url: str) -> None:
    name = unique("user")
    token = run(database_url, "create-user", name).stdout.strip()
    result = run(database_url, "create-user", name, "--if-missing", "--admin")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert stored(database_url, name) == (hash_token(token), False)


def test_create_user_token_file_is_private(database_url: str, tmp_path: Path) -> None:
    name = unique("user")
    path = tmp_path / "token"
    path.write_text("old")
    path.chmod(0o644)
    result = run(database_url, "create-user", name, "--token-file", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stored(database_url, name) == (hash_token(path.read_text().strip()), False)

    # A token that cannot be saved makes no user.
    other = unique("user")
    unwritable = tmp_path / "missing-dir" / "token"
    failed = run(database_url, "create-user", other, "--token-file", str(unwritable))
    assert failed.exit_code == 1
    assert "No such file or directory; nothing was changed" in failed.stderr
    assert stored(database_url, other) is None


def test_create_user_refuses_awkward_names(database_url: str) -> None:
    result = run(database_url, "create-user", "Bad Name")
    assert result.exit_code == 1
    assert 'user name "Bad Name" is not valid' in result.stderr


def test_rotate_token_replaces_the_old_one_and_keeps_the_services(
    database_url: str, client: FlaskClient, alice: Caller
) -> None:
    name = unique("web")
    put = client.put(f"/v1/services/{name}", json=document(name), headers=alice.headers)
    assert put.status_code in (200, 201), put.json

    result = run(database_url, "rotate-token", alice.name)
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert len(token) >= 43 and token != alice.token
    assert stored(database_url, alice.name) == (hash_token(token), False)
    assert token not in result.stderr and alice.token not in result.stderr
    assert f"user.token_rotated name={alice.name}" in result.stderr

    old = client.get("/v1/services", headers=alice.headers)
    assert old.status_code == 401
    new = client.get("/v1/services", headers={"Authorization": f"Bearer {token}"})
    assert new.status_code == 200
    assert [s["name"] for s in new.json["services"]] == [name]


def test_rotate_token_of_no_user_changes_nothing(database_url: str) -> None:
    name = unique("user")
    result = run(database_url, "rotate-token", name)
    assert result.exit_code == 1
    assert result.stderr.strip().endswith(f'error: no user "{name}"')
    assert result.stdout == ""
    assert stored(database_url, name) is None


def test_rotate_token_file_is_private_and_written_first(
    database_url: str, tmp_path: Path, alice: Caller
) -> None:
    path = tmp_path / "token"
    result = run(database_url, "rotate-token", alice.name, "--token-file", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stored(database_url, alice.name) == (hash_token(path.read_text().strip()), False)

    # A token that cannot be saved is not put in force: the one in the file still works.
    held = path.read_text().strip()
    unwritable = tmp_path / "missing-dir" / "token"
    failed = run(database_url, "rotate-token", alice.name, "--token-file", str(unwritable))
    assert failed.exit_code == 1
    assert failed.stderr.strip() == (
        f"error: --token-file {unwritable}: No such file or directory; nothing was changed"
    )
    assert stored(database_url, alice.name) == (hash_token(held), False)


def test_migrate_applies_then_finds_nothing_to_do(make_database: Callable[..., str]) -> None:
    url = make_database("sws_migrate")
    first = run(url, "migrate")
    assert first.exit_code == 0, first.output
    assert "001_initial" in first.stdout
    second = run(url, "migrate")
    assert second.stdout.strip() == "applied 0 migration(s)"


def test_serve_waits_for_confdb_then_serves(
    make_database: Callable[..., str], tmp_path: Path
) -> None:
    url = make_database("sws_serve")
    info = psycopg.conninfo.conninfo_to_dict(url)
    relay = TcpProxy(str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432))
    relay.cut()
    info.update(host="127.0.0.1", port=str(relay.port))
    relayed = psycopg.conninfo.make_conninfo(
        **{k: str(v) for k, v in info.items() if v is not None}
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "apiserver.log"
    env = {
        **os.environ,
        "SWS_DATABASE_URL": relayed,
        "SWS_LISTEN": f"127.0.0.1:{port}",
        "SWS_WORKERS": "1",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "apiserver", "serve"],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: "confdb.waiting" in log.read_text(), timeout=30, what="a confdb.waiting line"
        )
        assert process.poll() is None
        relay.restore()
        wait_until(
            lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200,
            timeout=60,
            what="/healthz after confdb came back",
        )
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] >= 1  # type: ignore[index]
    finally:
        process.terminate()
        process.wait(20)
        relay.close()
    text = log.read_text()
    assert "confdb.migrated migration=001_initial" in text
    assert info.get("password") is None or str(info["password"]) not in text
