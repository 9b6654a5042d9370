from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from dataclasses import dataclass

from tests.integration.loadbalancer.conftest import (
    http_get,
    start_backend_process,
    start_balancer_process,
    wait_for,
)

CLIENTS = 6


@dataclass
class Outcome:
    started: float
    ended: float
    backend: str | None  # None: the request failed


def client_loop(address, stop: threading.Event, outcomes: list[Outcome]) -> None:
    while not stop.is_set():
        started = time.monotonic()
        try:
            with socket.create_connection((address.host, address.port), timeout=5) as sock:
                status, body = http_get(sock, "/slow", keep_alive=False)
            backend = body.decode() if status == 200 else None
        except OSError:
            backend = None
        outcomes.append(Outcome(started, time.monotonic(), backend))


def test_kill_9_of_a_backend_costs_only_its_in_flight_requests(processes) -> None:
    proc_a, address_a = start_backend_process("a", slow=0.02)
    proc_b, address_b = start_backend_process("b", slow=0.02)
    processes += [proc_a, proc_b]
    # Default check settings (interval 0.5 s, rise 2, fall 2): what production runs.
    lb, listen, admin = start_balancer_process(
        "--backend", f"a={address_a}", "--backend", f"b={address_b}"
    )
    processes.append(lb)
    wait_for(lambda: all(b["health"] == "up" for b in admin.backends().values()))

    stop = threading.Event()
    outcomes: list[Outcome] = []
    clients = [
        threading.Thread(target=client_loop, args=(listen, stop, outcomes)) for _ in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    try:
        wait_for(lambda: all(b["total_connections"] >= 10 for b in admin.backends().values()))
        proc_a.popen.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        # Requests begun before the process is really gone may still reach it: they are in
        # flight when it dies.
        proc_a.popen.wait(5)
        dead = time.monotonic()
        down = wait_for(lambda: admin.backend("a")["health"] == "down", timeout=5, interval=0.005)
        noticed = time.monotonic()
        a_connections = admin.backend("a")["total_connections"]
        # Keep the load on for a while after, to see that nothing more goes to a.
        served_before = sum(1 for o in outcomes if o.backend)
        wait_for(lambda: sum(1 for o in outcomes if o.backend) >= served_before + 40, timeout=10)
    finally:
        stop.set()
        for client in clients:
            client.join(10)

    assert down
    assert noticed - killed < 1.0, f"a still counted healthy {noticed - killed:.2f} s after kill -9"
    failures = [o for o in outcomes if o.backend is None]
    assert len(failures) <= CLIENTS, f"{len(failures)} failures with only {CLIENTS} in flight"
    assert all(o.started < dead for o in failures), "a request begun after the death failed"
    after = [o for o in outcomes if o.started > noticed]
    assert after and all(o.backend == "b" for o in after)
    assert admin.backend("a")["total_connections"] == a_connections
    assert admin.backend("a")["health"] == "down"


def test_sigterm_stops_accepting_and_lets_open_connections_finish(processes) -> None:
    proc_a, address_a = start_backend_process("a")
    processes.append(proc_a)
    lb, listen, _admin = start_balancer_process(
        "--backend", f"a={address_a}", "--grace-period", "30"
    )
    processes.append(lb)
    held = socket.create_connection((listen.host, listen.port), timeout=5)
    try:
        assert http_get(held) == (200, b"a")
        lb.popen.send_signal(signal.SIGTERM)
        lb.wait_line(r"shutdown_started open_connections=1")

        def refused() -> bool:
            try:
                socket.create_connection((listen.host, listen.port), timeout=1).close()
            except ConnectionRefusedError:
                return True
            return False

        wait_for(refused)
        # The connection opened before SIGTERM still carries requests.
        assert http_get(held) == (200, b"a")
        assert lb.popen.poll() is None
    finally:
        held.close()
    started = time.monotonic()
    assert lb.popen.wait(10) == 0
    assert time.monotonic() - started < 5, "exit should follow the last close, not the grace period"
    assert any("shutdown_complete" in line for line in lb.lines)


def test_grace_period_ends_connections_that_outstay_it(processes) -> None:
    proc_a, address_a = start_backend_process("a")
    processes.append(proc_a)
    lb, listen, _ = start_balancer_process("--backend", f"a={address_a}", "--grace-period", "0.3")
    processes.append(lb)
    with socket.create_connection((listen.host, listen.port), timeout=5) as held:
        assert http_get(held) == (200, b"a")
        lb.popen.send_signal(signal.SIGTERM)
        assert lb.popen.wait(10) == 0
        with contextlib.suppress(ConnectionResetError):
            assert held.recv(10) == b""
    assert any("shutdown_aborting open_connections=1" in line for line in lb.lines)
