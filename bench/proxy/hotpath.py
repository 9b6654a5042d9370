"""The proxy's own work per request, without sockets: Python, httptools and nothing else.

    python bench/proxy/hotpath.py [--requests 200000] [--repeat 5]

Drives the real ``ClientConnection`` and ``UpstreamConnection`` objects through whole
keep-alive exchanges over in-memory transports: a client request goes in, the head the
proxy writes upstream is answered with a backend response, and the client's answer comes
out. No event loop, no system calls, so the figure is what the proxy's code costs on top of
the kernel's work, and it is far less disturbed by other load on the machine than a socket
benchmark (the best of ``--repeat`` runs is reported). Two request shapes: wrk's (a Host
field only) and a browser's (a dozen fields).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from typing import Any

from proxy.config import Config
from proxy.protocol import ClientConnection
from proxy.server import Server
from proxy.upstream import UpstreamConnection
from sws.route_table import RouteTable

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


def run(request: bytes, n: int) -> float:
    """Return the seconds per request of ``n`` exchanges of ``request`` on one connection."""
    server = Server(Config(access_log=False))
    server.clock = time.monotonic
    server.now = time.monotonic()
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
    upstream_in(RESPONSE)
    assert client_written and client_written[-1].startswith(b"HTTP/1.1 200 OK\r\n"), client_written
    assert backend.idle == [upstream] and not client_transport.closed
    gc.collect()
    start = time.process_time()
    for _ in range(n):
        client_in(request)
        upstream_in(RESPONSE)
    elapsed = time.process_time() - start
    assert len(client_written) == n + 1 and not client_transport.closed
    return elapsed / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for name, request in (("wrk", WRK), ("browser", BROWSER)):
        best = min(run(request, args.requests) for _ in range(args.repeat))
        print(f"{name:8s} {best * 1e6:6.2f} us per request (best of {args.repeat})")


if __name__ == "__main__":
    main()
