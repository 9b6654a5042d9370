"""Backends, their keep-alive pools, and the protocol for one connection to a backend.

Theory of operation
-------------------
A ``Backend`` is one ``ip:port``. It counts the exchanges in flight on it (from the moment it
is chosen, so a connection still being set up counts) and keeps a LIFO stack of idle
keep-alive connections, bounded by ``upstream_max_idle``; the most recently used connection is
the one least likely to have been closed by the backend. A backend that refused a connection
is passed over for ``fail_timeout`` seconds while its siblings are up (``pick``).

An ``UpstreamConnection`` carries one exchange at a time. While attached it parses the
backend's response with httptools' ``HttpResponseParser`` and re-frames it for the client:
the head is rebuilt without hop-by-hop fields, bodies pass through piece by piece (re-chunked
when the backend used chunked coding or closed the connection to end the body), and writes
made while one read is parsed are joined into one ``transport.write``. When the response
ends, the connection goes back to its backend's pool if both sides allow keep-alive and the
whole request was sent; otherwise it is closed.

Response heads are rewritten once and remembered per backend, keyed by their bytes
(``ResponseHead``): a backend repeats its heads, often changing only Date once a second. A
response that arrives whole in one read, framed by Content-Length, with a head byte-for-byte
equal to one the parser accepted before, is relayed without the parser: the same bytes would
parse the same way, and the body's extent and keep-alive were remembered with the head.

A 101 answer to an upgrade request turns the pair into a tunnel: bytes are copied both ways
until either side closes. A tunnel keeps its backend through route swaps.

Flow control is symmetric: when one transport's write buffer passes its high-water mark the
other side's reading pauses, and resumes when the buffer drains, so a slow reader never makes
the proxy buffer a whole body.

HEAD responses: llhttp cannot be told that a response has no body, so the head callback
raises a sentinel that stops the parser after the head; the parser is then replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, cast

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserUpgrade,
    HttpResponseParser,
)

from proxy.compiled import socket_fd, span, write
from proxy.wire import (
    CHUNKED,
    CONNECTION_CLOSE,
    CONNECTION_KEEP_ALIVE,
    CRLF,
    LAST_CHUNK,
    STATUS_LINES,
    response_fields,
)
from sws.route_table import split_backend

if TYPE_CHECKING:
    from proxy.protocol import ClientConnection, Exchange
    from proxy.server import Server


_CACHED_HEADS = 64
_CACHED_HEAD_LIMIT = 2048


class _HeadDone(Exception):
    """Stops the response parser after the head of a response that has no body."""


class _BadResponse(Exception):
    """The backend sent something a proxy must not pass on."""


class ResponseHead:
    """A response head as the parser accepted it, rewritten for the client."""

    __slots__ = (
        "backend_keep_alive",
        "chunked",
        "close_head",
        "has_length",
        "keep_alive_head",
        "length",
        "prefix",
        "status",
        "upgrade",
        "whole",
    )

    def __init__(self, raw: bytes, status: int, keep_alive: bool) -> None:
        self.status = status
        # Leading empty lines are allowed before a status line; the fields follow it.
        raw = raw.lstrip(b"\r\n")
        fields = raw[raw.find(b"\r\n") :] if b"\r\n" in raw else b""
        fields, length, self.chunked, self.upgrade = response_fields(fields)
        self.has_length = length is not None
        self.prefix = STATUS_LINES[status] + (fields[2:] + CRLF if fields else b"")
        self.keep_alive_head = self.prefix + CONNECTION_KEEP_ALIVE + CRLF
        self.close_head = self.prefix + CONNECTION_CLOSE + CRLF
        self.backend_keep_alive = keep_alive
        # The parser accepted the head, so a Content-Length value is digits (and one value).
        self.length = int(length) if length is not None and length.strip().isdigit() else -1
        # A final answer framed by Content-Length can be relayed without the parser when
        # the whole of it arrives in one read (see UpstreamConnection._whole).
        self.whole = (
            self.length >= 0 and not self.chunked and status >= 200 and status not in (204, 304)
        )


class Backend:
    """One backend address: its in-flight count, idle pool and failure window."""

    __slots__ = (
        "addr",
        "connections",
        "failed_until",
        "heads",
        "host",
        "idle",
        "inflight",
        "port",
        "retired",
    )

    def __init__(self, addr: str) -> None:
        self.addr = addr
        self.host, self.port = split_backend(addr)
        self.inflight = 0
        self.connections = 0
        self.idle: list[UpstreamConnection] = []
        self.failed_until = 0.0
        self.heads: dict[bytes, ResponseHead] = {}
        # Set when a route swap dropped this backend: its connections finish what they carry
        # and then close instead of going back to the pool.
        self.retired = False

    def head(self, raw: bytes, status: int, keep_alive: bool) -> ResponseHead:
        """Return the rewritten form of a response head the parser has just accepted.

        A backend tends to send the same head again and again (often only Date differs from
        one second to the next), so heads are remembered, keyed by their bytes.
        """
        heads = self.heads
        head = heads.get(raw)
        if head is None:
            head = ResponseHead(raw, status, keep_alive)
            if len(raw) <= _CACHED_HEAD_LIMIT:
                if len(heads) >= _CACHED_HEADS:
                    heads.clear()
                heads[raw] = head
        return head

    def close_idle(self) -> None:
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.transport.close()


class UpstreamConnection:
    """One keep-alive connection to a backend, carrying one exchange at a time."""

    def __init__(self, server: Server, backend: Backend) -> None:
        self.server = server
        self.backend = backend
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.fd = -1
        self.parser = HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.raw = b""
        self.out: list[bytes] = []
        self.closed = False
        self.reused = False
        self.deadline = 0.0
        self.idle = False
        self.read_paused = False
        self.write_paused = False
        self.tunnel: ClientConnection | None = None
        # The remembered head (see Backend.head) this connection relayed last, and its bytes.
        self.last_raw = b""
        self.last_head: ResponseHead | None = None
        self._reset()

    def _reset(self) -> None:
        # The state of one response (compiled, calling this costs a C call; see upstream.pxd).
        self.done = False
        self.interim = False
        self.upgraded = False
        self.chunked_out = False
        self.close_delimited = False
        self.got_bytes = False
        self.head_sent = False
        self.head_only = False
        self.keep_alive = False
        self.continued = False
        self.raw = b""

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)
        self.fd = socket_fd(transport)
        self.server.upstreams.add(self)
        self.backend.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.upstreams.discard(self)
        backend = self.backend
        backend.connections -= 1
        if self.idle:
            self.idle = False
            with contextlib.suppress(ValueError):
                backend.idle.remove(self)
        if self.tunnel is not None:
            backend.inflight -= 1
            client, self.tunnel = self.tunnel, None
            client.transport.close()
            return
        ex = self.exchange
        if ex is None:
            return
        if self.head_sent and self.close_delimited:
            # The backend ended the body the only way it could: by closing.
            if self.chunked_out:
                ex.client.transport.write(LAST_CHUNK)
            self.keep_alive = False
            self._finish()
        elif not self.got_bytes and self.reused and ex.replayable and ex.attempts < 3:
            # A pooled connection the backend had already closed: nothing was answered and
            # the request has no body, so it is safe to send again on a fresh connection.
            self._detach()
            ex.client.redispatch(ex)
        else:
            self.fail(502, f"backend {backend.addr} closed the connection before answering")

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.transport.write(data)
            return
        ex = self.exchange
        if ex is None:
            # Bytes on an idle connection: the backend is out of step; do not reuse it.
            self.transport.close()
            return
        self.got_bytes = True
        self.deadline = self.server.now + self.server.upstream_timeout
        if not self.head_sent:
            # Keep the bytes of a head still being received: it is rewritten from them.
            if self.raw:
                self.raw += data
            else:
                # Mostly the head this connection relayed last: compared in place, with no
                # search for its end and no key cut out and hashed. (A remembered head holds
                # no blank line and does not end in CRLF, so where it ends is where the first
                # blank line starts.)
                last = self.last_raw
                end = len(last)
                if end and data.startswith(last) and data.startswith(b"\r\n\r\n", end):
                    head = self.last_head
                else:
                    head = None
                    end = data.find(b"\r\n\r\n")
                    if end > 0:
                        last = data[:end]
                        head = self.backend.heads.get(last)
                        if head is not None:
                            self.last_raw = last
                            self.last_head = head
                if (
                    head is not None
                    and head.whole
                    and head.length == len(data) - end - 4
                    and not ex.is_head
                    and not ex.upgrade
                ):
                    self._whole(ex, head, data, end + 4)
                    return
                self.raw = data
        out = self.out
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as exc:
            self._flush(out, ex)
            if self.upgraded:
                self._start_tunnel(ex, data[exc.args[0] :])
            else:
                self.fail(502, f"backend {self.backend.addr} switched protocols unasked")
            return
        except HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadDone):
                self.parser = HttpResponseParser(self)
                # Reuse only if the head ended exactly where this read did; anything after
                # it would be a body the backend should not have sent.
                if data.find(b"\r\n\r\n") != len(data) - 4:
                    self.keep_alive = False
            else:
                self._flush(out, ex)
                self._parse_failed(exc.__context__ or exc)
                return
        except HttpParserError as exc:
            self._flush(out, ex)
            self._parse_failed(exc)
            return
        self._flush(out, ex)
        if self.done:
            self._finish()

    def _flush(self, out: list[bytes], ex: Exchange) -> None:
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            client = ex.client
            if not client.closed:
                write(client.transport, client.fd, data)

    def _parse_failed(self, exc: BaseException) -> None:
        if isinstance(exc, _BadResponse):
            self.fail(502, f"backend {self.backend.addr} sent {exc}")
        elif isinstance(exc, HttpParserError):
            self.fail(502, f"backend {self.backend.addr} sent an invalid response ({exc})")
        else:
            self.server.log_error("upstream_callback_failed", exc)
            self.fail(502, f"backend {self.backend.addr} response could not be relayed")

    def pause_writing(self) -> None:
        self.write_paused = True
        client = self.tunnel or (self.exchange.client if self.exchange else None)
        if client is not None:
            client.block(1)

    def resume_writing(self) -> None:
        self.write_paused = False
        client = self.tunnel or (self.exchange.client if self.exchange else None)
        if client is not None:
            client.unblock(1)

    def eof_received(self) -> bool | None:
        return None

    # -- httptools callbacks ----------------------------------------------------------------

    # No on_header: the head is rewritten from the raw bytes (see response_fields).

    def on_headers_complete(self) -> None:
        ex = self.exchange
        if ex is None:
            raise _BadResponse("a response nobody asked for")
        parser = self.parser
        status = parser.get_status_code()
        if status >= 1000:
            raise _BadResponse(f"status {status}")
        raw = self.raw
        end = raw.find(b"\r\n\r\n")
        head = self.backend.head(raw[:end], status, parser.should_keep_alive())
        self.raw = raw[end + 4 :]
        out = self.out
        if status < 200:
            if status == 101:
                upgrade = head.upgrade
                if not ex.upgrade or upgrade is None:
                    raise _BadResponse("101 Switching Protocols to a request that asked none")
                self.upgraded = True
                ex.status = 101
                ex.response_started = True
                self.head_sent = True
                out.append(head.prefix + b"Connection: upgrade\r\nUpgrade: %s\r\n\r\n" % upgrade)
                return
            # An interim answer (100 Continue, 103 Early Hints): pass it on and wait for the
            # final one. HTTP/1.0 clients do not know 1xx.
            self.interim = True
            if status == 100:
                self.continued = True
            if not ex.http10:
                out.append(head.prefix + CRLF)
            return
        ex.status = status
        keep = ex.keep_alive and not ex.client.closing and not self.server.draining
        if ex.upgrade:
            # The backend declined the upgrade; the client may already be sending the new
            # protocol, so this connection ends with this answer.
            keep = False
        if not ex.complete and ex.expect and not self.continued:
            # Whether the client will still send the body it announced is unknown.
            keep = False
        if ex.is_head or status == 204 or status == 304:
            self.head_only = ex.is_head
        elif not head.has_length:
            self.close_delimited = not head.chunked
            if ex.http10:
                keep = False
            else:
                self.chunked_out = True
                ex.close_after = not keep
                out.append(
                    head.prefix
                    + CHUNKED
                    + (CONNECTION_KEEP_ALIVE if keep else CONNECTION_CLOSE)
                    + CRLF
                )
                ex.response_started = True
                self.head_sent = True
                self.raw = b""
                return
        ex.close_after = not keep
        out.append(head.keep_alive_head if keep else head.close_head)
        ex.response_started = True
        self.head_sent = True
        self.raw = b""
        if self.head_only:
            self.keep_alive = parser.should_keep_alive()
            self.done = True
            raise _HeadDone

    def _whole(self, ex: Exchange, head: ResponseHead, data: bytes, start: int) -> None:
        """Relay a response that came whole in one read and whose head was seen before.

        The same bytes were accepted by the parser before, so they are valid again; what
        the parser would add (the body's extent, keep-alive) was remembered with the head.
        The exchange-dependent decisions are the ones ``on_headers_complete`` makes.
        """
        ex.status = head.status
        keep = (
            ex.keep_alive
            and not ex.client.closing
            and not self.server.draining
            and (ex.complete or not ex.expect or self.continued)
        )
        ex.close_after = not keep
        ex.response_started = True
        self.head_sent = True
        ex.bytes_out += head.length
        client = ex.client
        if not client.closed:
            write(
                client.transport,
                client.fd,
                (head.keep_alive_head if keep else head.close_head) + span(data, start, len(data)),
            )
        self.keep_alive = head.backend_keep_alive
        self.done = True
        self._finish()

    def on_body(self, body: bytes) -> None:
        ex = self.exchange
        assert ex is not None
        ex.bytes_out += len(body)
        if self.chunked_out:
            self.out.append(b"%x\r\n%b\r\n" % (len(body), body))
        else:
            self.out.append(body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        if self.upgraded:
            return
        if self.chunked_out:
            self.out.append(LAST_CHUNK)
        self.keep_alive = self.parser.should_keep_alive()
        self.done = True

    # -- exchange life cycle ---------------------------------------------------------------

    def carry(self, ex: Exchange) -> None:
        """Take on an exchange and send what it holds so far."""
        self.exchange = ex
        ex.upstream = self
        self.idle = False
        self._reset()
        self.deadline = self.server.now + self.server.upstream_timeout
        if ex.client.write_paused:
            self.pause_reading()
        elif self.read_paused:
            self.resume_reading()
        self.send(ex)

    def send(self, ex: Exchange) -> None:
        pending = ex.pending
        if pending:
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            pending.clear()
            ex.pending_bytes = 0
            write(self.transport, self.fd, data)

    def _detach(self) -> Exchange | None:
        ex = self.exchange
        if ex is None:
            return None
        self.exchange = None
        ex.upstream = None
        self.backend.inflight -= 1
        if self.write_paused:
            self.write_paused = False
            ex.client.unblock(1)
        return ex

    def _finish(self) -> None:
        """The response is relayed whole: pool the connection if it can carry another."""
        ex = self.exchange
        assert ex is not None
        self.exchange = None
        ex.upstream = None
        backend = self.backend
        backend.inflight -= 1
        client = ex.client
        if self.write_paused:
            self.write_paused = False
            client.unblock(1)
        server = self.server
        if (
            self.keep_alive
            and ex.complete
            and not ex.pending
            and not self.closed
            and not backend.retired
            and not server.stopping
            and len(backend.idle) < self.server.upstream_max_idle
        ):
            self.reused = True
            if self.read_paused:
                self.resume_reading()
            self.idle = True
            self.deadline = server.now + self.server.upstream_idle_timeout
            backend.idle.append(self)
        else:
            self.transport.close()
        client.response_done(ex)

    def release(self) -> None:
        """Return this connection to its backend's idle pool, or close it if the pool is full."""
        backend = self.backend
        if self.closed or backend.retired or len(backend.idle) >= self.server.upstream_max_idle:
            self.transport.close()
            return
        if self.read_paused:
            self.resume_reading()
        self.idle = True
        self.deadline = self.server.now + self.server.upstream_idle_timeout
        backend.idle.append(self)

    def fail(self, status: int, message: str) -> None:
        """Give up on the attached exchange: answer the client if it has no head yet."""
        self.transport.close()
        ex = self._detach()
        if ex is None:
            return
        if ex.response_started:
            ex.client.abort(ex, status)
        else:
            ex.client.respond_local(ex, status, message)

    def abort(self) -> None:
        """Drop the attached exchange because its client went away or broke the request."""
        self._detach()
        self.transport.close()

    def timed_out(self) -> None:
        if self.idle or self.exchange is None:
            self.transport.close()
            return
        self.fail(
            504,
            f"backend {self.backend.addr} did not answer within {self.server.upstream_timeout:g}s",
        )

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.deadline = 0.0
            if not self.closed:
                self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            if self.exchange is not None:
                self.deadline = self.server.now + self.server.upstream_timeout
            if not self.closed:
                self.transport.resume_reading()

    def _start_tunnel(self, ex: Exchange, rest: bytes) -> None:
        client = ex.client
        self.exchange = None
        ex.upstream = None
        self.deadline = 0.0
        self.tunnel = client
        # The backend stays counted in flight for as long as the tunnel is open.
        client.start_tunnel(ex, self)
        if rest:
            client.transport.write(rest)
