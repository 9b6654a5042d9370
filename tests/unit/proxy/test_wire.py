"""Byte-level helpers: proxy-made answers and response head rewriting."""

from __future__ import annotations

from proxy.wire import STATUS_LINES, local_response, rewrite_response_fields


def test_status_lines() -> None:
    assert STATUS_LINES[200] == b"HTTP/1.1 200 OK\r\n"
    assert STATUS_LINES[504] == b"HTTP/1.1 504 Gateway Timeout\r\n"
    assert STATUS_LINES[599] == b"HTTP/1.1 599 Unknown\r\n"


def test_local_response() -> None:
    data = local_response(404, 'no service for host "x"', keep_alive=True, request_id=b"r-1")
    assert data == (
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 24\r\nConnection: keep-alive\r\nX-Request-Id: r-1\r\n\r\n"
        b'no service for host "x"\n'
    )


def test_local_response_to_head_has_no_body() -> None:
    data = local_response(503, "down", keep_alive=False, request_id=None, head_only=True)
    assert data.endswith(b"Content-Length: 5\r\nConnection: close\r\n\r\n")


def test_rewrite_keeps_end_to_end_fields() -> None:
    fields = b"\r\nServer: nginx\r\nDate: now\r\nContent-Length: 3\r\nConnection: keep-alive"
    out, has_length, chunked, upgrade = rewrite_response_fields(fields)
    assert out == b"\r\nServer: nginx\r\nDate: now\r\nContent-Length: 3"
    assert has_length and not chunked and upgrade is None


def test_rewrite_drops_hop_by_hop_and_connection_named_fields() -> None:
    fields = (
        b"\r\nCONNECTION: keep-alive, X-Private\r\nx-private: s\r\nKeep-Alive: timeout=5"
        b"\r\nProxy-Connection: x\r\nTransfer-Encoding: chunked\r\nX-End: kept\r\nTE: t"
        b"\r\nTrailer: X-T\r\nX-Private: again"
    )
    out, has_length, chunked, _upgrade = rewrite_response_fields(fields)
    assert out == b"\r\nX-End: kept"
    assert chunked and not has_length


def test_rewrite_reports_upgrade_and_does_not_match_inside_names() -> None:
    fields = b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Connection: 1\r\nTEx: 2"
    out, _, _, upgrade = rewrite_response_fields(fields)
    assert upgrade == b"websocket"
    assert out == b"\r\nX-Connection: 1\r\nTEx: 2"


def test_rewrite_of_nothing() -> None:
    assert rewrite_response_fields(b"") == (b"", False, False, None)
