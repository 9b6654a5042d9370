"""The client side of the proxy: one protocol object per client connection.

Theory of operation
-------------------
Bytes from the client go straight into httptools' ``HttpRequestParser`` (llhttp, strict
mode). Its callbacks build one ``Exchange`` per request: ``on_url`` opens it, ``on_header``
renders each ordinary field for upstream as it comes and notes the special ones (framing,
hop-by-hop, Host, X-Forwarded-*), ``on_headers_complete`` judges those (the smuggling rules:
no Content-Length with Transfer-Encoding, one Content-Length value, chunked as the only
coding), finishes the head to send upstream (hop-by-hop fields removed, the framing field
the proxy's own, X-Forwarded-* and X-Request-Id added) and queues the exchange;
``on_body`` appends body pieces, re-chunked when needed, and ``on_message_complete`` marks
the request whole. A callback that finds a broken rule raises ``Refusal``, which stops the
parser; the refusal is answered in turn and the connection then closes, so nothing after a
framing error is ever read as a request. (Rules broken by a field are noted when the field
arrives and raised once the head is complete, the first one first.)

Compiled (see setup.py), a plain GET or HEAD whose whole head is in the read skips all of
that: ``_simple_heads`` checks it against a strict subset of what llhttp accepts, makes its
exchange directly and sends the head on as received with the proxy's fields added (the
rules are in its docstring and docs/proxy.md). Anything else goes to llhttp as above.

Exchanges are answered strictly in order. ``active`` is the one being answered; requests
pipelined behind it wait in ``queue`` with their bodies held (reading pauses once
``buffer_limit`` bytes are held). Starting an exchange looks its Host up in the route table
in force at that moment, so a keep-alive connection picks up a new table on its next
request while a request already started keeps the backend it got. The backend is the one
with the fewest exchanges in flight; a pooled connection to it is reused or a new one opened.
A refused or timed-out connect is retried on another backend (nothing has been sent yet);
when none is left the client gets 502 (refused) or 504 (timeout).

Parsing and starting are split: the parser runs over a whole read first and exchanges are
started after it returns, so a head and the body that arrived with it go upstream in one
write, and a request whose framing turns out bad later in the same read is never sent.

Deadlines are not timers: each connection keeps one ``deadline`` and what it means
(``kind``), and the server's tick closes or answers whatever has passed its deadline. That
costs one float store per state change instead of a timer per request.

Draining: idle connections close at once; a busy one answers its current request with
``Connection: close`` when the head is still unsent, and closes once the answer is out.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from httptools import (
    HttpParserCallbackError,
    HttpParserError,
    HttpParserUpgrade,
    HttpRequestParser,
)

from proxy.compiled import COMPILED, socket_fd, span
from proxy.upstream import Backend, UpstreamConnection
from proxy.wire import (
    CHUNKED,
    CRLF,
    LAST_CHUNK,
    REQUEST_SPECIAL,
    connection_tokens,
    local_response,
)

if TYPE_CHECKING:
    from proxy.server import Server

# What a connection's deadline means.
K_NONE = 0  # no deadline: waiting on a backend, whose own deadline applies
K_IDLE = 1  # between requests on a keep-alive connection
K_HEAD = 2  # reading a request head
K_BODY = 3  # reading a request body
K_LINGER = 4  # closing: discarding input until the client has read our last answer

# Why reading from the client is paused (bits).
R_UPSTREAM = 1  # the backend's socket buffer is full
R_BUFFER = 2  # too many request bytes held for exchanges not yet sent
R_STOP = 4  # nothing more will be read as HTTP (refusal, upgrade in progress)

BODY_NONE = 0
BODY_LENGTH = 1
BODY_CHUNKED = 2

_PIPELINE_LIMIT = 32
_HOST = frozenset({b"host"})
_CONNECTION_KEYWORDS = frozenset({b"close", b"keep-alive", b"upgrade"})


def _table(*ranges: bytes) -> bytes:
    """A 256-byte table with 1 at each byte value listed (for the simple-head scanner)."""
    table = bytearray(256)
    for chars in ranges:
        for c in chars:
            table[c] = 1
    return bytes(table)


_ALNUM = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
# What the simple-head scanner accepts (see ClientConnection._simple_heads): a strict subset
# of what llhttp accepts, so anything else goes to llhttp and its rules.
_NAME_CHARS = _table(_ALNUM, b"-")
_TARGET_CHARS = _table(_ALNUM, b"-._~!$&'()*+,;=:@/?%")
_VALUE_CHARS = _table(bytes(range(0x21, 0x7F)), b" ")
# The special field names by length, for a case-insensitive match without a new object.
_SPECIALS = tuple(tuple(n for n in sorted(REQUEST_SPECIAL) if len(n) == k) for k in range(32))


def _same_lower(data: bytes, start: int, end: int, lower: bytes) -> bool:
    """Whether ``data[start:end]`` is ``lower`` but for case.

    ``lower`` holds only lower-case letters and dashes, and of the characters the scanner
    lets through (visible ASCII and space) ``c | 0x20`` gives such a character only for that
    letter in either case, or for the dash itself.
    """
    n = end - start
    if n != len(lower):
        return False
    j = 0
    while j < n and (data[start + j] | 32) == lower[j]:
        j += 1
    return j == n


def _special(data: bytes, start: int, end: int) -> bytes:
    """The special field name (lower case) that ``data[start:end]`` is, or ``b""``."""
    n = end - start
    if n < 32:
        for name in _SPECIALS[n]:
            if _same_lower(data, start, end, name):
                return name
    return b""


class Refusal(Exception):
    """A request the proxy answers itself without forwarding it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Exchange:
    """One request and its response, from the request line to the last response byte.

    This object is made for every request: slots, and every field set once here, keep the
    loads and stores on it the interpreter's fastest kind.
    """

    __slots__ = (
        "attempts",
        "backend",
        "backends",
        "bad",
        "body",
        "bytes_out",
        "cl_field",
        "client",
        "close_after",
        "complete",
        "conn_field",
        "done",
        "error",
        "expect",
        "fail_message",
        "fail_status",
        "framed",
        "fresh",
        "head",
        "head_size",
        "host",
        "host_field",
        "http10",
        "is_head",
        "keep_alive",
        "lines",
        "method",
        "pending",
        "pending_bytes",
        "replayable",
        "request_id",
        "response_started",
        "rid_field",
        "service",
        "start",
        "status",
        "te_field",
        "tried",
        "tunnel_data",
        "upgrade",
        "upgrade_field",
        "upstream",
        "url",
        "xff_field",
    )

    def __init__(self, client: ClientConnection, url: bytes) -> None:
        self.client = client
        self.url = url
        self.head_size = len(url)
        # The head for upstream in pieces: the request line (method and target filled in
        # last), then four pieces per forwarded field, then what the proxy adds.
        self.lines: list[bytes] = [b"", b" ", b"", b" HTTP/1.1\r\n"]
        self.pending: list[bytes] = []
        self.method = b""
        self.host = b""
        self.http10 = False
        self.keep_alive = False
        self.body = BODY_NONE
        self.complete = False
        self.head = b""
        self.pending_bytes = 0
        self.upgrade = False
        self.expect = False
        self.is_head = False
        self.request_id = b""
        self.service = ""
        self.backends: tuple[Backend, ...] = ()
        self.backend: Backend | None = None
        self.upstream: UpstreamConnection | None = None
        self.tried: set[Backend] | None = None
        self.fail_status = 502
        self.fail_message = ""
        self.start = 0.0
        self.status = 0
        self.bytes_out = 0
        self.response_started = False
        self.close_after = False
        self.error: Refusal | None = None
        self.done = False
        self.replayable = False
        self.fresh = False
        self.attempts = 0
        self.tunnel_data: list[bytes] | None = None
        # Special request fields as received (see on_header), and the first rule they broke.
        self.host_field: bytes | None = None
        self.cl_field: bytes | None = None
        self.te_field: bytes | None = None
        self.conn_field: bytes | None = None
        self.upgrade_field: bytes | None = None
        self.xff_field: bytes | None = None
        self.rid_field: bytes | None = None
        self.framed = False
        self.bad: Refusal | None = None


