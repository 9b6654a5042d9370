from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time

from tests.integration.loadbalancer.backends import BulkServer, pattern_block
from tests.integration.loadbalancer.conftest import wait_for

SIZE = 50 * 1024 * 1024


def expected_reply_digest(size: int) -> str:
    digest = hashlib.sha256()
    block = pattern_block()
    remaining = size
    while remaining > 0:
        piece = block[: min(len(block), remaining)]
        digest.update(piece)
        remaining -= len(piece)
    return digest.hexdigest()


def test_large_transfer_both_ways_with_half_close(balancer_factory) -> None:
    bulk = BulkServer(reply_size=SIZE).start()
    try:
        lb = balancer_factory(f"bulk={bulk.address}")
        upload = hashlib.sha256()
        sent = 0
        with lb.connect() as sock:
            sock.settimeout(30)

            def send() -> None:
                nonlocal sent
                block = hashlib.sha256(b"up").digest() * (1 << 14)  # 512 KiB
                while sent < SIZE:
                    piece = block[: min(len(block), SIZE - sent)]
                    upload.update(piece)
                    sock.sendall(piece)
                    sent += len(piece)
                # Half-close: the backend only answers after it has seen our EOF.
                sock.shutdown(socket.SHUT_WR)

            sender = threading.Thread(target=send)
            sender.start()
            received = bytearray()
            while chunk := sock.recv(1 << 20):
                received += chunk
            sender.join()

        header, _, body = bytes(received).partition(b"\n")
        count, digest = header.decode().split()
        assert int(count) == SIZE
        assert digest == upload.hexdigest()
        assert len(body) == SIZE
        assert hashlib.sha256(body).hexdigest() == expected_reply_digest(SIZE)
        wait_for(lambda: lb.admin.backend("bulk")["open_connections"] == 0)
    finally:
        bulk.stop()


def test_client_half_close_still_gets_the_reply(balancer_factory) -> None:
    bulk = BulkServer(reply_size=1000).start()
    try:
        lb = balancer_factory(f"bulk={bulk.address}")
        with lb.connect() as sock:
            sock.sendall(b"hello")
            sock.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := sock.recv(4096):
                received += chunk
        header, _, body = received.partition(b"\n")
        assert header.decode() == f"5 {hashlib.sha256(b'hello').hexdigest()}"
        assert len(body) == 1000
    finally:
        bulk.stop()


def test_bytes_sent_before_the_upstream_is_up_arrive_in_order(balancer_factory) -> None:
    bulk = BulkServer(reply_size=0).start()
    try:
        lb = balancer_factory(f"bulk={bulk.address}")
        payload = bytes(range(256)) * 4096  # 1 MiB, larger than the connect buffer
        with lb.connect() as sock:
            # Everything, EOF included, goes out at once, before the balancer can have
            # finished connecting upstream.
            sender = threading.Thread(
                target=lambda: (sock.sendall(payload), sock.shutdown(socket.SHUT_WR))
            )
            sender.start()
            received = b""
            while chunk := sock.recv(4096):
                received += chunk
            sender.join()
        assert received == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}\n".encode()
    finally:
        bulk.stop()


def test_backend_reset_closes_the_client(balancer_factory) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        lb = balancer_factory(f"r=127.0.0.1:{port}", check_interval=60.0)
        with lb.connect() as sock:
            sock.sendall(b"x")
            # Health checks connect here too; the relayed connection is the one carrying "x".
            while True:
                conn, _ = listener.accept()
                if conn.recv(1, socket.MSG_PEEK) == b"x":
                    break
                conn.close()
            # SO_LINGER 0: close sends a reset instead of a FIN.
            conn.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            conn.close()
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(10) == b""
        wait_for(lambda: lb.admin.backend("r")["open_connections"] == 0)
    finally:
        listener.close()


def test_a_client_that_does_not_read_holds_the_backend_back(balancer_factory) -> None:
    """Flow control: the balancer must not soak up a stream its client is not reading."""
    total = 128 * 1024 * 1024
    listener = socket.create_server(("127.0.0.1", 0))
    sent = 0
    done = threading.Event()

    def stream() -> None:
        nonlocal sent
        while True:
            conn, _ = listener.accept()
            if conn.recv(1) == b"g":  # not a health check
                break
            conn.close()
        block = b"x" * (1 << 16)
        with conn:
            while sent < total:
                conn.sendall(block)
                sent += len(block)
        done.set()

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    try:
        lb = balancer_factory(f"s=127.0.0.1:{listener.getsockname()[1]}")
        with lb.connect() as sock:
            sock.sendall(b"g")
            # Wait until the backend can push no further: the amount stops growing.
            seen: list[int] = []

            def stalled() -> bool:
                seen.append(sent)
                return len(seen) > 20 and seen[-1] == seen[-20] > 0

            wait_for(stalled, timeout=10, interval=0.02)
            held_back = sent
            received = 0
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
        assert done.is_set()
        assert received == total
        # Kernel socket buffers on two hops account for a few MiB; the balancer itself may
        # hold two 256 KiB write buffers. Without flow control it would take all 128 MiB.
        assert held_back < 32 * 1024 * 1024, f"{held_back} bytes left the backend unread"
    finally:
        listener.close()


def accept_relayed(listener: socket.socket, first: bytes) -> socket.socket:
    """Accept until the connection whose first byte is ``first`` (skipping health checks)."""
    while True:
        conn, _ = listener.accept()
        if conn.recv(1) == first:
            return conn
        conn.close()


def test_a_silent_half_closed_connection_is_ended(balancer_factory) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    backend_saw_close = threading.Event()

    def serve() -> None:
        with accept_relayed(listener, b"q") as conn:
            conn.sendall(b"bye")
            conn.shutdown(socket.SHUT_WR)
            if conn.recv(10) == b"":
                backend_saw_close.set()

    threading.Thread(target=serve, daemon=True).start()
    try:
        lb = balancer_factory(f"h=127.0.0.1:{listener.getsockname()[1]}", half_close_timeout=0.3)
        with lb.connect() as sock:
            sock.sendall(b"q")
            received = b""
            while chunk := sock.recv(10):
                received += chunk
            assert received == b"bye"
            # The client has the backend's EOF but keeps its own side open, silently.
            wait_for(lambda: lb.admin.backend("h")["open_connections"] == 0, timeout=5)
            assert backend_saw_close.wait(5)
        _, _, metrics = lb.admin.request("GET", "/metrics")
        assert "sws_lb_half_close_timeouts_total 1\n" in metrics.decode()
    finally:
        listener.close()


def test_a_busy_half_closed_transfer_outlives_the_timeout(balancer_factory) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    chunks = 20

    def serve() -> None:
        with accept_relayed(listener, b"q") as conn:
            assert conn.recv(10) == b""  # the client's EOF, passed through
            for i in range(chunks):
                conn.sendall(b"%02d" % i)
                time.sleep(0.05)  # a slow producer: 1 s in all, the timeout is 0.2 s

    threading.Thread(target=serve, daemon=True).start()
    try:
        lb = balancer_factory(f"h=127.0.0.1:{listener.getsockname()[1]}", half_close_timeout=0.2)
        with lb.connect() as sock:
            sock.sendall(b"q")
            sock.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := sock.recv(100):
                received += chunk
        assert received == b"".join(b"%02d" % i for i in range(chunks))
    finally:
        listener.close()
