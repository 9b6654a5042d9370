"""Benchmark sws-loadbalancer against HAProxy, side by side in one run.

Two comparisons, each as a ratio (sws / reference) of requests per second and of p99:

  l4     sws-loadbalancer              vs  HAProxy (mode tcp, leastconn, nbthread 1)
         in front of one nginx answering a static "ok" on two ports (two backends).
  chain  sws-loadbalancer -> 2 x sws-proxy   vs  HAProxy -> 2 x nginx proxy
         in front of that same nginx backend; needs the proxy package.

wrk drives each setup for --duration seconds with --connections keep-alive connections;
setups alternate for --rounds rounds and the median round is reported. Everything listens
on 127.0.0.1; nothing else is contacted.

    python bench/loadbalancer/run.py                # l4, plus chain when proxy imports
    python bench/loadbalancer/run.py --mode l4 --duration 10 --rounds 5
    python bench/loadbalancer/run.py --mode l4 --close   # a new connection per request
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOST = "bench.local"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"nothing listens on 127.0.0.1:{port} after {timeout} s"
                ) from None
            time.sleep(0.02)


def wait_http_ok(port: int, timeout: float = 10.0) -> None:
    """Poll until GET / through the port answers 200 (the whole chain is ready)."""
    deadline = time.monotonic() + timeout
    request = f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
    while True:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=1) as sock,
        ):
            sock.sendall(request)
            if sock.recv(64).startswith(b"HTTP/1.1 200"):
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"127.0.0.1:{port} does not answer 200 after {timeout} s")
        time.sleep(0.05)


class Processes:
    """Started programs, stopped in reverse order on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._started: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, args: list[str], cpu: str | None) -> int:
        if cpu is not None:
            args = ["taskset", "-c", cpu, *args]
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        self._started.append(process)
        return process.pid

    def stop_all(self) -> None:
        for process in reversed(self._started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(self._started):
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._started.clear()


def nginx(procs: Processes, name: str, servers: str, cpu: str | None) -> int:
    prefix = procs.workdir / name
    prefix.mkdir()
    (prefix / "logs").mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
daemon off;
master_process off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; multi_accept on; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    {servers}
}}
"""
    )
    return procs.start(
        name, ["nginx", "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)], cpu
    )


def static_servers(ports: list[int]) -> str:
    return "\n".join(
        f'server {{ listen 127.0.0.1:{p}; location / {{ default_type text/plain; return 200 "ok\\n"; }} }}'
        for p in ports
    )


def haproxy(procs: Processes, name: str, listen: int, backends: list[int], cpu: str | None) -> int:
    conf = procs.workdir / f"{name}.cfg"
    servers = "\n".join(
        f"    server b{i} 127.0.0.1:{port} check inter 500 rise 2 fall 2"
        for i, port in enumerate(backends)
    )
    conf.write_text(
        f"""
global
    nbthread 1
    maxconn 4000
defaults
    mode tcp
    timeout connect 1s
    timeout client 300s
    timeout server 300s
frontend fe
    bind 127.0.0.1:{listen}
    default_backend be
backend be
    balance leastconn
{servers}
"""
    )
    return procs.start(name, ["haproxy", "-f", str(conf), "-db"], cpu)


def sws_balancer(
    procs: Processes, name: str, listen: int, backends: list[int], cpu: str | None
) -> int:
    args = [
        sys.executable, "-m", "loadbalancer", "--listen", f"127.0.0.1:{listen}",
        "--admin", f"127.0.0.1:{free_port()}", "--log-level", "warning",
    ]  # fmt: skip
    for i, port in enumerate(backends):
        args += ["--backend", f"b{i}=127.0.0.1:{port}"]
    return procs.start(name, args, cpu)


def sws_proxy(procs: Processes, name: str, listen: int, backend: int, cpu: str | None) -> int:
    routes = procs.workdir / f"{name}-routes.json"
    routes.write_text(
        json.dumps(
            {
                "version": 1,
                "services": [
                    {"name": "b", "domains": [HOST], "backends": [f"127.0.0.1:{backend}"]}
                ],
            }
        )
    )
    args = [
        sys.executable, "-m", "proxy", "--listen", f"127.0.0.1:{listen}",
        "--admin", f"127.0.0.1:{free_port()}", "--routes", str(routes), "--no-access-log",
    ]  # fmt: skip
    return procs.start(name, args, cpu)


def nginx_proxy_servers(listens: list[int], backend: int) -> str:
    return f"""
    upstream app {{ server 127.0.0.1:{backend}; keepalive 256; }}
