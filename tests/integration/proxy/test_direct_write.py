"""proxy.compiled.write: a direct send() on the hot path that keeps the transport's contract.

Compiled, ``write`` sends on the socket itself when the transport holds nothing queued, and
hands the transport whatever the socket did not take. These tests hold it to what
``transport.write`` promises: bytes arrive in the order written, flow control still pauses
the writer, and a closing transport is never written to behind its back (its descriptor
may already belong to another connection). They run on uvloop over real sockets, compiled
or not (tests/integration/proxy/test_compiled.py runs them again as Python).
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import uvloop

from proxy.compiled import write

CHUNK = 256 * 1024


class Writer(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: Any = None
        self.paused = 0
        self.lost = asyncio.Event()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.fd = transport.get_extra_info("socket").fileno()

    def pause_writing(self) -> None:
        self.paused += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = uvloop.new_event_loop()
    yield loop
    loop.close()


async def _pair(loop: asyncio.AbstractEventLoop) -> tuple[Writer, socket.socket]:
    """A transport writing to a plain socket that reads only when the test says so."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
    peer.setblocking(False)
    # Small buffers so a few hundred KiB fill the connection and the transport must queue.
    for s in (peer, ours):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    _, writer = await loop.connect_accepted_socket(Writer, ours)
    return writer, peer


async def _drain(loop: asyncio.AbstractEventLoop, peer: socket.socket, size: int) -> bytes:
    got = bytearray()
    while len(got) < size:
        got += await asyncio.wait_for(loop.sock_recv(peer, 65536), 10)
    return bytes(got)


def _payload(tag: int, size: int) -> bytes:
    return bytes((tag + i) % 251 for i in range(256)) * (size // 256)


def test_bytes_arrive_in_order_when_the_socket_fills(loop: asyncio.AbstractEventLoop) -> None:
    async def go() -> None:
        writer, peer = await _pair(loop)
        # The first write cannot all go at once: the rest waits in the transport, and the
        # writes after it must queue behind it, not jump ahead onto the socket.
        first = _payload(1, 4 * CHUNK)
        write(writer.transport, writer.fd, first)
        assert writer.transport.get_write_buffer_size() > 0
        assert writer.paused == 1, "flow control paused the writer"
        # The peer makes room on the socket before the loop has run, so the transport still
        # holds the rest of the first write; the writes after it must queue behind it, not
        # jump ahead onto the socket.
        got = bytearray()
        with contextlib.suppress(BlockingIOError):
            while True:
                got += peer.recv(65536)
        assert 0 < len(got) < len(first)
        # The socket has room again (the loop has not run, so the transport has not used it).
        assert select.select([], [writer.fd], [], 10)[1] == [writer.fd]
        rest = [b"second", _payload(7, CHUNK), b"last"]
        for part in rest:
            write(writer.transport, writer.fd, part)
        expected = first + b"".join(rest)
        got += await _drain(loop, peer, len(expected) - len(got))
        assert got == expected
        writer.transport.close()
        peer.close()

    loop.run_until_complete(go())


def test_an_idle_transport_is_written_whole(loop: asyncio.AbstractEventLoop) -> None:
    async def go() -> None:
        writer, peer = await _pair(loop)
        for i in range(100):
            write(writer.transport, writer.fd, b"%d;" % i)
        assert writer.transport.get_write_buffer_size() == 0
        expected = b"".join(b"%d;" % i for i in range(100))
        assert await _drain(loop, peer, len(expected)) == expected
        writer.transport.close()
        peer.close()

    loop.run_until_complete(go())


def test_a_closing_transport_is_not_written_behind_its_back(
    loop: asyncio.AbstractEventLoop,
) -> None:
    async def go() -> None:
        writer, peer = await _pair(loop)
        listener = socket.create_server(("127.0.0.1", 0))
        writer.transport.close()
        await asyncio.wait_for(writer.lost.wait(), 10)
        # The closed transport's descriptor number now belongs to another connection.
        other_peer = socket.create_connection(listener.getsockname())
        other, _ = listener.accept()
        listener.close()
        assert writer.fd in (other.fileno(), other_peer.fileno())
        # The transport's own answer to a write after close (uvloop drops it); nothing
        # reaches the socket that took the number.
        with contextlib.suppress(RuntimeError):
            write(writer.transport, writer.fd, b"after close")
        for s in (other, other_peer):
            s.setblocking(False)
            with pytest.raises(BlockingIOError):
                s.recv(100)
        assert await asyncio.wait_for(loop.sock_recv(peer, 100), 10) == b""
        for s in (peer, other, other_peer):
            s.close()

    loop.run_until_complete(go())


def test_a_reset_connection_is_reported_like_transport_write(
    loop: asyncio.AbstractEventLoop,
) -> None:
    async def go() -> None:
        writer, peer = await _pair(loop)
        peer.close()
        # The send fails; the transport is handed the bytes and finds the error itself.
        for _ in range(3):
            write(writer.transport, writer.fd, b"x" * 1000)
        await asyncio.wait_for(writer.lost.wait(), 10)

    loop.run_until_complete(go())
