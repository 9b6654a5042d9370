"""sws-proxy against nginx, side by side in one run, in front of the same nginx backend.

    python bench/proxy/run.py [--duration 10] [--rounds 3] [--connections 50] [--syscalls]
                              [--floor] [--pure] [--nginx-fwd]

Installs nginx-light and wrk from Debian if missing. Starts one backend (nginx, one worker,
answering "ok" with keep-alive), then nginx (one worker, proxy_pass with upstream keepalive,
no access log) and sws-proxy (one worker, --no-access-log) in front of it. The backend and
wrk share core 0 and the proxy under test gets core 1 (taskset), so both proxies meet the
same load generator and backend and neither competes with them for its core. Rounds alternate
between the two proxies so that noise from the rest of the machine falls on both; the median
of the rounds is reported. Prints requests/s and p99 for each and the ratios.

Besides those, each proxy process's user and system CPU time per request (from /proc, over
each round): the figures least disturbed by other work on the machine, which on a shared
machine matter more than requests/s. The load average is printed with every round so a
reader can judge how busy the machine was. With --syscalls, after the rounds each proxy is
traced with ``strace -c`` during one more short run, and its system calls per request are
printed by name; where ``perf`` works, the wake-ups of other tasks it caused per request
too (a wake-up of a sleeping reader is much of the kernel's cost on a virtual machine).
"""

from __future__ import annotations