""" + "\n".join(
        f"""
    server {{
        listen 127.0.0.1:{port};
        server_name {HOST};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }}
    }}"""
        for port in listens
    )


@dataclass
class Result:
    requests_per_second: float
    p99_ms: float
    errors: int
    requests: int = 0
    cpu_us_per_request: float = 0.0


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time the processes have used so far."""
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(port: int, duration: int, connections: int, cpu: str | None, close: bool) -> Result:
    args = [
        "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
        "-H", f"Host: {HOST}", f"http://127.0.0.1:{port}/",
    ]  # fmt: skip
    if close:
        args[-1:-1] = ["-H", "Connection: close"]
    if cpu is not None:
        args = ["taskset", "-c", cpu, *args]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if not rps or not p99 or not total:
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    errors = 0
    for match in re.finditer(r"(connect|read|write|timeout) (\d+)", out):
        errors += int(match[2])
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx[1])
    return Result(float(rps[1]), float(p99[1]) * _UNITS[p99[2]], errors, int(total[1]))


@dataclass
class Setup:
    name: str
    port: int
    pids: list[int]  # the processes whose CPU time this setup costs (not the shared backend)


@contextlib.contextmanager
def l4_setups(procs: Processes, cpus: dict[str, str | None]) -> Iterator[list[Setup]]:
    backends = [free_port(), free_port()]
    nginx(procs, "nginx-backend", static_servers(backends), cpus["backend"])
    sws_port, ha_port = free_port(), free_port()
    sws_pid = sws_balancer(procs, "sws-loadbalancer", sws_port, backends, cpus["balancer"])
    ha_pid = haproxy(procs, "haproxy", ha_port, backends, cpus["balancer"])
    for port in [*backends, sws_port, ha_port]:
        wait_port(port)
    for port in (sws_port, ha_port):
        wait_http_ok(port)
    yield [Setup("sws-loadbalancer", sws_port, [sws_pid]), Setup("haproxy", ha_port, [ha_pid])]


@contextlib.contextmanager
def chain_setups(procs: Processes, cpus: dict[str, str | None]) -> Iterator[list[Setup]]:
    backend = free_port()
    nginx(procs, "nginx-backend", static_servers([backend]), cpus["backend"])
    sws_proxies = [free_port(), free_port()]
    sws_pids = [
        sws_proxy(procs, f"sws-proxy-{i + 1}", port, backend, cpus["balancer"])
        for i, port in enumerate(sws_proxies)
    ]
    nginx_proxies = [free_port(), free_port()]
    ha_pids = [
        nginx(procs, f"nginx-proxy-{i + 1}", nginx_proxy_servers([port], backend), cpus["balancer"])
        for i, port in enumerate(nginx_proxies)
    ]
    sws_port, ha_port = free_port(), free_port()
    sws_pids.append(
        sws_balancer(procs, "sws-loadbalancer", sws_port, sws_proxies, cpus["balancer"])
    )
    ha_pids.append(haproxy(procs, "haproxy", ha_port, nginx_proxies, cpus["balancer"]))
    for port in [backend, *sws_proxies, *nginx_proxies, sws_port, ha_port]:
        wait_port(port)
    for port in (sws_port, ha_port):
        wait_http_ok(port)
    yield [
        Setup("sws chain", sws_port, sws_pids),
        Setup("haproxy+nginx chain", ha_port, ha_pids),
    ]