def _note_field(ex: Exchange, lname: bytes, value: bytes) -> bool:
    """Note a special request field other than Host; return whether to leave it out."""
    if lname == b"content-length":
        cl = ex.cl_field
        if cl is not None and cl != value and ex.bad is None:
            ex.bad = Refusal(400, "bad request: differing Content-Length values")
        ex.cl_field = value
        ex.framed = True
    elif lname == b"transfer-encoding":
        te = ex.te_field
        ex.te_field = value if te is None else te + b"," + value
        ex.framed = True
    elif lname == b"connection":
        conn = ex.conn_field
        ex.conn_field = value if conn is None else conn + b"," + value
    elif lname == b"upgrade":
        ex.upgrade_field = value
    elif lname == b"expect":
        ex.expect = value.strip().lower() == b"100-continue"
        return False
    elif lname == b"x-forwarded-for":
        xff = ex.xff_field
        ex.xff_field = value if xff is None else xff + b", " + value
    elif lname == b"x-request-id" and ex.rid_field is None:
        ex.rid_field = value
    # keep-alive, proxy-connection, te, trailer, x-forwarded-proto/host: dropped; the proxy
    # sets the X-Forwarded ones itself.
    return True


def _framing(ex: Exchange) -> tuple[bytes, ...]:
    """Check a request's framing fields; set its body kind and return the fields to send."""
    te = ex.te_field
    cl = ex.cl_field
    if te is not None:
        if cl is not None:
            raise Refusal(400, "bad request: both Content-Length and Transfer-Encoding")
        if te.strip().lower() != b"chunked":
            raise Refusal(400, "bad request: Transfer-Encoding other than chunked")
        ex.body = BODY_CHUNKED
        return (CHUNKED,)
    assert cl is not None
    if not cl.isdigit():
        raise Refusal(400, "bad request: invalid Content-Length")
    if int(cl) > 0:
        ex.body = BODY_LENGTH
    return (b"Content-Length: ", cl, CRLF)


