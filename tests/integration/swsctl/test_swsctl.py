"""swsctl end to end against a gunicorn-served apiserver and a real confdb.

Where a command waits for the agent, the test plays the agent's part in confdb: it reports
status rows, or removes a deleted service, the way the agent does.
"""

from __future__ import annotations

import json
import secrets
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import yaml
from click.testing import Result

from tests.conftest import wait_until
from tests.integration.apiserver.live import LiveApi

pytestmark = pytest.mark.postgres

SECRET = "hunter2-env-value-91d"


def spec_yaml(name: str, *, replicas: int = 1, image: str = "registry.local/web:1") -> str:
    return f"""\
apiVersion: v1
spec:
  name: {name}
  port: 8081
  domain: {name}.example.com
  image: {image}
  replicas: {replicas}
  env:
    - name: PASSWORD
      value: {SECRET}
"""


def unique(prefix: str = "web") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@pytest.fixture
def user_token(live_api: LiveApi) -> str:
    return live_api.create_user(unique("user"))


@pytest.fixture
def configured(
    live_api: LiveApi, user_token: str, swsctl: Callable[..., Result]
) -> Callable[..., Result]:
    result = swsctl("configure", "--host", live_api.url, "--token", user_token)
    assert result.exit_code == 0, result.output
    return swsctl


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


