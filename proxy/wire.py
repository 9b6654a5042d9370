"""HTTP/1.1 wire constants and the few byte strings the proxy builds itself."""

from __future__ import annotations

import re
from http import HTTPStatus

# Request fields that need more than copying: hop-by-hop ones (RFC 9110 7.6.1), framing,
# and the ones the proxy sets itself.
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


# Hop-by-hop response fields, and Content-Length (kept, but its presence decides framing).
# Field lines follow a CRLF, so a match is always a whole field name.
_RESPONSE_FIELD = re.compile(
    rb"\r\n(connection|keep-alive|proxy-connection|te|trailer|transfer-encoding|upgrade"
    rb"|content-length)[ \t]*:[ \t]*([^\r]*)",
    re.IGNORECASE,
)
_CONNECTION_KEYWORDS = frozenset({b"close", b"keep-alive", b"upgrade"})


def rewrite_response_fields(fields: bytes) -> tuple[bytes, bool, bool, bytes | None]:
    """Drop hop-by-hop fields from a response's raw header lines.

    ``fields`` is the head after the status line, without the blank line: each field is
    preceded by CRLF (``b"\\r\\nServer: x\\r\\nDate: y"``). The parser has already accepted
    it, so every line is a well-formed ``name: value``. Works on the bytes as received
    instead of field by field, which spares a parser callback per field on every response.

    Returns the fields to forward (each preceded by CRLF), whether Content-Length is
    present, whether the body is chunked, and the Upgrade value if any.
    """
    out, length, chunked, upgrade = response_fields(fields)
    return out, length is not None, chunked, upgrade


def response_fields(fields: bytes) -> tuple[bytes, bytes | None, bool, bytes | None]:
    """``rewrite_response_fields``, with the Content-Length value instead of its presence."""
    length: bytes | None = None
    chunked = False
    upgrade: bytes | None = None
    extra: set[bytes] | None = None
    cuts: list[tuple[int, int]] = []
    for match in _RESPONSE_FIELD.finditer(fields):
        name = match[1].lower()
        if name == b"content-length":
            length = match[2]
            continue
        cuts.append(match.span())
        if name == b"transfer-encoding":
            chunked = match[2].rstrip().lower().endswith(b"chunked")
        elif name == b"upgrade":
            upgrade = match[2].rstrip()
        elif name == b"connection":
            value = match[2].rstrip().lower()
            if value not in _CONNECTION_KEYWORDS:
                tokens = connection_tokens(value) - _CONNECTION_KEYWORDS
                if tokens:
                    extra = tokens if extra is None else extra | tokens
    if not cuts:
        return fields, length, chunked, upgrade
    if extra:
        names = b"|".join(re.escape(t) for t in sorted(extra))
        pattern = re.compile(rb"\r\n(?:" + names + rb")[ \t]*:[^\r]*", re.IGNORECASE)
        cuts.extend(m.span() for m in pattern.finditer(fields))
    elif len(cuts) == 1:
        # The usual case: Connection alone.
        i, j = cuts[0]
        return fields[:i] + fields[j:], length, chunked, upgrade
    cuts.sort()
    pieces: list[bytes] = []
    at = 0
    for i, j in cuts:
        if i > at:
            pieces.append(fields[at:i])
        at = max(at, j)
    pieces.append(fields[at:])
    return b"".join(pieces), length, chunked, upgrade
