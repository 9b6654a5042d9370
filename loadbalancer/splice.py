"""Byte splicing between a client connection and the backend chosen for it.

Theory of operation
-------------------
A client connection (``ClientSide``) is accepted, a backend is picked from the pool and an
upstream connection (``UpstreamSide``) is opened to it. Until the upstream is up, the
client's bytes are held in memory (and the client is paused once ``connect_buffer`` bytes
are held), so a backend that refuses or does not answer within ``connect_timeout`` can be
replaced by another before the client notices: the failed backend is marked down and the
next one is tried, each backend at most once. Only when every candidate failed is the
client closed.

Once both sides are up, each ``data_received`` is written straight to the other transport.
Flow control follows the transports' write buffers: when one side's buffer rises above its
high-water mark (``pause_writing``), reading from the other side stops, and starts again
when the buffer drains (``resume_writing``). Memory per connection is thus bounded by the
two write buffers.

Half-close is passed through: EOF from one side becomes ``write_eof`` on the other, and the
pair is closed once both directions have ended. If one side is lost, the other is closed
after its pending bytes are written, or aborted when the loss was an error (a reset).

A half-closed pair can outlive its use: a client that has its answer and the backend's EOF
may simply never close. Once one direction has ended, the pair must keep moving bytes in
the other: after ``half_close_timeout`` seconds without a byte either way it is aborted.
A busy half-closed transfer (an upload after the client's EOF, a long download) is not
affected; only silence is.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Sequence
from typing import cast

from loadbalancer import logfmt
from loadbalancer.health import describe
from loadbalancer.pool import Backend, Pool
from loadbalancer.resolver import Resolver

log = logging.getLogger(logfmt.LOGGER_NAME)

# Larger than the loop's 64 KiB default: fewer pause/resume round trips on bulk transfers,
# still a small bound per connection.
WRITE_HIGH_WATER = 256 * 1024


class Relay:
    """What every spliced connection shares: the pool, the limits and the open clients."""

    def __init__(
        self,
        pool: Pool,
        resolver: Resolver,
        connect_timeout: float,
        connect_buffer: int,
        half_close_timeout: float,
    ) -> None:
        # Kept rather than asked for: get_running_loop() costs a getpid() system call.
        self.loop = asyncio.get_running_loop()
        self.pool = pool
        self.resolver = resolver
        self.connect_timeout = connect_timeout
        self.connect_buffer = connect_buffer
        self.half_close_timeout = half_close_timeout
        self.half_close_expired = 0
        # A storm of clients while every backend is down must not become a storm of logs.
        self._refusal_logged_at = -math.inf
        self._refused_quietly = 0
        self.clients: set[ClientSide] = set()
        self.accepted = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def refuse(self, transport: asyncio.Transport, tried: Sequence[Backend]) -> None:
        """Close a client no backend could take; log it, at most once a second."""
        self.pool.no_backend += 1
        self._refused_quietly += 1
        now = self.loop.time()
        if now >= self._refusal_logged_at + 1.0:
            logfmt.emit(
                log,
                logging.WARNING,
                "no_backend",
                client=_peer(transport),
                tried=",".join(b.name for b in tried) or "-",
                clients_refused=self._refused_quietly,
            )
            self._refusal_logged_at = now
            self._refused_quietly = 0
        transport.close()

    def protocol(self) -> ClientSide:
        return ClientSide(self)

    def opened(self, client: ClientSide) -> None:
        self.clients.add(client)
        self.accepted += 1
        self._idle.clear()

    def closed(self, client: ClientSide) -> None:
        self.clients.discard(client)
        if not self.clients:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()

    def abort_all(self) -> None:
        for client in list(self.clients):
            client.abort()


class ClientSide(asyncio.Protocol):
    """The client's connection; it also owns the pair's shared bookkeeping."""

    __slots__ = (
        "_connect_task",
        "_half_close_timer",
        "_pending",
        "_pending_size",
        "_seen_moves",
        "closed",
        "eof",
        "moves",
        "relay",
        "transport",
        "upstream",
    )

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.transport: asyncio.Transport | None = None
        self.upstream: UpstreamSide | None = None
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._connect_task: asyncio.Task[None] | None = None
        self._half_close_timer: asyncio.TimerHandle | None = None
        # Chunks moved either way; the half-close timer compares it to _seen_moves.
        self.moves = 0
        self._seen_moves = 0
        self.eof = False
        self.closed = False

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but behave as one.
        transport = cast(asyncio.Transport, base)
        self.transport = transport
        transport.set_write_buffer_limits(WRITE_HIGH_WATER)
        relay = self.relay
        relay.opened(self)
        backend = relay.pool.pick()
        if backend is None:
            relay.refuse(transport, tried=())
            return
        self._connect_task = relay.loop.create_task(self._connect(backend))

    async def _connect(self, backend: Backend | None) -> None:
        relay = self.relay
        pool = relay.pool
        loop = relay.loop
        tried: list[Backend] = []
        while backend is not None:
            address = backend.address
            try:
                async with asyncio.timeout(relay.connect_timeout):
                    upstream = await self._open(loop, backend)
            except Exception as exc:  # any failure to connect means: try the next backend
                relay.resolver.forget(address)
                pool.release(backend)
                pool.record_connect_failure(backend, describe(exc))
                tried.append(backend)
                if self.closed:
                    return
                backend = pool.pick(exclude=tried)
                if backend is not None:
                    pool.retries += 1
                    logfmt.emit(
                        log,
                        logging.INFO,
                        "connect_retry",
                        failed=tried[-1].name,
                        next=backend.name,
                    )
                continue
            backend.total_connections += 1
            self._attach(upstream)
            return
        assert self.transport is not None
        relay.refuse(self.transport, tried)

    async def _open(self, loop: asyncio.AbstractEventLoop, backend: Backend) -> UpstreamSide:
        """Connect to the backend's first address that accepts, as create_connection would."""
        address = backend.address
        factory = functools.partial(UpstreamSide, self, backend)
        resolver = self.relay.resolver
        hosts = resolver.cached(address, loop.time()) or await resolver.hosts(address)
        for host in hosts[:-1]:
            try:
                return (await loop.create_connection(factory, host, address.port))[1]
            except OSError:
                continue
        return (await loop.create_connection(factory, hosts[-1], address.port))[1]

    def _attach(self, upstream: UpstreamSide) -> None:
        assert self.transport is not None and upstream.transport is not None
        if self.closed:
            upstream.transport.close()
            return
        self.upstream = upstream
        self._connect_task = None
        # Resume before flushing: if the flush fills the upstream buffer, its pause_writing
        # must be the last word on whether the client is read.
        if self._pending_size >= self.relay.connect_buffer:
            self.transport.resume_reading()
        if self._pending:
            upstream.transport.writelines(self._pending)
            self._pending = []
        if self.eof:
            upstream.transport.write_eof()
            self.half_closed()

    def half_closed(self) -> None:
        """One direction has ended: from now on, silence ends the pair."""
        if self._half_close_timer is None and not self.closed:
            self._seen_moves = self.moves
            self._half_close_timer = self.relay.loop.call_later(
                self.relay.half_close_timeout, self._half_close_check
            )

    def _half_close_check(self) -> None:
        if self.closed:
            return
        if self.moves != self._seen_moves:
            self._seen_moves = self.moves
            self._half_close_timer = self.relay.loop.call_later(
                self.relay.half_close_timeout, self._half_close_check
            )
            return
        self.relay.half_close_expired += 1
        logfmt.emit(
            log,
            logging.INFO,
            "half_close_timeout",
            client=_peer(self.transport) if self.transport else "-",
            backend=self.upstream.backend.name if self.upstream else "-",
        )
        self.abort()

    def data_received(self, data: bytes) -> None:
        upstream = self.upstream
        if upstream is not None:
            self.moves += 1
            upstream.transport.write(data)  # type: ignore[union-attr]
            return
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= self.relay.connect_buffer:
            self.transport.pause_reading()  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        self.eof = True
        upstream = self.upstream
        if upstream is not None:
            if upstream.eof:
                upstream.transport.close()  # type: ignore[union-attr]
                self.transport.close()  # type: ignore[union-attr]
            else:
                upstream.transport.write_eof()  # type: ignore[union-attr]
                self.half_closed()
        return True

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.transport.pause_reading()  # type: ignore[union-attr]

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.transport.resume_reading()  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.relay.closed(self)
        self._pending = []
        if self._half_close_timer is not None:
            self._half_close_timer.cancel()
        # A connect still under way is left to finish (within connect_timeout): cancelling
        # it could drop a just-opened upstream connection on the floor. _attach closes it.
        upstream = self.upstream
        if upstream is not None:
            if exc is None:
                upstream.transport.close()  # type: ignore[union-attr]
            else:
                upstream.transport.abort()  # type: ignore[union-attr]

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class UpstreamSide(asyncio.Protocol):
    __slots__ = ("backend", "client", "eof", "transport")

    def __init__(self, client: ClientSide, backend: Backend) -> None:
        self.client = client
        self.backend = backend
        self.transport: asyncio.Transport | None = None
        self.eof = False

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but behave as one.
        transport = cast(asyncio.Transport, base)
        self.transport = transport
        transport.set_write_buffer_limits(WRITE_HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        client = self.client
        client.moves += 1
        client.transport.write(data)  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        self.eof = True
        client = self.client
        if client.eof:
            client.transport.close()  # type: ignore[union-attr]
            self.transport.close()  # type: ignore[union-attr]
        else:
            client.transport.write_eof()  # type: ignore[union-attr]
            client.half_closed()
        return True

    def pause_writing(self) -> None:
        self.client.transport.pause_reading()  # type: ignore[union-attr]

    def resume_writing(self) -> None:
        self.client.transport.resume_reading()  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.relay.pool.release(self.backend)
        client_transport = self.client.transport
        if client_transport is None or self.client.closed:
            return
        if exc is None:
            client_transport.close()
        else:
            client_transport.abort()


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return "-"