class FakeAgent:
    """Reports on services in confdb the way the agent would."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def report(self, name: str, state: str, ready: int, message: str = "") -> None:
        with psycopg.connect(self.database_url) as conn:
            conn.execute(
                """
                INSERT INTO service_status (service, observed_generation, state, message, ready_replicas, updated_at)
                SELECT name, generation, %s, %s, %s, now() FROM services WHERE name = %s
                ON CONFLICT (service) DO UPDATE SET observed_generation = EXCLUDED.observed_generation,
                    state = EXCLUDED.state, message = EXCLUDED.message,
                    ready_replicas = EXCLUDED.ready_replicas, updated_at = now()
                """,
                (state, message, ready, name),
            )

    def remove_when_deleting(self, name: str) -> None:
        def deleting() -> bool:
            with psycopg.connect(self.database_url) as conn:
                row = conn.execute(
                    "SELECT deleting FROM services WHERE name = %s", (name,)
                ).fetchone()
                return bool(row and row[0])

        wait_until(deleting, timeout=20, what=f"{name} marked deleting")
        with psycopg.connect(self.database_url) as conn:
            conn.execute("DELETE FROM services WHERE name = %s", (name,))


@pytest.fixture
def agent(live_api: LiveApi) -> FakeAgent:
    return FakeAgent(live_api.database_url)


@pytest.fixture
def in_background() -> Iterator[Callable[[Callable[[], None]], None]]:
    threads: list[threading.Thread] = []
    errors: list[BaseException] = []

    def start(fn: Callable[[], None]) -> None:
        def run() -> None:
            try:
                fn()
            except BaseException as e:  # surfaced in the test below
                errors.append(e)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        threads.append(t)

    yield start
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors


# -- configure -----------------------------------------------------------------------------------


def test_configure_checks_and_saves_privately(
    live_api: LiveApi, user_token: str, swsctl: Callable[..., Result], xdg: Path
) -> None:
    result = swsctl(
        "configure",
        "--host",
        live_api.url + "/",
        "--token",
        user_token,
        "--api-domain",
        "api.sws.localhost",
    )
    assert result.exit_code == 0, result.output
    path = xdg / "sws" / "config.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert yaml.safe_load(path.read_text()) == {
        "host": live_api.url,
        "token": user_token,
        "apiDomain": "api.sws.localhost",
    }
    # The saved settings are used (the API ignores Host, so the api domain does no harm here).
    assert swsctl("ls").exit_code == 0


def test_configure_prompts_when_not_given(
    live_api: LiveApi, user_token: str, swsctl: Callable[..., Result], xdg: Path
) -> None:
    result = swsctl("configure", input=f"{live_api.url}\n{user_token}\n\n")
    assert result.exit_code == 0, result.output
    assert user_token not in result.output  # typed hidden
    assert yaml.safe_load((xdg / "sws" / "config.yaml").read_text())["host"] == live_api.url


def test_configure_refuses_a_bad_token_and_saves_nothing(
    live_api: LiveApi, swsctl: Callable[..., Result], xdg: Path
) -> None:
    result = swsctl("configure", "--host", live_api.url, "--token", "wrong")
    assert result.exit_code == 1
    assert (
        result.stderr.strip()
        == f"error: the API at {live_api.url} rejected the token; run `swsctl configure`"
    )
    assert not (xdg / "sws" / "config.yaml").exists()


def test_env_overrides_the_saved_settings(
    live_api: LiveApi, configured: Callable[..., Result]
) -> None:
    result = configured("ls", env={"SWS_TOKEN": "wrong"})
    assert result.exit_code == 1
    assert "rejected the token; run `swsctl configure`" in result.stderr
    result = configured("ls", env={"SWS_HOST": "http://127.0.0.1:9"})
    assert result.exit_code == 1
    assert (
        result.stderr.strip()
        == "error: cannot reach the API at http://127.0.0.1:9: Connection refused"
    )


# -- apply, ls, status, delete -------------------------------------------------------------------


def test_apply_created_updated_unchanged(configured: Callable[..., Result], tmp_path: Path) -> None:
    a, b = unique(), unique()
    both = write(tmp_path, "both.yaml", spec_yaml(a) + "---\n" + spec_yaml(b))
    result = configured("apply", str(both))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"{a} created", f"{b} created"]

    write(tmp_path, "both.yaml", spec_yaml(a, replicas=2) + "---\n" + spec_yaml(b))
    result = configured("apply", str(both))
    assert result.stdout.splitlines() == [f"{a} updated", f"{b} unchanged"]

    as_json = write(tmp_path, "b.json", json.dumps(yaml.safe_load(spec_yaml(b))))
    assert configured("apply", str(as_json)).stdout.strip() == f"{b} unchanged"
    assert configured("apply", "-", input=spec_yaml(b)).stdout.strip() == f"{b} unchanged"


def test_invalid_file_applies_nothing(configured: Callable[..., Result], tmp_path: Path) -> None:
    good_name = unique()
    good = write(tmp_path, "good.yaml", spec_yaml(good_name))
    bad = write(
        tmp_path,
        "bad.yaml",
        spec_yaml(unique()).replace(f"      value: {SECRET}\n", "      bar: bar\n"),
    )
    result = configured("apply", str(good), str(bad))
    assert result.exit_code == 1
    assert f"{bad}: spec.env[0]: unknown key 'bar'" in result.stderr
    assert f"{bad}: spec.env[0]: missing 'value'" in result.stderr
    assert result.stderr.strip().endswith("error: 2 errors in 1 file; nothing applied")
    assert good_name not in configured("ls").stdout


def test_server_refusals_print_message_and_continue(
    live_api: LiveApi,
    configured: Callable[..., Result],
    swsctl: Callable[..., Result],
    tmp_path: Path,
) -> None:
    taken = unique()
    other_token = live_api.create_user(unique("other"))
    swsctl("--host", live_api.url, "--token", other_token, "apply", "-", input=spec_yaml(taken))
    mine = unique()
    files = [
        write(tmp_path, "taken.yaml", spec_yaml(taken)),
        write(tmp_path, "mine.yaml", spec_yaml(mine)),
    ]
    result = configured("apply", *map(str, files))
    assert result.exit_code == 1
    assert (
        f'error: {taken}: service name "{taken}" is already taken by another user' in result.stderr
    )
    assert result.stdout.strip() == f"{mine} created"


def test_ls_in_every_format(configured: Callable[..., Result], tmp_path: Path) -> None:
    name = unique()
    configured("apply", str(write(tmp_path, "s.yaml", spec_yaml(name, replicas=2))))

    table = configured("ls")
    assert table.exit_code == 0
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["NAME", "DOMAIN", "IMAGE", "READY", "STATUS", "AGE"]
    row = next(r.split() for r in rows if r.startswith(name))
    assert row[:5] == [name, f"{name}.example.com", "registry.local/web:1", "0/2", "pending"]

    listed = json.loads(configured("ls", "-o", "json").stdout)
    assert [s["name"] for s in listed] == [name]
    assert yaml.safe_load(configured("ls", "-o", "yaml").stdout) == listed
    assert SECRET not in table.stdout + json.dumps(listed)


def test_ls_all_is_for_admins(
    live_api: LiveApi, configured: Callable[..., Result], swsctl: Callable[..., Result]
) -> None:
    result = configured("ls", "--all")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: listing every user's services")
    admin = live_api.create_user(unique("admin"), admin=True)
    result = swsctl("--host", live_api.url, "--token", admin, "ls", "--all")
    assert result.exit_code == 0
    assert result.stdout.split()[:2] == ["NAME", "OWNER"]


def test_status_shows_spec_replicas_and_events(
    live_api: LiveApi, configured: Callable[..., Result], agent: FakeAgent, tmp_path: Path
) -> None:
    name = unique()
    configured("apply", str(write(tmp_path, "s.yaml", spec_yaml(name))))
    agent.report(name, "running", 1)
    with psycopg.connect(live_api.database_url) as conn:
        conn.execute(
            "INSERT INTO replica_status (service, container_id, container_name, replica, generation, address, ready, state) "
            "VALUES (%s, 'abc123', %s, 0, 1, '172.20.0.5:8081', true, 'running')",
            (name, f"{name}-0"),
        )
        conn.execute(
            "INSERT INTO events (service, reason, message) VALUES (%s, 'Started', 'container started')",
            (name,),
        )
    result = configured("status", name)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert f"Domain:     {name}.example.com" in text
    assert "Replicas:   1/1 ready" in text
    assert "State:      running" in text
    assert "Env:        PASSWORD" in text
    assert SECRET not in text
    assert f"{name}-0   172.20.0.5:8081   yes" in text
    assert "Started" in text and "container started" in text

    body = json.loads(configured("status", name, "-o", "json").stdout)
    assert body["instances"][0]["address"] == "172.20.0.5:8081"
    assert body["spec"]["spec"]["env"] == [{"name": "PASSWORD", "value": SECRET}]
    assert yaml.safe_load(configured("status", name, "-o", "yaml").stdout) == body


def test_status_of_a_missing_service(configured: Callable[..., Result]) -> None:
    result = configured("status", "no-such-service")
    assert result.exit_code == 1
    assert result.stderr.strip() == 'error: service "no-such-service" not found'


def test_delete_and_wait_until_gone(
    configured: Callable[..., Result],
    agent: FakeAgent,
    in_background: Callable[[Callable[[], None]], None],
    tmp_path: Path,
) -> None:
    name = unique()
    configured("apply", str(write(tmp_path, "s.yaml", spec_yaml(name))))
    in_background(lambda: agent.remove_when_deleting(name))
    result = configured("delete", name, "--wait", "--timeout", "30")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{name} deleting"
    assert f"{name}: deleted" in result.stderr
    assert configured("status", name).exit_code == 1


def test_delete_missing_is_an_error(configured: Callable[..., Result], tmp_path: Path) -> None:
    name = unique()
    configured("apply", str(write(tmp_path, "s.yaml", spec_yaml(name))))
    result = configured("delete", name, "no-such-service", "--purge")
    assert result.exit_code == 1
    assert result.stdout.strip() == f"{name} deleting (volume too)"
    assert 'error: service "no-such-service" not found' in result.stderr


# -- apply --wait ----------------------------------------------------------------------------------


def test_apply_wait_succeeds_once_running_at_the_new_generation(
    configured: Callable[..., Result],
    agent: FakeAgent,
    in_background: Callable[[Callable[[], None]], None],
    tmp_path: Path,
) -> None:
    name = unique()
    path = write(tmp_path, "s.yaml", spec_yaml(name, replicas=2))
    configured("apply", str(path))
    agent.report(name, "running", 2)  # generation 1 is running
    write(tmp_path, "s.yaml", spec_yaml(name, replicas=2, image="registry.local/web:2"))

    def roll_out() -> None:
        # Report the new generation only after swsctl has seen the old state, so it must wait.
        wait_until(lambda: agent_generation(agent, name) == 2, timeout=20, what="generation 2")
        agent.report(name, "starting", 1, "1 of 2 ready")
        agent.report(name, "running", 2)

    in_background(roll_out)
    result = configured("apply", str(path), "--wait", "--timeout", "30")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{name} updated"
    assert f"{name}: ready 2/2, running" in result.stderr


def test_apply_wait_fails_when_the_agent_reports_failing(
    configured: Callable[..., Result], agent: FakeAgent, tmp_path: Path
) -> None:
    name = unique()
    path = write(tmp_path, "s.yaml", spec_yaml(name))
    configured("apply", str(path))
    agent.report(name, "failing", 0, "image registry.local/web:1 not found")
    result = configured("apply", str(path), "--wait", "--timeout", "30")
    assert result.exit_code == 1
    assert (
        f'error: service "{name}" is failing: image registry.local/web:1 not found' in result.stderr
    )


def test_apply_wait_times_out(configured: Callable[..., Result], tmp_path: Path) -> None:
    name = unique()
    result = configured(
        "apply", str(write(tmp_path, "s.yaml", spec_yaml(name))), "--wait", "--timeout", "1"
    )
    assert result.exit_code == 1
    assert f'error: service "{name}" did not become ready within 1s' in result.stderr
    assert f"{name}: ready 0/1, pending (waiting for the agent)" in result.stderr


def agent_generation(agent: FakeAgent, name: str) -> int:
    with psycopg.connect(agent.database_url) as conn:
        row = conn.execute("SELECT generation FROM services WHERE name = %s", (name,)).fetchone()
        return int(row[0]) if row else 0


# -- platform and logs -----------------------------------------------------------------------------


def test_platform_for_admins_only(
    live_api: LiveApi, configured: Callable[..., Result], swsctl: Callable[..., Result]
) -> None:
    with psycopg.connect(live_api.database_url) as conn:
        conn.execute(
            "INSERT INTO route_tables (version, routes) VALUES (3, '{}') ON CONFLICT DO NOTHING"
        )
        conn.execute(
            "INSERT INTO proxies (name, route_version, state) VALUES ('proxy-1', 3, 'serving'), "
            "('proxy-2', 3, 'serving') ON CONFLICT (name) DO NOTHING"
        )
    denied = configured("platform")
    assert denied.exit_code == 1
    assert denied.stderr.strip() == "error: the platform view is for admins only"
    admin = live_api.create_user(unique("admin"), admin=True)
    result = swsctl("--host", live_api.url, "--token", admin, "platform")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "Route version: 3"
    assert lines[1].split()[:4] == ["PROXY", "ROUTE", "VERSION", "STATE"]
    assert lines[2].split()[:3] == ["proxy-1", "3", "serving"]


def test_server_logs_hold_no_tokens_or_env_values(
    live_api: LiveApi, configured: Callable[..., Result], user_token: str, tmp_path: Path
) -> None:
    name = unique()
    configured("apply", str(write(tmp_path, "s.yaml", spec_yaml(name))))
    configured("status", name)
    configured("ls", env={"SWS_TOKEN": user_token + "x"})
    text = live_api.log.read_text()
    assert f"service.applied name={name}" in text
    assert 'http.request remote=127.0.0.1 method=PUT path="/v1/services/' in text
    assert SECRET not in text
    assert user_token not in text
