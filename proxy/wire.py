"""HTTP/1.1 wire constants and the few byte strings the proxy builds itself."""

from __future__ import annotations

from http import HTTPStatus

# Hop-by-hop fields (RFC 9110 7.6.1) plus the ones the proxy re-frames or sets itself; the
# values are what the request side does with each.
REQUEST_SPECIAL = frozenset(
    {
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"expect",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-request-id",
        b"forwarded",
    }
)
RESPONSE_SPECIAL = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
    }
)

CRLF = b"\r\n"
LAST_CHUNK = b"0\r\n\r\n"
CONNECTION_KEEP_ALIVE = b"Connection: keep-alive\r\n"
CONNECTION_CLOSE = b"Connection: close\r\n"
CHUNKED = b"Transfer-Encoding: chunked\r\n"


def _status_line(code: int) -> bytes:
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "Unknown"
    return b"HTTP/1.1 %d %s\r\n" % (code, phrase.encode("ascii"))


# Status lines for every code a backend can send, built once; the backend's own reason
# phrase is dropped (it carries no meaning, RFC 9112 4).
STATUS_LINES: tuple[bytes, ...] = tuple(_status_line(code) for code in range(1000))


def status_class(code: int) -> str:
    """Return the metrics label for a status: ``2xx``."""
    return f"{code // 100}xx"


def local_response(
    status: int,
    message: str,
    *,
    keep_alive: bool,
    request_id: bytes | None,
    head_only: bool = False,
) -> bytes:
    """Build a response the proxy answers itself: a one-line plain-text body."""
    body = message.encode("utf-8", "replace") + b"\n"
    head = [
        STATUS_LINES[status],
        b"Content-Type: text/plain; charset=utf-8\r\n",
        b"Content-Length: %d\r\n" % len(body),
        CONNECTION_KEEP_ALIVE if keep_alive else CONNECTION_CLOSE,
    ]
    if request_id is not None:
        head.append(b"X-Request-Id: %s\r\n" % request_id)
    head.append(CRLF)
    if not head_only:
        head.append(body)
    return b"".join(head)


def connection_tokens(value: bytes) -> set[bytes]:
    """Split a Connection field into lower-case option names."""
    return {t.strip().lower() for t in value.split(b",") if t.strip()}
