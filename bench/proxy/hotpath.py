"""The proxy's own work per request, without sockets: Python, httptools and nothing else.

    python bench/proxy/hotpath.py [--requests 200000] [--repeat 5] [--instructions]

Drives the real ``ClientConnection`` and ``UpstreamConnection`` objects through whole
keep-alive exchanges over in-memory transports: a client request goes in, the head the
proxy writes upstream is answered with a backend response, and the client's answer comes
out. No event loop, no system calls, so the figure is what the proxy's code costs on top of
the kernel's and the event loop's work.

Two measures. By default, CPU time per request (the process's, not the wall clock, so other
load on the machine disturbs it less; the best of ``--repeat`` runs). With
``--instructions``, instructions per request counted by valgrind's callgrind (the
difference between a short and a long run, so start-up is left out): slow, but exact and
the same on a busy machine as on a quiet one.

Three shapes: wrk's request (a Host field only) answered with one repeated response; a
browser's request (a dozen fields) likewise; and the browser's request answered with a
response whose head is new every time (an ETag that changes), which takes the response
parser instead of the remembered-head path (see proxy/upstream.py).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from proxy.config import Config  # noqa: E402
from proxy.protocol import ClientConnection  # noqa: E402
from proxy.server import Server  # noqa: E402
from proxy.upstream import UpstreamConnection  # noqa: E402
from sws.route_table import RouteTable  # noqa: E402

WRK = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:18803\r\n\r\n"
BROWSER = (
    b"GET /orders/12345?page=2 HTTP/1.1\r\n"
    b"Host: web.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Referer: http://web.example.com/orders\r\n"
    b"Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n"
    b"Upgrade-Insecure-Requests: 1\r\n"
    b"Sec-Fetch-Dest: document\r\n"
    b"Sec-Fetch-Mode: navigate\r\n"
    b"Sec-Fetch-Site: same-origin\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n"
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: nginx/1.22.1\r\n"
    b"Date: Sat, 21 Nov 2026 12:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 3\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n"
    b"ok\n"
)
# More distinct heads than a backend's remembered heads (64), cycled: every one is new.
NEW_HEADS = [
    RESPONSE.replace(b"Content-Length", b'ETag: "%d"\r\nContent-Length' % i) for i in range(1000)
]
SHAPES: dict[str, tuple[bytes, list[bytes]]] = {
    "wrk": (WRK, [RESPONSE]),
    "browser": (BROWSER, [RESPONSE]),
    "browser-new-heads": (BROWSER, NEW_HEADS),
}


class Transport(asyncio.Transport):
    """Collects what is written; enough of a transport for the protocols' hot path."""

    def __init__(self, peer: tuple[str, int]) -> None:
        super().__init__()
        self.peer = peer
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass


def run(shape: str, n: int) -> float:
    """Return the CPU seconds per request of ``n`` exchanges of ``shape`` on one connection."""
    request, responses = SHAPES[shape]
    loop = uvloop.new_event_loop()
    server = Server(Config(access_log=False))
    server.clock = loop.time
    server.now = loop.time()
    server.set_routes(
        RouteTable.from_json_obj(
            {
                "version": 1,
                "services": [
                    {
                        "name": "web",
                        "domains": ["127.0.0.1", "web.example.com"],
                        "backends": ["127.0.0.1:18801"],
                    }
                ],
            }
        )
    )
    backend = server.backends["127.0.0.1:18801"]
    upstream = UpstreamConnection(server, backend)
    up_transport = Transport(("127.0.0.1", 18801))
    upstream.connection_made(up_transport)
    upstream.release()
    client = ClientConnection(server)
    client_transport = Transport(("127.0.0.1", 40000))
    client.connection_made(client_transport)
    client_in = client.data_received
    upstream_in = upstream.data_received
    up_written = up_transport.written
    client_written = client_transport.written
    # One exchange first, to check that the path taken is the keep-alive one.
    client_in(request)
    assert up_written and b"X-Request-Id" in up_written[-1], up_written
    upstream_in(responses[0])
    assert client_written and client_written[-1].startswith(b"HTTP/1.1 200 OK\r\n"), client_written
    assert backend.idle == [upstream] and not client_transport.closed
    answers = (responses * (n // len(responses) + 1))[:n]
    gc.collect()
    start = time.process_time()
    for response in answers:
        client_in(request)
        upstream_in(response)
    elapsed = time.process_time() - start
    assert len(client_written) == n + 1 and not client_transport.closed
    loop.close()
    return elapsed / n


def instructions(shape: str, short: int = 1000, long: int = 6000) -> float:
    """Count instructions per request with callgrind: a long run less a short one."""
    counts = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (short, long):
            out = subprocess.run(
                [
                    "valgrind",
                    "--tool=callgrind",
                    f"--callgrind-out-file={Path(tmp) / 'callgrind.out'}",
                    sys.executable,
                    __file__,
                    "--shape",
                    shape,
                    "--requests",
                    str(n),
                    "--repeat",
                    "1",
                ],
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                check=True,
            )
            found = re.search(r"Collected : (\d+)", out.stderr)
            if found is None:
                raise RuntimeError(f"callgrind gave no count:\n{out.stderr}")
            counts.append(int(found[1]))
    return (counts[1] - counts[0]) / (long - short)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--shape", choices=list(SHAPES), help="one shape only")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions (needs valgrind)"
    )
    args = parser.parse_args()
    shapes = [args.shape] if args.shape else list(SHAPES)
    if args.instructions:
        if shutil.which("valgrind") is None:
            sys.exit("hotpath: --instructions needs valgrind (apt-get install valgrind)")
        for shape in shapes:
            print(f"{shape:18s} {instructions(shape):9.0f} instructions per request", flush=True)
        return
    for shape in shapes:
        best = min(run(shape, args.requests) for _ in range(args.repeat))
        print(f"{shape:18s} {best * 1e6:6.2f} us per request (best of {args.repeat})", flush=True)


if __name__ == "__main__":
    main()
