from __future__ import annotations

import http.client
import json
import pathlib
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from loadbalancer.config import Address, Config, parse_backend
from loadbalancer.server import Server

REPO = pathlib.Path(__file__).parents[3]


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> Any:
    """Poll until predicate() is truthy; return its value or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


class Admin:
    """A client of the balancer's admin API."""

    def __init__(self, address: Address) -> None:
        self.address = address

    def request(self, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.address.host, self.address.port, timeout=5)
        try:
            conn.request(method, path)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def json(self, method: str, path: str) -> tuple[int, Any]:
        status, headers, body = self.request(method, path)
        assert headers["Content-Type"] == "application/json"
        return status, json.loads(body)

    def backend(self, name: str) -> dict[str, Any]:
        status, document = self.json("GET", f"/backends/{name}")
        assert status == 200, document
        return dict(document)

    def backends(self) -> dict[str, dict[str, Any]]:
        status, document = self.json("GET", "/backends")
        assert status == 200
        return {b["name"]: b for b in document["backends"]}

    def drain(self, name: str, force: bool = False) -> dict[str, Any]:
        query = "?force=true" if force else ""
        status, document = self.json("POST", f"/backends/{name}/drain{query}")
        assert status == 200, document
        return dict(document)

    def enable(self, name: str) -> dict[str, Any]:
        status, document = self.json("POST", f"/backends/{name}/enable")
        assert status == 200, document
        return dict(document)


class RunningBalancer:
    """A balancer Server on its own thread and event loop, stopped on exit."""

    def __init__(self, config: Config) -> None:
        self.server = Server(config)
        self._thread = threading.Thread(target=self.server.run, name="balancer", daemon=True)

    def __enter__(self) -> RunningBalancer:
        self._thread.start()
        if not self.server.started.wait(5):
            raise AssertionError("balancer did not start within 5 s")
        assert self.server.admin_address is not None
        self.admin = Admin(self.server.admin_address)
        self.address = self.server.listen_addresses[0]
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.request_stop()
        self._thread.join(10)
        assert not self._thread.is_alive(), "balancer did not stop within 10 s"

    def connect(self) -> socket.socket:
        return socket.create_connection((self.address.host, self.address.port), timeout=5)


def make_config(*backends: str, **settings: Any) -> Config:
    config = Config(
        listen=(Address("127.0.0.1", 0),),
        admin=Address("127.0.0.1", 0),
        backends=tuple(parse_backend(b) for b in backends),
        grace_period=2.0,
    )
    return replace(config, **settings)


@pytest.fixture
def balancer_factory() -> Iterator[Callable[..., RunningBalancer]]:
    started: list[RunningBalancer] = []

    def start(*backends: str, **settings: Any) -> RunningBalancer:
        running = RunningBalancer(make_config(*backends, **settings)).__enter__()
        started.append(running)
        return running

    yield start
    for running in reversed(started):
        running.__exit__(None, None, None)


def http_get(sock: socket.socket, path: str = "/", keep_alive: bool = True) -> tuple[int, bytes]:
    """Send one HTTP/1.1 GET on an open socket and read the whole response."""
    connection = "keep-alive" if keep_alive else "close"
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: {connection}\r\n\r\n".encode())
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buffer)} bytes of headers")
        buffer += chunk
    head, _, body = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("connection closed inside the body")
        body += chunk
    return status, body


class Process:
    """A program started for a test whose stdout/stderr lines are collected by a thread."""

    def __init__(self, args: list[str]) -> None:
        self.popen = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        regex = re.compile(pattern)

        def found() -> re.Match[str] | None:
            if self.popen.poll() is not None and not any(regex.search(x) for x in self.lines):
                raise AssertionError(f"process exited: {self.lines}")
            return next((m for x in list(self.lines) if (m := regex.search(x))), None)

        return wait_for(found, timeout)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)


def start_backend_process(name: str, slow: float = 0.01) -> tuple[Process, str]:
    process = Process(
        [
            sys.executable,
            "-m",
            "tests.integration.loadbalancer.backends",
            "--name",
            name,
            "--slow",
            str(slow),
        ]
    )
    port = process.wait_line(r"^port=(\d+)$")[1]
    return process, f"127.0.0.1:{port}"


def start_balancer_process(*args: str) -> tuple[Process, Address, Admin]:
    process = Process(
        [
            sys.executable,
            "-m",
            "loadbalancer",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            *args,
        ]
    )
    match = process.wait_line(r"listening listen=127\.0\.0\.1:(\d+) admin=127\.0\.0\.1:(\d+)")
    return (
        process,
        Address("127.0.0.1", int(match[1])),
        Admin(Address("127.0.0.1", int(match[2]))),
    )


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.stop()
