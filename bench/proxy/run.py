"""sws-proxy against nginx, side by side in one run, in front of the same nginx backend.

    python bench/proxy/run.py [--duration 10] [--rounds 3] [--connections 50]

Installs nginx-light and wrk from Debian if missing. Starts one backend (nginx, one worker,
answering "ok" with keep-alive), then nginx (one worker, proxy_pass with upstream keepalive,
no access log) and sws-proxy (one worker, --no-access-log) in front of it. The backend and
wrk share core 0 and the proxy under test gets core 1 (taskset), so both proxies meet the
same load generator and backend and neither competes with them for its core. Rounds alternate
between the two proxies so that noise from the rest of the machine falls on both; the median
of the rounds is reported. Prints requests/s and p99 for each and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BACKEND_PORT = 18801
NGINX_PORT = 18802
SWS_PORT = 18803
SWS_ADMIN = 18804

BACKEND_CONF = """
worker_processes 1;
daemon off;
error_log {dir}/backend-error.log warn;
pid {dir}/backend.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "ok\\n"; }} }}
}}
"""

PROXY_CONF = """
worker_processes 1;
daemon off;
error_log {dir}/proxy-error.log warn;
pid {dir}/proxy.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  upstream backend {{ server 127.0.0.1:{backend}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""


def ensure_tools() -> None:
    have_nginx = shutil.which("nginx") or Path("/usr/sbin/nginx").exists()
    missing = [p for p, ok in (("nginx-light", have_nginx), ("wrk", shutil.which("wrk"))) if not ok]
    if missing:
        print(f"installing {' '.join(missing)}", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(["apt-get", "install", "-y", *missing], env=env).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, check=True)
            subprocess.run(["apt-get", "install", "-y", *missing], env=env, check=True)


def nginx_bin() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def wait_port(port: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def to_ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(port: int, seconds: float, connections: int, cpu: str) -> tuple[float, float, int]:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            cpu,
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--latency",
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p99 = to_ms(re.search(r"99%\s+(\S+)", out)[1])  # type: ignore[index]
    if "Non-2xx" in out or "Socket errors" in out:
        print(out, file=sys.stderr)
    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    return rps, p99, requests


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time the processes have used so far."""
    total = 0
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(stat[11]) + int(stat[12])
    return total / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    ensure_tools()
    cpus = os.cpu_count() or 1
    load_cpu, proxy_cpu = ("0", "1") if cpus >= 2 else ("0", "0")
    work = Path(tempfile.mkdtemp(prefix="sws-bench-proxy-"))
    (work / "backend.conf").write_text(BACKEND_CONF.format(dir=work, port=BACKEND_PORT))
    (work / "proxy.conf").write_text(
        PROXY_CONF.format(dir=work, port=NGINX_PORT, backend=BACKEND_PORT)
    )
    (work / "routes.json").write_text(
        json.dumps(
            {
                "version": 1,
                "services": [
                    {
                        "name": "bench",
                        "domains": ["127.0.0.1"],
                        "backends": [f"127.0.0.1:{BACKEND_PORT}"],
                    }
                ],
            }
        )
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, cpu in (("backend", load_cpu), ("proxy", proxy_cpu)):
            procs.append(
                subprocess.Popen(
                    [
                        "taskset",
                        "-c",
                        cpu,
                        nginx_bin(),
                        "-p",
                        str(work),
                        "-c",
                        str(work / f"{name}.conf"),
                    ],
                    stderr=subprocess.DEVNULL,
                )
            )
        procs.append(
            subprocess.Popen(
                [
                    "taskset",
                    "-c",
                    proxy_cpu,
                    sys.executable,
                    "-m",
                    "proxy",
                    "--listen",
                    f"127.0.0.1:{SWS_PORT}",
                    "--admin",
                    f"127.0.0.1:{SWS_ADMIN}",
                    "--routes",
                    str(work / "routes.json"),
                    "--no-access-log",
                ],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stderr=subprocess.DEVNULL,
            )
        )
        for port in (BACKEND_PORT, NGINX_PORT, SWS_PORT):
            wait_port(port)
        targets = {"nginx": NGINX_PORT, "sws-proxy": SWS_PORT}
        # The processes doing the proxying: nginx's worker (the master's child) and ours.
        pids = {"nginx": children(procs[1].pid), "sws-proxy": [procs[2].pid]}
        for port in targets.values():
            wrk(port, args.warmup, args.connections, load_cpu)
        results: dict[str, list[tuple[float, float, float]]] = {k: [] for k in targets}
        for r in range(args.rounds):
            order = list(targets) if r % 2 == 0 else list(reversed(targets))
            for name in order:
                before = cpu_seconds(pids[name])
                rps, p99, n = wrk(targets[name], args.duration, args.connections, load_cpu)
                cpu_us = (cpu_seconds(pids[name]) - before) / max(n, 1) * 1e6
                results[name].append((rps, p99, cpu_us))
                print(
                    f"round {r + 1} {name:10s} {rps:10.0f} req/s  p99 {p99:8.2f} ms  "
                    f"cpu {cpu_us:6.1f} us/req",
                    flush=True,
                )
        summary = {
            name: {
                "rps": statistics.median(x[0] for x in runs),
                "p99_ms": statistics.median(x[1] for x in runs),
                "cpu_us_per_request": statistics.median(x[2] for x in runs),
            }
            for name, runs in results.items()
        }
        sws, ngx = summary["sws-proxy"], summary["nginx"]
        ratio_rps = sws["rps"] / ngx["rps"]
        ratio_p99 = sws["p99_ms"] / ngx["p99_ms"]
        ratio_cpu = sws["cpu_us_per_request"] / ngx["cpu_us_per_request"]
        print()
        print(
            f"settings: wrk -t1 -c{args.connections} -d{args.duration:g}s, {args.rounds} rounds "
            f"(median), backend+wrk on cpu {load_cpu}, proxy on cpu {proxy_cpu}"
        )
        for name, v in summary.items():
            print(
                f"{name:10s} {v['rps']:10.0f} req/s   p99 {v['p99_ms']:8.2f} ms   "
                f"cpu {v['cpu_us_per_request']:6.1f} us/req"
            )
        print(
            f"ratio sws-proxy/nginx: requests/s {ratio_rps:.2f}x (target >= 1.0), "
            f"p99 {ratio_p99:.2f}x (target <= 1.2), cpu per request {ratio_cpu:.2f}x"
        )
        out_dir = ROOT / "bench" / "results"
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "proxy.json").write_text(
            json.dumps(
                {
                    "summary": summary,
                    "ratio_rps": ratio_rps,
                    "ratio_p99": ratio_p99,
                    "ratio_cpu": ratio_cpu,
                    "runs": results,
                    "args": vars(args),
                },
                indent=2,
            )
        )
        return 0
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