import argparse
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BACKEND_PORT = 18801
NGINX_PORT = 18802
SWS_PORT = 18803
SWS_ADMIN = 18804
FLOOR_PORT = 18805
NGINX_FWD_PORT = 18808
PURE_PORT = 18806
PURE_ADMIN = 18807

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
error_log {dir}/{name}-error.log warn;
pid {dir}/{name}.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  upstream backend {{ server 127.0.0.1:{backend}; keepalive 256; }}
  {maps}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      {headers}
    }}
  }}
}}
"""
# nginx-fwd: nginx made to add what sws-proxy adds to every request (X-Forwarded-For with
# the client appended, -Proto, -Host as the client sent it, X-Request-Id kept or generated).
FWD_MAPS = 'map $http_x_request_id $sws_rid {{ default $http_x_request_id; "" $request_id; }}'
FWD_HEADERS = (
    "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; "
    "proxy_set_header X-Forwarded-Proto $scheme; "
    "proxy_set_header X-Forwarded-Host $http_host; "
    "proxy_set_header X-Request-Id $sws_rid;"
)


def ensure_tools() -> None:
    have_nginx = shutil.which("nginx") or Path("/usr/sbin/nginx").exists()
    wanted = [("nginx-light", have_nginx), ("wrk", shutil.which("wrk"))]
    if "--syscalls" in sys.argv:
        wanted.append(("strace", shutil.which("strace")))
    missing = [p for p, ok in wanted if not ok]
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
    # The latency distribution line, not a "+/- Stdev" column that ends in 99%.
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M)[1])  # type: ignore[index]
    if "Non-2xx" in out or "Socket errors" in out:
        print(out, file=sys.stderr)
    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    return rps, p99, requests


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """User and system CPU time the processes have used so far."""
    user = system = 0
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        user += int(stat[11])
        system += int(stat[12])
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def syscalls(port: int, pid: int, seconds: float, connections: int, cpu: str) -> dict[str, float]:
    """System calls per request of one proxy process during a short run, by name."""
    with tempfile.NamedTemporaryFile(suffix=".strace") as out:
        tracer = subprocess.Popen(
            ["strace", "-c", "-f", "-p", str(pid), "-o", out.name], stderr=subprocess.DEVNULL
        )
        time.sleep(0.5)  # attached
        _, _, n = wrk(port, seconds, connections, cpu)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(10)
        counts: dict[str, float] = {}
        for line in Path(out.name).read_text().splitlines():
            fields = line.split()
            # % time, seconds, usecs/call, calls, [errors,] syscall
            if len(fields) >= 5 and fields[3].isdigit() and fields[-1] != "total":
                counts[fields[-1]] = int(fields[3]) / max(n, 1)
        return counts


def wakeups(port: int, pid: int, seconds: float, connections: int, cpu: str) -> dict[str, float]:
    """Scheduler events per request caused by one proxy process (empty if perf cannot)."""
    events = "sched:sched_wakeup,context-switches"
    with tempfile.NamedTemporaryFile(suffix=".perf") as out:
        try:
            counter = subprocess.Popen(
                ["perf", "stat", "-x,", "-e", events, "-p", str(pid), "-o", out.name],
                stderr=subprocess.DEVNULL,
            )
        except OSError:
            return {}
        time.sleep(0.5)
        _, _, n = wrk(port, seconds, connections, cpu)
        counter.send_signal(signal.SIGINT)
        counter.wait(10)
        counts: dict[str, float] = {}
        for line in Path(out.name).read_text().splitlines():
            fields = line.split(",")
            if len(fields) > 2 and fields[0].isdigit():
                counts[fields[2]] = int(fields[0]) / max(n, 1)
        return counts


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def compiled_modules() -> list[str]:
    """The proxy modules meant to be compiled (a .pxd beside them) that are not, here."""
    missing = []
    for pxd in sorted((ROOT / "proxy").glob("*.pxd")):
        if not list(pxd.parent.glob(f"{pxd.stem}.*.so")):
            missing.append(pxd.stem)
    return missing


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument(
        "--syscalls", action="store_true", help="also count system calls per request (strace)"
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also run bench/proxy/floor.py, a bare uvloop byte relay, as a third proxy",
    )
    parser.add_argument(
        "--nginx-fwd",
        action="store_true",
        help="also run nginx adding the X-Forwarded-* and X-Request-Id fields sws-proxy adds",
    )
    parser.add_argument(
        "--pure",
        action="store_true",
        help="also run sws-proxy from its Python sources with nothing compiled (sws-pure)",
    )
    args = parser.parse_args()
    missing = compiled_modules()
    if missing:
        # Measured as Python, sws-proxy would be a different program from the one shipped.
        print(
            f"sws-proxy is not compiled here (proxy/{', '.join(missing)}): run `make build` "
            "first, or bench/proxy/run.sh, which does",
            file=sys.stderr,
        )
        return 2
    ensure_tools()
    cpus = os.cpu_count() or 1
    load_cpu, proxy_cpu = ("0", "1") if cpus >= 2 else ("0", "0")
    work = Path(tempfile.mkdtemp(prefix="sws-bench-proxy-"))
    (work / "backend.conf").write_text(BACKEND_CONF.format(dir=work, port=BACKEND_PORT))
    (work / "proxy.conf").write_text(
        PROXY_CONF.format(
            dir=work, name="proxy", port=NGINX_PORT, backend=BACKEND_PORT, maps="", headers=""
        )
    )
    (work / "proxy-fwd.conf").write_text(
        PROXY_CONF.format(
            dir=work,
            name="proxy-fwd",
            port=NGINX_FWD_PORT,
            backend=BACKEND_PORT,
            maps=FWD_MAPS.format(),
            headers=FWD_HEADERS,
        )
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

    def start(cpu: str, *command: str, root: Path | None = None) -> int:
        """Start ``command`` pinned to ``cpu`` (from ``root``, on PYTHONPATH); its pid."""
        env = None if root is None else {**os.environ, "PYTHONPATH": str(root)}
        procs.append(
            subprocess.Popen(
                ["taskset", "-c", cpu, *command], cwd=root, env=env, stderr=subprocess.DEVNULL
            )
        )
        return procs[-1].pid

    def nginx(cpu: str, conf: str) -> int:
        return start(cpu, nginx_bin(), "-p", str(work), "-c", str(work / conf))

    def sws_proxy(root: Path, port: int, admin: int) -> int:
        flags = ["--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}"]
        flags += ["--routes", str(work / "routes.json"), "--no-access-log"]
        return start(proxy_cpu, sys.executable, "-m", "proxy", *flags, root=root)

    try:
        nginx(load_cpu, "backend.conf")
        # The processes doing the proxying: nginx's worker (the master's child) and ours.
        masters = {"nginx": nginx(proxy_cpu, "proxy.conf")}
        pids = {"sws-proxy": [sws_proxy(ROOT, SWS_PORT, SWS_ADMIN)]}
        if args.floor:
            floor = str(ROOT / "bench" / "proxy" / "floor.py")
            flags = [
                "--listen",
                f"127.0.0.1:{FLOOR_PORT}",
                "--backend",
                f"127.0.0.1:{BACKEND_PORT}",
            ]
            pids["floor"] = [start(proxy_cpu, sys.executable, floor, *flags)]
        if args.pure:
            # The same sources with no compiled module beside them.
            pure_root = work / "pure"
            ignore = shutil.ignore_patterns("*.so", "*.c", "__pycache__")
            for package in ("proxy", "sws"):
                shutil.copytree(ROOT / package, pure_root / package, ignore=ignore)
            pids["sws-pure"] = [sws_proxy(pure_root, PURE_PORT, PURE_ADMIN)]
        if args.nginx_fwd:
            masters["nginx-fwd"] = nginx(proxy_cpu, "proxy-fwd.conf")
        targets = {"nginx": NGINX_PORT, "sws-proxy": SWS_PORT}
        if args.nginx_fwd:
            targets["nginx-fwd"] = NGINX_FWD_PORT
        if args.floor:
            targets["floor"] = FLOOR_PORT
        if args.pure:
            targets["sws-pure"] = PURE_PORT
        for port in (BACKEND_PORT, *targets.values()):
            wait_port(port)
        for name, master in masters.items():
            pids[name] = children(master)
        for port in targets.values():
            wrk(port, args.warmup, args.connections, load_cpu)
        results: dict[str, list[dict[str, float]]] = {k: [] for k in targets}
        print(f"load average {load()}", flush=True)
        for r in range(args.rounds):
            # Each proxy takes every place in the order in turn.
            names = list(targets)
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                user, system = cpu_seconds(pids[name])
                rps, p99, n = wrk(targets[name], args.duration, args.connections, load_cpu)
                user_after, system_after = cpu_seconds(pids[name])
                row = {
                    "rps": rps,
                    "p99_ms": p99,
                    "user_us": (user_after - user) / max(n, 1) * 1e6,
                    "system_us": (system_after - system) / max(n, 1) * 1e6,
                }
                row["cpu_us"] = row["user_us"] + row["system_us"]
                results[name].append(row)
                print(
                    f"round {r + 1} {name:10s} {rps:10.0f} req/s  p99 {p99:8.2f} ms  "
                    f"cpu {row['cpu_us']:6.1f} us/req (user {row['user_us']:5.1f} "
                    f"system {row['system_us']:5.1f})  load {load()}",
                    flush=True,
                )
        summary = {
            name: {key: statistics.median(row[key] for row in rows) for key in rows[0]}
            for name, rows in results.items()
        }
        sws, ngx = summary["sws-proxy"], summary["nginx"]
        ratio_rps = sws["rps"] / ngx["rps"]
        ratio_p99 = sws["p99_ms"] / ngx["p99_ms"]
        ratio_cpu = sws["cpu_us"] / ngx["cpu_us"]
        print()
        print(
            f"settings: wrk -t1 -c{args.connections} -d{args.duration:g}s, {args.rounds} rounds "
            f"(median), backend+wrk on cpu {load_cpu}, proxy on cpu {proxy_cpu}"
        )
        for name, v in summary.items():
            print(
                f"{name:10s} {v['rps']:10.0f} req/s   p99 {v['p99_ms']:8.2f} ms   "
                f"cpu {v['cpu_us']:6.1f} us/req (user {v['user_us']:5.1f} "
                f"system {v['system_us']:5.1f})"
            )
        print(
            f"ratio sws-proxy/nginx: requests/s {ratio_rps:.2f}x (target >= 1.0), "
            f"p99 {ratio_p99:.2f}x (target <= 1.2), cpu per request {ratio_cpu:.2f}x"
        )
        # Each round's pair ran back to back, so their ratio is the least disturbed by the
        # machine drifting between rounds.
        paired = [
            (ours["rps"] / theirs["rps"], ours["p99_ms"] / theirs["p99_ms"])
            for ours, theirs in zip(results["sws-proxy"], results["nginx"], strict=True)
        ]
        print(
            "ratio sws-proxy/nginx round by round: requests/s "
            + " ".join(f"{r:.2f}" for r, _ in paired)
            + ", p99 "
            + " ".join(f"{p:.2f}" for _, p in paired)
        )
        if args.nginx_fwd:
            fwd = summary["nginx-fwd"]
            print(
                f"ratio sws-proxy/nginx-fwd: requests/s {sws['rps'] / fwd['rps']:.2f}x, "
                f"p99 {sws['p99_ms'] / fwd['p99_ms']:.2f}x, "
                f"cpu per request {sws['cpu_us'] / fwd['cpu_us']:.2f}x"
            )
        if args.floor:
            floor = summary["floor"]
            print(
                "above the bare relay (floor): "
                f"sws-proxy {sws['user_us'] - floor['user_us']:.1f} us user + "
                f"{sws['system_us'] - floor['system_us']:.1f} us system per request, "
                f"nginx {ngx['user_us'] - floor['user_us']:.1f} us user + "
                f"{ngx['system_us'] - floor['system_us']:.1f} us system"
            )
        kernel: dict[str, dict[str, dict[str, float]]] = {}
        if args.syscalls:
            for name in targets:
                pid = pids[name][0]
                calls = syscalls(targets[name], pid, 3, args.connections, load_cpu)
                wakes = wakeups(targets[name], pid, 3, args.connections, load_cpu)
                kernel[name] = {"syscalls": calls, "wakeups": wakes}
                listed = "  ".join(
                    f"{k} {v:.2f}"
                    for k, v in sorted(calls.items(), key=lambda x: -x[1])
                    if v >= 0.01
                )
                print(f"{name:10s} system calls per request {sum(calls.values()):.2f}: {listed}")
                if wakes:
                    print(
                        f"{name:10s} per request: "
                        + "  ".join(f"{k} {v:.3f}" for k, v in wakes.items())
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
                    "paired": paired,
                    "kernel": kernel,
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
