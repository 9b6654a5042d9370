"""Real servers for balancer tests: an HTTP backend that names itself, and a bulk backend.

Run as a program (``python -m tests.integration.loadbalancer.backends --name a``) it serves
the HTTP backend in its own process and prints ``port=N`` once listening, so a test can
kill it with SIGKILL.
"""

from __future__ import annotations

import argparse
import hashlib
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: NamedHttpServer

    def do_GET(self) -> None:
        if self.path == "/healthz":
            status = 200 if self.server.healthy else 503
            self._reply(status, b"ok\n" if status == 200 else b"failing\n")
            return
        if self.path.startswith("/slow"):
            time.sleep(self.server.slow_seconds)
        self._reply(200, self.server.name.encode())

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class NamedHttpServer(ThreadingHTTPServer):
    """Answers every GET with its own name; /healthz answers 200 or 503 as told."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, name: str, port: int = 0, slow_seconds: float = 0.01) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.name = name
        self.healthy = True
        self.slow_seconds = slow_seconds
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> NamedHttpServer:
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: new connects are refused from here on."""
        self.shutdown()
        self.server_close()


class _BulkHandler(socketserver.BaseRequestHandler):
    """Read to EOF, answer with the sha256 of what came, then stream bytes back and close."""

    server: BulkServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        digest = hashlib.sha256()
        received = 0
        while chunk := sock.recv(1 << 16):
            digest.update(chunk)
            received += len(chunk)
        sock.sendall(f"{received} {digest.hexdigest()}\n".encode())
        remaining = self.server.reply_size
        block = pattern_block()
        while remaining > 0:
            piece = block[: min(len(block), remaining)]
            sock.sendall(piece)
            remaining -= len(piece)
        sock.shutdown(socket.SHUT_WR)
        # Wait for the far end to close, so the test sees an orderly end, not a reset.
        while sock.recv(1 << 16):
            pass


def pattern_block() -> bytes:
    """A deterministic 1 MiB block; replies are this block repeated and cut to size."""
    return hashlib.sha256(b"sws").digest() * (1 << 15)


class BulkServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, reply_size: int) -> None:
        super().__init__(("127.0.0.1", 0), _BulkHandler)
        self.reply_size = reply_size

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def start(self) -> BulkServer:
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--slow", type=float, default=0.01)
    args = parser.parse_args()
    server = NamedHttpServer(args.name, slow_seconds=args.slow)
    print(f"port={server.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
