"""swsctl's client against a server that closes a kept-alive connection under a request."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from swsctl.client import ApiClient

BODY = json.dumps({"services": []}).encode()
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
)


class ClosingServer:
    """Answers the first request on each connection, then closes it when the next arrives.

    That is what a client meets when a draining proxy closes an idle keep-alive connection
    at the moment the client sends on it again.
    """

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.closed_under_request = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            if not _read_head(conn):
                return
            conn.sendall(ANSWER)
            if _read_head(conn):
                self.closed_under_request += 1
            conn.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )

    def close(self) -> None:
        self.sock.close()


def _read_head(conn: socket.socket) -> bool:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        data += chunk
    return True


@pytest.fixture
def server() -> Iterator[ClosingServer]:
    s = ClosingServer()
    yield s
    s.close()


def test_a_request_on_a_connection_closed_under_it_is_sent_again(server: ClosingServer) -> None:
    client = ApiClient(f"http://127.0.0.1:{server.port}", "token")
    try:
        for _ in range(3):
            assert client.list_services() == []
    finally:
        client.close()
    # Each later request met a closed connection and went out again on a new one.
    assert server.closed_under_request == 2
    assert server.connections == 3
