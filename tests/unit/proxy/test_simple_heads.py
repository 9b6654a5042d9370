"""The simple-head scanner and llhttp's path agree on every request the scanner takes.

``ClientConnection._simple_heads`` takes plain GET and HEAD requests without llhttp and sends
their heads on as received. It must take only what llhttp accepts, and for what it takes
produce exactly what llhttp's path produces: the same head for upstream, byte for byte, and
the same exchange. These tests run each input through both paths (the scanner runs
uncompiled too, only slower) and compare.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.config import Config
from proxy.protocol import ClientConnection
from proxy.server import Server

FIELDS = (
    "method",
    "url",
    "host",
    "head",
    "keep_alive",
    "is_head",
    "http10",
    "complete",
    "body",
    "upgrade",
    "expect",
    "request_id",
)


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("192.0.2.7", 40000) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


def _client(fast: bool) -> ClientConnection:
    server = Server(Config(access_log=False))
    server.clock = lambda: 1.0
    server.rid_prefix = b"test-"
    client = ClientConnection(server)
    client.connection_made(Transport())
    client.fast_heads = fast
    return client


def _exchanges(client: ClientConnection) -> list[dict[str, Any]]:
    return [{f: getattr(ex, f) for f in FIELDS} for ex in client.queue]


def _llhttp(data: bytes) -> list[dict[str, Any]] | None:
    """The exchanges llhttp's path makes of ``data``, or None when it refuses it."""
    client = _client(fast=False)
    try:
        client.parser.feed_data(data)
    except Exception:
        return None
    if client.cur is not None or any(ex.bad or ex.error for ex in client.queue):
        return None
    return _exchanges(client)


def check(data: bytes) -> int:
    """Run ``data`` through the scanner; compare what it took with llhttp's path."""
    client = _client(fast=True)
    taken = client._simple_heads(data)
    assert 0 <= taken <= len(data)
    if taken:
        assert _exchanges(client) == _llhttp(data[:taken]), data
    else:
        assert not client.queue
    return taken


WRK = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:18803\r\n\r\n"
BROWSER = (
    b"GET /orders/12345?page=2 HTTP/1.1\r\n"
    b"Host: web.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Cookie: session=0123456789abcdef; theme=dark\r\n"
    b"Connection: keep-alive\r\n"
    b"Upgrade-Insecure-Requests: 1\r\n"
    b"\r\n"
)


def test_plain_requests_are_taken_whole_and_match_llhttp() -> None:
    assert check(WRK) == len(WRK)
    assert check(BROWSER) == len(BROWSER)
    assert check(b"HEAD /x HTTP/1.1\r\nHOST: a\r\nconnection: Keep-Alive\r\n\r\n") > 0


def test_connection_keep_alive_is_dropped_as_llhttps_path_drops_it() -> None:
    client = _client(fast=True)
    client._simple_heads(BROWSER)
    (ex,) = client.queue
    assert b"Connection" not in ex.head and b"Upgrade-Insecure-Requests: 1\r\n" in ex.head
    assert ex.head.endswith(b"\r\nX-Request-Id: test-1\r\n\r\n")


def test_pipelined_requests_are_taken_up_to_the_first_incomplete_one() -> None:
    assert check(WRK + BROWSER + WRK[:10]) == len(WRK) + len(BROWSER)


def test_anything_unusual_is_left_to_llhttp() -> None:
    unusual = [
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx",
        b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
        b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: r\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost:a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost:  a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a \r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX_Y: z\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: \xc3\xbc\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /#f HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n",
    ]
    for data in unusual:
        assert check(data) == 0, data


def test_limits_leave_long_heads_to_llhttps_path() -> None:
    client = _client(fast=True)
    long_url = b"GET /" + b"a" * client.server.max_url_bytes + b" HTTP/1.1\r\nHost: a\r\n\r\n"
    assert client._simple_heads(long_url) == 0
    big = b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * client.server.max_header_bytes + b"\r\n\r\n"
    assert client._simple_heads(big) == 0


def test_a_message_llhttp_has_begun_is_finished_by_llhttp() -> None:
    # The second read looks like a request of its own, but llhttp is inside a message:
    # it is the value of X-A and then a field of that message.
    client = _client(fast=True)
    seen: list[tuple[str, str]] = []

    class Log:
        def record(self, **entry: Any) -> None:
            seen.append((entry["path"], entry["host"]))

    client.server.access_log = Log()  # no route table: each request is answered 404
    client.data_received(WRK + b"GET /x HTTP/1.1\r\nX-A: ")
    client.data_received(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")
    assert seen == [("/", "127.0.0.1:18803"), ("/x", "b")]


methods = st.sampled_from([b"GET", b"HEAD", b"POST", b"get", b"OPTIONS", b"GET /", b""])
targets = st.one_of(
    st.sampled_from([b"/", b"/a?b=c&d", b"/%zz", b"/a b", b"*", b"http://h/p", b"/#f", b"//x"]),
    st.binary(max_size=12).map(lambda b: b"/" + b),
)
versions = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.10", b"http/1.1", b"HTTP/2"])
names = st.one_of(
    st.sampled_from(
        [
            *(b"Host", b"host", b"HOST", b"Connection", b"X-Request-Id", b"Content-Length"),
            *(b"Transfer-Encoding", b"Foo", b"Foo_Bar", b"Foo Bar", b"", b"Keep-Alive", b"TE"),
        ]
    ),
    st.binary(min_size=1, max_size=6),
)
values = st.one_of(
    st.sampled_from([b"keep-alive", b"Keep-Alive", b"close", b"a", b"x y", b"a ", b" a", b""]),
    st.binary(max_size=8),
)
separators = st.sampled_from([b": ", b":", b":  ", b" : ", b":\t"])
line_ends = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r"])
fields = st.tuples(names, separators, values, line_ends).map(lambda t: b"".join(t))


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    line = draw(methods) + b" " + draw(targets) + b" " + draw(versions) + draw(line_ends)
    return line + b"".join(draw(st.lists(fields, max_size=5))) + draw(line_ends)


@settings(max_examples=600, deadline=None)
@given(st.lists(requests(), min_size=1, max_size=3))
def test_whatever_the_scanner_takes_llhttps_path_makes_the_same(reqs: list[bytes]) -> None:
    check(b"".join(reqs))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([b"Host", b"Connection", b"X-A"]), values), max_size=4))
def test_simple_shapes_with_arbitrary_values(pairs: list[tuple[bytes, bytes]]) -> None:
    head = b"GET /p HTTP/1.1\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in pairs) + b"\r\n"
    check(head)