def proxy_available() -> bool:
    try:
        result = subprocess.run(
            [sys.executable, "-m", "proxy", "--help"], cwd=REPO, capture_output=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def measure(
    setups: list[Setup], args: argparse.Namespace, cpus: dict[str, str | None]
) -> dict[str, Result]:
    rounds: dict[str, list[Result]] = {s.name: [] for s in setups}
    for setup in setups:
        wrk(setup.port, 2, args.connections, cpus["wrk"], args.close)  # warm-up, not counted
    for round_no in range(args.rounds):
        order = setups if round_no % 2 == 0 else list(reversed(setups))
        for setup in order:
            cpu_before = cpu_seconds(setup.pids)
            result = wrk(setup.port, args.duration, args.connections, cpus["wrk"], args.close)
            cpu_used = cpu_seconds(setup.pids) - cpu_before
            result.cpu_us_per_request = cpu_used * 1e6 / max(result.requests, 1)
            rounds[setup.name].append(result)
            print(
                f"  round {round_no + 1} {setup.name:22s} {result.requests_per_second:10.0f} req/s"
                f"  p99 {result.p99_ms:7.2f} ms  cpu {result.cpu_us_per_request:6.1f} us/req"
                f"  errors {result.errors}",
                flush=True,
            )
    medians = {}
    for name, results in rounds.items():
        medians[name] = Result(
            statistics.median(r.requests_per_second for r in results),
            statistics.median(r.p99_ms for r in results),
            sum(r.errors for r in results),
            sum(r.requests for r in results),
            statistics.median(r.cpu_us_per_request for r in results),
        )
    return medians


def report(title: str, medians: dict[str, Result]) -> None:
    (ours, ours_r), (ref, ref_r) = medians.items()
    print(f"\n{title}")
    print(f"  {'':22s} {'req/s':>10s} {'p99 ms':>8s} {'cpu us/req':>10s} {'errors':>7s}")
    for name, r in medians.items():
        print(
            f"  {name:22s} {r.requests_per_second:10.0f} {r.p99_ms:8.2f}"
            f" {r.cpu_us_per_request:10.1f} {r.errors:7d}"
        )
    print(
        f"  ratio {ours} / {ref}:"
        f" throughput {ours_r.requests_per_second / ref_r.requests_per_second:.2f}x (higher is better),"
        f" p99 {ours_r.p99_ms / ref_r.p99_ms:.2f}x,"
        f" cpu per request {ours_r.cpu_us_per_request / ref_r.cpu_us_per_request:.2f}x"
        " (lower is better)\n",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["l4", "chain", "both", "auto"], default="auto")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--close",
        action="store_true",
        help="one request per connection (Connection: close) instead of keep-alive",
    )
    parser.add_argument(
        "--pin", action="store_true",
        help="pin the balancers (and proxies) to CPU 0, nginx backend and wrk to CPU 1",
    )  # fmt: skip
    args = parser.parse_args()
    for tool in ("nginx", "haproxy", "wrk") + (("taskset",) if args.pin else ()):
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} is missing (apt-get install -y haproxy nginx-light wrk)")
    cpus: dict[str, str | None] = (
        {"balancer": "0", "backend": "1", "wrk": "1"}
        if args.pin
        else {"balancer": None, "backend": None, "wrk": None}
    )
    modes = {"auto": ["l4", "chain"], "both": ["l4", "chain"]}.get(args.mode, [args.mode])
    if "chain" in modes and not proxy_available():
        if args.mode in ("chain", "both"):
            sys.exit("bench: the proxy package does not run (python -m proxy --help failed)")
        print("bench: proxy package not usable; skipping the chain comparison")
        modes.remove("chain")
    print(
        f"bench: {time.strftime('%Y-%m-%d')} cpus={os.cpu_count()} duration={args.duration}s "
        f"rounds={args.rounds} connections={args.connections} close={args.close} pin={args.pin} "
        f"python={sys.version.split()[0]}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="sws-bench-lb-") as tmp:
        for mode in modes:
            workdir = Path(tmp) / mode
            workdir.mkdir()
            procs = Processes(workdir)
            setups_for = l4_setups if mode == "l4" else chain_setups
            try:
                with setups_for(procs, cpus) as setups:
                    print(f"\n{mode}: " + " vs ".join(s.name for s in setups), flush=True)
                    medians = measure(setups, args, cpus)
            except Exception:
                for log in sorted(workdir.glob("*.log")):
                    print(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}")
                raise
            finally:
                procs.stop_all()
            report(
                "L4: balancer alone in front of nginx"
                if mode == "l4"
                else "chain: balancer -> two proxies -> nginx",
                medians,
            )


if __name__ == "__main__":
    main()
