"""The images docker/build makes, run on the real Docker Engine.

Each test starts its own containers on the default bridge and talks to them at their bridge
address; every container and volume it makes is removed by the fixtures, pass or fail.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import unavailable, wait_until

pytestmark = pytest.mark.docker

TESTAPP = "sws/testapp:latest"
TESTAPP_V2 = "sws/testapp:v2"
CONFDB = "sws/confdb:latest"
PLATFORM = "sws/platform:latest"
LABELS = {"org.sws.test": "test_images"}

Run = Callable[..., Any]


def require_image(client: Any, ref: str) -> None:
    import docker.errors

    try:
        client.images.get(ref)
    except docker.errors.ImageNotFound:
        unavailable(f"image {ref} is not built (run docker/build)")


@pytest.fixture
def run(docker_client: Any) -> Iterator[Run]:
    """Start a detached container of an image; all of them are removed at teardown."""
    import docker.errors

    started: list[Any] = []

    def start(image: str, **kwargs: Any) -> Any:
        require_image(docker_client, image)
        container = docker_client.containers.run(image, detach=True, labels=LABELS, **kwargs)
        started.append(container)
        return container

    yield start
    for container in started:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True, v=True)


@pytest.fixture
def volume(docker_client: Any) -> Iterator[str]:
    """A named volume, removed at teardown (after the containers that use it)."""
    import docker.errors

    vol = docker_client.volumes.create(f"sws-test-{secrets.token_hex(4)}", labels=LABELS)
    yield vol.name
    # Fixtures tear down in reverse order, so containers using it may still exist.
    for container in docker_client.containers.list(all=True, filters={"volume": vol.name}):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True, v=True)
    with contextlib.suppress(docker.errors.NotFound):
        vol.remove(force=True)


def address(container: Any) -> str:
    container.reload()
    ip: str = container.attrs["NetworkSettings"]["IPAddress"]
    assert ip, f"container {container.short_id} has no bridge address"
    return ip


def get(
    host: str, path: str, port: int = 8080, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_http(host: str, port: int = 8080, timeout: float = 30) -> None:
    wait_until(
        lambda: get(host, "/healthz", port)[0] == 200,
        timeout=timeout,
        interval=0.05,
        what=f"testapp at {host}:{port}",
    )


def started_testapp(run: Run, image: str = TESTAPP, **kwargs: Any) -> str:
    container = run(image, **kwargs)
    host = address(container)
    wait_http(host, int(kwargs.get("environment", {}).get("PORT", 8080)))
    return host


# --- testapp ---------------------------------------------------------------------------------


def test_testapp_reports_hostname_version_headers_and_env(run: Run) -> None:
    host = started_testapp(run, hostname="app-one", environment={"GREETING": "hello"})
    status, body = get(host, "/some/path?x=1", headers={"X-Probe": "p1"})
    assert status == 200
    doc = json.loads(body)
    assert doc["hostname"] == "app-one"
    assert doc["version"] == "v1"
    assert doc["path"] == "/some/path"
    assert doc["query"] == {"x": "1"}
    assert doc["headers"]["X-Probe"] == "p1"
    assert doc["env"]["GREETING"] == "hello"
    assert doc["volume"] == {}


def test_testapp_v2_reports_its_version_on_another_port(run: Run) -> None:
    host = started_testapp(run, TESTAPP_V2, environment={"PORT": "9090"})
    status, body = get(host, "/", port=9090)
    assert status == 200
    assert json.loads(body)["version"] == "v2"


def test_testapp_keeps_connections_alive_and_serves_concurrently(run: Run) -> None:
    host = started_testapp(run)
    conn = http.client.HTTPConnection(host, 8080, timeout=10)
    try:
        peers = []
        for _ in range(3):
            conn.request("GET", "/")
            resp = conn.getresponse()
            assert resp.status == 200
            peers.append(json.loads(resp.read())["peer"])
        # The same client port each time: one connection carried all three.
        assert len(set(peers)) == 1
    finally:
        conn.close()

    results: list[int] = []

    def slow() -> None:
        results.append(get(host, "/slow?seconds=2")[0])

    threads = [threading.Thread(target=slow) for _ in range(5)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    elapsed = time.monotonic() - began
    assert results == [200] * 5
    # Served one after another these would take 10 s.
    assert elapsed < 6, f"5 concurrent 2 s requests took {elapsed:.1f}s"


def test_testapp_answers_pipelined_requests_in_order(run: Run) -> None:
    host = started_testapp(run)
    with socket.create_connection((host, 8080), timeout=10) as sock:
        sock.sendall(
            b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nsecond"
            b"GET /third HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert data.index(b'"path": "/first"') < data.index(b"\r\n\r\nsecond")
    assert data.index(b"\r\n\r\nsecond") < data.index(b'"path": "/third"')


def test_testapp_sse_events_arrive_one_by_one(run: Run) -> None:
    host = started_testapp(run)
    conn = http.client.HTTPConnection(host, 8080, timeout=10)
    try:
        conn.request("GET", "/sse?count=3&interval=1")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type") == "text/event-stream"
        arrivals: list[float] = []
        events: list[dict[str, Any]] = []
        while True:
            line = resp.readline()
            if not line:
                break
            if line.startswith(b"data: "):
                arrivals.append(time.monotonic())
                events.append(json.loads(line[6:]))
    finally:
        conn.close()
    assert [e["n"] for e in events] == [0, 1, 2]
    # Buffered until the end, all three would arrive together.
    assert arrivals[1] - arrivals[0] > 0.5
    assert arrivals[2] - arrivals[1] > 0.5


def test_testapp_websocket_echoes_text_binary_and_fragments(run: Run) -> None:
    from websockets.sync.client import connect

    host = started_testapp(run)
    with connect(f"ws://{host}:8080/ws", open_timeout=10) as ws:
        ws.send("héllo")
        assert ws.recv(timeout=10) == "héllo"
        blob = os.urandom(200_000)
        ws.send(blob)
        assert ws.recv(timeout=10) == blob
        ws.send(["frag", "mented"])
        assert ws.recv(timeout=10) == "fragmented"
        ws.ping().wait(timeout=10)
        ws.close(code=1000, reason="done")
    assert ws.close_code == 1000


def test_testapp_websocket_closes_on_an_unmasked_frame(run: Run) -> None:
    host = started_testapp(run)
    with socket.create_connection((host, 8080), timeout=10) as sock:
        key = base64.b64encode(os.urandom(16))
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101 ")
        # RFC 6455 5.1: a client frame without a mask is a protocol error.
        sock.sendall(b"\x81\x02hi")
        frame = sock.recv(1024)
    assert frame[0] == 0x88
    assert struct.unpack("!H", frame[2:4])[0] == 1002


def test_testapp_echoes_bodies_of_known_and_chunked_length(run: Run) -> None:
    host = started_testapp(run)
    payload = os.urandom(1_000_000)
    conn = http.client.HTTPConnection(host, 8080, timeout=10)
    try:
        conn.request("POST", "/echo", body=payload, headers={"Content-Type": "application/x-a"})
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type") == "application/x-a"
        assert resp.read() == payload

        pieces = [b"one,", b"two,", b"three"]
        conn.request("POST", "/echo", body=iter(pieces), encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Transfer-Encoding") == "chunked"
        assert resp.read() == b"one,two,three"
    finally:
        conn.close()


def test_testapp_writes_into_its_volume(run: Run, volume: str) -> None:
    host = started_testapp(run, volumes={volume: {"bind": "/data", "mode": "rw"}})
    conn = http.client.HTTPConnection(host, 8080, timeout=10)
    try:
        conn.request("POST", "/write?name=note.txt", body=b"kept in the volume")
        resp = conn.getresponse()
        assert resp.status == 201, resp.read()
        assert json.loads(resp.read()) == {"written": "note.txt", "bytes": 18}

        conn.request("POST", "/write?name=..", body=b"x")
        resp = conn.getresponse()
        assert resp.status == 400
        assert b"not a plain file name" in resp.read()
    finally:
        conn.close()
    _, body = get(host, "/")
    assert json.loads(body)["volume"] == {"note.txt": "kept in the volume"}


def test_testapp_fail_at_start_exits_with_that_code(run: Run) -> None:
    container = run(TESTAPP, environment={"FAIL_AT_START": "3"})
    result = container.wait(timeout=30)
    assert result["StatusCode"] == 3
    assert b"failing at start" in container.logs(stdout=False, stderr=True)


def test_testapp_startup_delay_holds_back_listening(run: Run) -> None:
    began = time.monotonic()
    container = run(TESTAPP, environment={"STARTUP_DELAY": "3"})
    host = address(container)
    wait_http(host, timeout=30)
    assert time.monotonic() - began >= 3
    assert container.attrs["State"]["Running"]


def test_testapp_stops_promptly_on_sigterm(run: Run) -> None:
    container = run(TESTAPP)
    wait_http(address(container))
    began = time.monotonic()
    container.stop(timeout=10)
    elapsed = time.monotonic() - began
    container.reload()
    # PID 1 ignores SIGTERM unless it handles it; a killed app would take the full 10 s.
    assert elapsed < 5, f"docker stop took {elapsed:.1f}s"
    assert container.attrs["State"]["ExitCode"] == 0


# --- confdb ----------------------------------------------------------------------------------


def connect_when_ready(host: str, password: str, timeout: float = 60) -> Any:
    import psycopg

    def attempt() -> Any:
        return psycopg.connect(
            host=host, user="sws", password=password, dbname="swsconf", connect_timeout=3
        )

    return wait_until(attempt, timeout=timeout, interval=0.2, what=f"confdb at {host}")


def confdb_env(password: str) -> dict[str, str]:
    return {"POSTGRES_PASSWORD": password, "POSTGRES_USER": "sws", "POSTGRES_DB": "swsconf"}


def test_confdb_accepts_the_password_and_rejects_others(run: Run) -> None:
    import psycopg

    password = secrets.token_urlsafe(16)
    container = run(CONFDB, environment=confdb_env(password))
    host = address(container)
    with connect_when_ready(host, password) as conn:
        row = conn.execute("SELECT current_user, current_database(), version()").fetchone()
    assert row[0] == "sws"
    assert row[1] == "swsconf"
    assert row[2].startswith("PostgreSQL 15.")

    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host=host, user="sws", password="wrong", dbname="swsconf").close()

    def healthy() -> bool:
        container.reload()
        return bool(container.attrs["State"]["Health"]["Status"] == "healthy")

    wait_until(healthy, timeout=30, interval=0.2, what="confdb health check")
    assert password.encode() not in container.logs()


def test_confdb_keeps_its_data_across_a_restart(run: Run, volume: str) -> None:
    password = secrets.token_urlsafe(16)
    container = run(
        CONFDB,
        environment=confdb_env(password),
        volumes={volume: {"bind": "/var/lib/postgresql/data", "mode": "rw"}},
    )
    host = address(container)
    with connect_when_ready(host, password) as conn:
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('still here')")
        conn.commit()

    container.stop(timeout=30)
    container.reload()
    # STOPSIGNAL SIGINT: a fast shutdown, which ends cleanly with status 0.
    assert container.attrs["State"]["ExitCode"] == 0
    container.start()
    host = address(container)
    with connect_when_ready(host, password) as conn:
        assert conn.execute("SELECT v FROM kept").fetchall() == [("still here",)]
    assert container.logs().count(b"initdb pgdata=") == 1


def test_confdb_refuses_to_start_without_a_password(run: Run) -> None:
    container = run(CONFDB, environment={"POSTGRES_USER": "sws"})
    result = container.wait(timeout=60)
    assert result["StatusCode"] != 0
    assert b"POSTGRES_PASSWORD is not set" in container.logs(stdout=False, stderr=True)


# --- platform --------------------------------------------------------------------------------

CONSOLE_SCRIPTS = ("swsctl", "sws-apiserver", "sws-agent", "sws-proxy", "sws-loadbalancer")
PACKAGES = ("sws", "confdb", "swsctl", "apiserver", "agent", "proxy", "loadbalancer")


def run_to_end(run: Run, image: str, command: list[str]) -> tuple[int, str]:
    container = run(image, command=command)
    status = int(container.wait(timeout=60)["StatusCode"])
    return status, container.logs().decode()


def test_platform_has_the_console_scripts_and_packages(run: Run) -> None:
    status, out = run_to_end(
        run,
        PLATFORM,
        ["sh", "-c", 'for s in "$@"; do command -v "$s" || exit 1; done', "sh", *CONSOLE_SCRIPTS],
    )
    assert status == 0, out
    found = out.split()
    assert [os.path.basename(p) for p in found] == list(CONSOLE_SCRIPTS)

    imports = "; ".join(f"import {p}" for p in PACKAGES) + "; import psycopg, uvloop, httptools"
    status, out = run_to_end(run, PLATFORM, ["python3", "-c", imports])
    assert status == 0, out


def test_platform_proxy_modules_are_compiled(run: Run) -> None:
    # docker/build compiles them on the host when its python3 is CPython 3.11 (as CI's is);
    # elsewhere the wheel is pure Python, which works, slower, and is not what CI ships.
    from tests.integration.proxy.test_compiled import COMPILED as modules

    script = f"import {', '.join(modules)}; " + "; ".join(f"print({m}.__file__)" for m in modules)
    status, out = run_to_end(run, PLATFORM, ["python3", "-c", script])
    assert status == 0, out
    files = out.split()
    assert len(files) == len(modules)
    if not all(f.endswith(".so") for f in files):
        unavailable(f"the platform image runs the proxy uncompiled: {files}")


def test_platform_runs_as_a_non_root_user(run: Run) -> None:
    status, out = run_to_end(run, PLATFORM, ["id", "-u"])
    assert status == 0, out
    assert out.strip() != "0"


def test_build_tags_every_image_the_platform_uses(docker_client: Any) -> None:
    for ref in (TESTAPP, TESTAPP_V2, CONFDB, PLATFORM):
        require_image(docker_client, ref)
    v1 = docker_client.images.get(TESTAPP)
    assert "sws/testapp:v1" in v1.tags
    env = dict(e.split("=", 1) for e in v1.attrs["Config"]["Env"])
    assert env["APP_VERSION"] == "v1"