def _drop_fields(lines: list[bytes], names: frozenset[bytes] | set[bytes]) -> list[bytes]:
    """Return head pieces without the fields whose lower-case names are in ``names``."""
    kept = lines[:4]
    for i in range(4, len(lines), 4):
        if lines[i].lower() not in names:
            kept += lines[i : i + 4]
    return kept


def pick(
    backends: tuple[Backend, ...], tried: set[Backend] | None, turn: int, now: float
) -> Backend | None:
    """Choose the backend with the fewest exchanges in flight; ties go round-robin by turn.

    The same rule as ``sws.balance.choose``, written over the live objects because this runs
    for every request. Backends in ``tried`` are skipped; backends in their failure window
    are used only when no other is left.
    """
    if len(backends) == 1:
        only = backends[0]
        return None if tried is not None and only in tried else only
    for allow_failed in (False, True):
        least = -1
        tied: list[Backend] = []
        for backend in backends:
            if tried is not None and backend in tried:
                continue
            if not allow_failed and backend.failed_until > now:
                continue
            n = backend.inflight
            if least < 0 or n < least:
                least = n
                tied = [backend]
            elif n == least:
                tied.append(backend)
        if tied:
            return tied[turn % len(tied)]
    return None


class ClientConnection:
    """One client connection: parses requests, answers them in order."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.parser = HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.fd = -1
        self.peer = b""
        # X-Forwarded-* for upstream, up to the host: they depend only on the peer address.
        self.forwarded = b""
        self.forwarded_for = b""
        self.cur: Exchange | None = None
        self.active: Exchange | None = None
        # A list, not a deque: it holds a few exchanges at most (_PIPELINE_LIMIT), and a
        # list's append and pop(0) compile to direct calls where a deque's are lookups.
        self.queue: list[Exchange] = []
        self.read_block = 0
        self.write_paused = False
        self.closed = False
        self.closing = False
        self.eof = False
        self.stopped = False
        self.upgrading: Exchange | None = None
        self.tunnel: UpstreamConnection | None = None
        self.kind = K_IDLE
        self.deadline = 0.0
        self.head_raw = 0
        self._starting = False
        # Whether llhttp is inside a message (on_message_begin .. on_message_complete): the
        # simple-head scanner may only start where llhttp would start a new message.
        self.in_message = False
        # The scanner pays off only compiled; interpreted, llhttp alone is faster.
        self.fast_heads = COMPILED

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)
        self.fd = socket_fd(transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = str(peer[0]).encode("ascii", "replace")
        self.forwarded = self.peer + b"\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: "
        self.forwarded_for = b"X-Forwarded-For: " + self.forwarded
        self.server.clients.add(self)
        # A fresh connection has the header timeout to send its first request.
        self.kind = K_IDLE
        self.deadline = self.server.now + self.server.header_timeout

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.clients.discard(self)
        if self.tunnel is not None:
            upstream, self.tunnel = self.tunnel, None
            upstream.transport.close()
            return
        ex = self.active
        if ex is not None and not ex.done:
            ex.done = True
            if ex.upstream is not None:
                ex.upstream.abort()
            self.server.finished(ex, ex.status if ex.response_started else 499)
        self.active = None
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.transport.write(data)
            return
        if self.stopped:
            # Lingering or refused: the rest of the input is not HTTP we will answer.
            upgrading = self.upgrading
            if upgrading is not None and upgrading.tunnel_data is not None:
                upgrading.tunnel_data.append(data)
            return
        kind = self.kind
        if kind == K_IDLE:
            self.kind = K_HEAD
            self.deadline = self.server.now + self.server.header_timeout
        elif kind == K_BODY:
            now = self.server.now
            self.deadline = now + self.server.body_timeout
            active = self.active
            if active is not None and active.upstream is not None:
                active.upstream.deadline = now + self.server.upstream_timeout
        if self.fast_heads and not self.in_message:
            taken = self._simple_heads(data)
            if taken:
                if taken == len(data):
                    self._advance()
                    return
                data = data[taken:]
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as exc:
            self._upgrade(data[exc.args[0] :])
        except HttpParserCallbackError as exc:
            context = exc.__context__
            if isinstance(context, Refusal):
                self._refuse(context)
            else:
                self.server.log_error("request_callback_failed", context or exc)
                self._refuse(Refusal(500, "the proxy failed to read the request"))
        except HttpParserError as exc:
            self._refuse(Refusal(400, f"bad request: {exc}"))
        else:
            if self.cur is not None and self.kind == K_HEAD:
                # The head is still incomplete: bound what the parser holds for it.
                self.head_raw += len(data)
                if self.head_raw > self.server.max_header_bytes:
                    self._refuse(
                        Refusal(
                            431,
                            f"request header section is larger than "
                            f"{self.server.max_header_bytes} bytes",
                        )
                    )
        self._advance()

    def eof_received(self) -> bool | None:
        if self.tunnel is not None or self.stopped:
            return None
        if self.active is not None and self.cur is None:
            # The client half-closed after sending its request: answer it, then close.
            self.eof = True
            return True
        return None

    def pause_writing(self) -> None:
        self.write_paused = True
        upstream = self.tunnel
        if upstream is None and self.active is not None:
            upstream = self.active.upstream
        if upstream is not None:
            upstream.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        upstream = self.tunnel
        if upstream is None and self.active is not None:
            upstream = self.active.upstream
        if upstream is not None:
            upstream.resume_reading()

    # -- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.in_message = True

    def on_url(self, url: bytes) -> None:
        ex = self.cur
        if ex is None:
            ex = self.cur = Exchange(self, url)
            if self.kind != K_HEAD:
                self.kind = K_HEAD
                self.deadline = self.server.now + self.server.header_timeout
        else:
            ex.url += url
            ex.head_size += len(url)
        if len(ex.url) > self.server.max_url_bytes:
            raise Refusal(414, f"request URL is longer than {self.server.max_url_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        # Called for every field: ordinary fields are rendered for upstream here, in order;
        # the special ones are noted on the exchange and judged when the head is complete.
        ex: Exchange = self.cur  # type: ignore[assignment]  # on_url made it
        size = ex.head_size = ex.head_size + len(name) + len(value) + 4
        if size > self.server.max_header_bytes:
            raise Refusal(
                431, f"request header section is larger than {self.server.max_header_bytes} bytes"
            )
        lname = name.lower()
        if lname in REQUEST_SPECIAL:
            if lname == b"host":
                if ex.host_field is None:
                    ex.host_field = value
                elif ex.bad is None:
                    ex.bad = Refusal(400, "bad request: more than one Host header")
            elif _note_field(ex, lname, value):
                return
        ex.lines += (name, b": ", value, b"\r\n")

    def on_headers_complete(self) -> None:
        ex = self.cur
        assert ex is not None
        if ex.bad is not None:
            raise ex.bad
        parser = self.parser
        ex.start = self.server.clock()  # precise: it feeds the latency figures
        self.head_raw = 0
        method = ex.method = parser.get_method()
        keep_alive = ex.keep_alive = parser.should_keep_alive()
        # The framing fields are the proxy's own (bodies are re-framed), added after the
        # fields named by Connection are dropped so that no client can have them dropped.
        framing = _framing(ex) if ex.framed else ()
        if method != b"GET":
            if method == b"HEAD":
                ex.is_head = True
            elif method == b"CONNECT":
                raise Refusal(405, "CONNECT is not supported by this proxy")
        url = ex.url
        host = ex.host_field
        lines = ex.lines
        if not url.startswith(b"/") and url != b"*":
            url, host = self._absolute_form(url, method)
            lines = ex.lines = _drop_fields(lines, _HOST)
            framing += (b"Host: ", host, CRLF)
        # Only HTTP/1.0 keeps alive by default without a Connection field and only HTTP/1.0
        # needs one to keep alive, so the version string is needed only when one was sent.
        conn = ex.conn_field
        if conn is None:
            if not keep_alive:
                ex.http10 = True
        else:
            ex.http10 = parser.get_http_version() == "1.0"
        if host is None:
            # HTTP/1.1 requires Host; HTTP/1.0 may omit it, and is then routed as host "",
            # which no service has (404 naming it).
            if not ex.http10:
                raise Refusal(400, "bad request: no Host header")
            host = b""
        ex.host = host
        # Mostly a lone keep-alive or close, which names no field.
        if conn is not None and conn.strip().lower() not in _CONNECTION_KEYWORDS:
            # Host is end-to-end and required upstream: no client can have it dropped.
            drop = connection_tokens(conn) - _CONNECTION_KEYWORDS - _HOST
            if drop:
                lines = ex.lines = _drop_fields(lines, drop)
        if framing:
            lines += framing
        upgrade = ex.upgrade_field
        if upgrade is not None and parser.should_upgrade():
            if ex.body != BODY_NONE:
                raise Refusal(400, "bad request: an upgrade request cannot have a body")
            ex.upgrade = True
            lines += (b"Connection: upgrade\r\nUpgrade: ", upgrade, CRLF)
        lines[0] = method
        lines[2] = url
        self._head_done(ex, lines, host)

    def _head_done(self, ex: Exchange, lines: list[bytes], host: bytes) -> None:
        """Finish the head for upstream (the proxy's fields last) and queue the exchange."""
        rid = ex.rid_field
        if rid is None:
            server = self.server
            server.rid_counter += 1
            count = server.rid_counter
            rid = server.rid_prefix + f"{count:x}".encode("ascii")
        ex.request_id = rid
        xff = ex.xff_field
        if xff:
            lines += (b"X-Forwarded-For: ", xff, b", ", self.forwarded, host)
            lines += (b"\r\nX-Request-Id: ", rid, b"\r\n\r\n")
            head = b"".join(lines)
        elif len(lines) == 1:
            # A head taken whole by the simple-head scanner.
            head = b"".join(
                (lines[0], self.forwarded_for, host, b"\r\nX-Request-Id: ", rid, b"\r\n\r\n")
            )
        else:
            lines += (self.forwarded_for, host, b"\r\nX-Request-Id: ", rid, b"\r\n\r\n")
            head = b"".join(lines)
        ex.head = head
        # The head is always the first thing pending: a list made with it costs one
        # allocation where appending to the empty one grows it.
        ex.pending = [head]
        ex.pending_bytes = len(head)
        if ex.body == BODY_NONE:
            ex.replayable = not ex.upgrade
            self.kind = K_NONE
            self.deadline = 0.0
        else:
            self.kind = K_BODY
            self.deadline = ex.start + self.server.body_timeout
        self.queue.append(ex)

    def on_body(self, body: bytes) -> None:
        ex = self.cur
        assert ex is not None
        if ex.done:
            return  # already answered (e.g. 404): the rest of the body is discarded
        if ex.body == BODY_CHUNKED:
            ex.pending.append(b"%x\r\n%b\r\n" % (len(body), body))
        else:
            ex.pending.append(body)
        ex.pending_bytes += len(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        ex = self.cur
        assert ex is not None
        self.cur = None
        ex.complete = True
        if ex.body == BODY_CHUNKED and not ex.done:
            ex.pending.append(LAST_CHUNK)
        if self.kind == K_BODY:
            self.kind = K_NONE
            self.deadline = 0.0

    def _simple_heads(self, data: bytes) -> int:
        """Take the simple requests that start ``data``, whole; return how many bytes.

        A simple request is GET or HEAD of an origin-form target, HTTP/1.1, every field
        ``Name: value`` with a name of letters, digits and dashes and a value of visible
        characters and inner spaces, one Host field, no other field the proxy treats
        specially (``Connection: keep-alive`` aside, which is dropped as llhttp's path
        drops it), and the whole head within this read and the size limits. Such a head
        is a strict subset of what llhttp accepts and means the same to both; for it the
        head as received is, byte for byte, the head llhttp's path would render, so it is
        sent on as it came, with the proxy's fields added. Anything else, from its first
        byte on, goes to llhttp (tests/unit/proxy/test_simple_heads.py holds the two paths
        to the same output). The scan stops at the first request that is not simple.
        """
        n = len(data)
        server = self.server
        max_head = server.max_header_bytes
        max_url = server.max_url_bytes
        p = 0
        while p < n:
            if data.startswith(b"GET /", p):
                method = b"GET"
            elif data.startswith(b"HEAD /", p):
                method = b"HEAD"
            else:
                return p
            u = i = p + len(method) + 1
            while i < n and _TARGET_CHARS[data[i]]:
                i += 1
            if i - u > max_url or not data.startswith(b" HTTP/1.1\r\n", i):
                return p
            url_end = i
            i += 11
            host = None
            cut = -1  # where a dropped Connection: keep-alive field starts
            cut_end = -1
            while True:
                if i - p > max_head:
                    return p
                if data.startswith(b"\r\n", i):
                    break
                a = i
                while i < n and _NAME_CHARS[data[i]]:
                    i += 1
                if i == a or not data.startswith(b": ", i):
                    return p
                name_end = i
                i += 2
                v = i
                while i < n and _VALUE_CHARS[data[i]]:
                    i += 1
                # No space first or last: llhttp's path would trim it and render it without.
                if i == v or data[v] == 32 or data[i - 1] == 32 or not data.startswith(b"\r\n", i):
                    return p
                value_end = i
                i += 2
                lname = _special(data, a, name_end)
                if lname:
                    if lname == b"host" and host is None:
                        host = span(data, v, value_end)
                    elif (
                        lname == b"connection"
                        and cut < 0
                        and _same_lower(data, v, value_end, b"keep-alive")
                    ):
                        cut = a
                        cut_end = i
                    else:
                        return p
            if host is None:
                return p
            end = i + 2
            if end - p > max_head:
                return p
            ex = Exchange(self, span(data, u, url_end))
            ex.method = method
            ex.is_head = len(method) == 4
            ex.keep_alive = True
            ex.start = server.clock()
            ex.host_field = host
            ex.host = host
            ex.complete = True
            lines = [span(data, p, i)] if cut < 0 else [span(data, p, cut), span(data, cut_end, i)]
            self._head_done(ex, lines, host)
            p = end
        return p

    @staticmethod
    def _absolute_form(url: bytes, method: bytes) -> tuple[bytes, bytes]:
        lower = url[:8].lower()
        if lower.startswith(b"http://"):
            rest = url[7:]
        elif lower.startswith(b"https://"):
            rest = url[8:]
        else:
            raise Refusal(400, "bad request: request target is not a path")
        slash = rest.find(b"/")
        if slash < 0:
            return (b"*" if method == b"OPTIONS" else b"/"), rest
        return rest[slash:], rest[:slash]

    # -- answering in order -----------------------------------------------------------------

    def _advance(self) -> None:
        """Start the next exchange if none is active; send what the active one holds."""
        active = self.active
        if active is None:
            if self.queue:
                self._next()
        else:
            upstream = active.upstream
            if upstream is not None and active.pending:
                upstream.send(active)
        if self.read_block & R_BUFFER:
            if self._held() <= self.server.buffer_limit // 2:
                self.unblock(R_BUFFER)
        elif self.queue or (active is not None and active.pending):
            held = self._held()
            if held > self.server.buffer_limit or len(self.queue) > _PIPELINE_LIMIT:
                self.block(R_BUFFER)

    def _held(self) -> int:
        held = 0
        for ex in self.queue:
            held += ex.pending_bytes
        if self.active is not None:
            held += self.active.pending_bytes
        return held

    def _next(self) -> None:
        self._starting = True
        try:
            queue = self.queue
            while self.active is None and queue and not self.closed:
                ex = self.active = queue.pop(0)
                if ex.error is not None:
                    self.respond_local(ex, ex.error.status, ex.error.message)
                    continue
                found = self.server.route(ex.host)
                if found is None:
                    host = ex.host.decode("latin-1")
                    self.respond_local(ex, 404, f'no service for host "{host}"')
                    continue
                ex.service, ex.backends = found
                if not ex.backends:
                    self.respond_local(ex, 503, f"no healthy backend for {ex.service}")
                    continue
                self._dispatch(ex)
        finally:
            self._starting = False

    def _dispatch(self, ex: Exchange) -> None:
        server = self.server
        server.turn += 1
        backends = ex.backends
        if len(backends) == 1 and ex.tried is None:
            backend: Backend | None = backends[0]
        else:
            backend = pick(backends, ex.tried, server.turn, server.now)
        if backend is None:
            self.respond_local(
                ex, ex.fail_status, ex.fail_message or f"no backend of {ex.service} answered"
            )
            return
        ex.backend = backend
        ex.attempts += 1
        backend.inflight += 1
        if not ex.fresh:
            # Idle connections, most recently used last (LIFO): the likeliest to be open.
            idle = backend.idle
            while idle:
                conn = idle.pop()
                if not conn.closed:
                    conn.carry(ex)
                    return
        server.connect(backend, ex)

    def connected(self, ex: Exchange, conn: UpstreamConnection) -> None:
        """A new connection for ``ex`` is up (called by the server's connect task)."""
        if ex.done or self.closed or ex is not self.active:
            conn.backend.inflight -= 1
            conn.release()
            return
        conn.carry(ex)
        self._advance()

    def connect_failed(self, ex: Exchange, backend: Backend, status: int, message: str) -> None:
        backend.inflight -= 1
        backend.failed_until = self.server.now + self.server.fail_timeout
        if ex.done or self.closed or ex is not self.active:
            return
        if ex.tried is None:
            ex.tried = set()
        ex.tried.add(backend)
        ex.fail_status = status
        ex.fail_message = message
        self.server.retried += 1
        self._dispatch(ex)

    def redispatch(self, ex: Exchange) -> None:
        """Send ``ex`` again on a fresh connection: its pooled one was found closed."""
        if ex.done or self.closed:
            return
        ex.fresh = True
        ex.pending = [ex.head]
        ex.pending_bytes = len(ex.head)
        self._dispatch(ex)

    def respond_local(self, ex: Exchange, status: int, message: str) -> None:
        """Answer ``ex`` from the proxy itself."""
        keep = (
            ex.keep_alive
            and ex.error is None
            and not self.closing
            and not self.server.draining
            and not (ex.expect and not ex.complete)
            and not ex.upgrade
        )
        ex.close_after = not keep
        ex.status = status
        ex.response_started = True
        ex.pending = []
        ex.pending_bytes = 0
        data = local_response(
            status,
            message,
            keep_alive=keep,
            request_id=ex.request_id or None,
            head_only=ex.is_head,
        )
        if not self.closed:
            self.transport.write(data)
        if not ex.is_head:
            ex.bytes_out = len(message.encode("utf-8", "replace")) + 1
        self.response_done(ex)

    def response_done(self, ex: Exchange) -> None:
        """The last byte of ``ex``'s response is written: log it and move on."""
        ex.done = True
        if self.active is ex:
            self.active = None
        self.server.finished(ex, ex.status)
        if self.closed:
            return
        if ex.close_after or self.eof:
            self._shutdown()
            return
        if self.queue and not self._starting:
            self._next()
        if self.active is None and self.cur is None and not self.queue:
            if self.server.draining:
                self._shutdown()
                return
            self.kind = K_IDLE
            self.deadline = self.server.now + self.server.keepalive_timeout

    def abort(self, ex: Exchange, status: int) -> None:
        """Cut the connection mid-response: the client sees a truncated answer."""
        ex.done = True
        if self.active is ex:
            self.active = None
        self.server.finished(ex, status)
        self.transport.close()

    def _refuse(self, refusal: Refusal) -> None:
        """Queue an answer for a request that broke a rule; read no more from this client."""
        self.stopped = True
        self.block(R_STOP)
        ex = self.cur
        self.cur = None
        if ex is None:
            ex = Exchange(self, b"")
        ex.error = refusal
        ex.keep_alive = False
        if ex is self.active:
            # The head already went upstream (the body broke later): cut that off.
            if ex.upstream is not None:
                ex.upstream.abort()
            if ex.response_started:
                self.abort(ex, refusal.status)
            else:
                self.respond_local(ex, refusal.status, refusal.message)
        elif ex not in self.queue:
            self.queue.append(ex)

    def _upgrade(self, rest: bytes) -> None:
        """The parser handed over at an upgrade: hold what follows until the 101."""
        ex = self.cur
        if ex is None:
            ex = self.queue[-1] if self.queue else self.active
        assert ex is not None
        self.cur = None
        self.stopped = True
        self.block(R_STOP)
        self.upgrading = ex
        ex.tunnel_data = [rest] if rest else []

    def start_tunnel(self, ex: Exchange, upstream: UpstreamConnection) -> None:
        """The backend said 101: copy bytes both ways from now on."""
        ex.done = True
        self.active = None
        self.server.finished(ex, 101)
        self.tunnel = upstream
        self.kind = K_NONE
        self.deadline = 0.0
        held = ex.tunnel_data or []
        ex.tunnel_data = None
        self.upgrading = None
        if held:
            upstream.transport.write(b"".join(held))
        if self.write_paused:
            upstream.pause_reading()
        self.unblock(R_STOP)

    def _shutdown(self) -> None:
        """Close after the last answer; keep reading a little if input may be unread."""
        if self.closing:
            return
        self.closing = True
        self.stopped = True
        self.upgrading = None
        transport = self.transport
        unread = self.cur is not None or bool(self.queue) or self.read_block & R_STOP
        if unread and transport.can_write_eof():
            # Closing with unread input makes the kernel send a reset that can destroy our
            # answer before the client reads it; shut our side and drain theirs instead.
            transport.write_eof()
            self.kind = K_LINGER
            self.deadline = self.server.now + self.server.linger_timeout
            self.read_block = 0
            transport.resume_reading()
        else:
            transport.close()

    # -- flow control and deadlines ---------------------------------------------------------

    def block(self, reason: int) -> None:
        if self.read_block == 0 and not self.closed:
            self.transport.pause_reading()
            if self.kind == K_BODY:
                self.deadline = 0.0
        self.read_block |= reason

    def unblock(self, reason: int) -> None:
        if self.read_block & reason:
            self.read_block &= ~reason
            if self.read_block == 0 and not self.closed:
                self.transport.resume_reading()
                if self.kind == K_BODY:
                    self.deadline = self.server.now + self.server.body_timeout

    def drain(self) -> None:
        """Close now if idle; otherwise the current answer carries Connection: close."""
        if (
            self.active is None
            and self.cur is None
            and not self.queue
            and self.tunnel is None
            and not self.closing
        ):
            self.transport.close()

    def timed_out(self) -> None:
        kind = self.kind
        self.deadline = 0.0
        if kind == K_HEAD and self.active is None and not self.queue:
            ex = self.cur
            self.cur = None
            if ex is None:
                ex = Exchange(self, b"")
            ex.error = Refusal(
                408, f"request head not received within {self.server.header_timeout:g}s"
            )
            self.stopped = True
            self.block(R_STOP)
            self.queue.append(ex)
            self._next()
        elif kind == K_BODY and self.active is not None and not self.active.response_started:
            ex = self.active
            if ex.upstream is not None:
                ex.upstream.abort()
            ex.error = Refusal(408, "request body stalled")
            ex.keep_alive = False
            self.stopped = True
            self.respond_local(ex, 408, f"request body stalled for {self.server.body_timeout:g}s")
        else:
            self.transport.close()
