"""What the compiled proxy modules share: whether they are compiled, a bytes copy, a write.

A leaf module (it imports nothing of the proxy's), so both protocol and upstream can take
functions from it; they cannot from each other (see docs/proxy.md, "Compiled modules").
"""

from __future__ import annotations

from typing import Any

try:
    import cython

    _COMPILED: bool = cython.compiled
except ImportError:  # Cython is needed only to build the compiled modules
    _COMPILED = False

# For importers: compiled (compiled.pxd), _COMPILED is a C variable no module can import.
COMPILED = _COMPILED


def span(data: bytes, start: int, end: int) -> bytes:
    """``data[start:end]``; compiled, a copy straight from the buffer (no slice object)."""
    if _COMPILED:
        return cython.cast(cython.p_char, data)[start:end]  # type: ignore[no-any-return]
    return data[start:end]


def socket_fd(transport: Any) -> int:
    """The descriptor ``write`` may send on directly: -1, never used, if there is none."""
    sock = transport.get_extra_info("socket")
    return -1 if sock is None else int(sock.fileno())


def write(transport: Any, fd: int, data: bytes) -> None:
    """``transport.write(data)``; compiled, a send() on the socket first when it is free.

    The hot path's writes (a request head upstream, a response to the client) are small and
    nearly always fit the socket at once. uvloop would get there too, through its write
    buffer and a write(2); send(2) straight away skips both, and the kernel's file layer.
    What makes that safe:

    - only while the transport holds nothing unsent, so bytes never pass queued ones;
    - only while it is not closing: once it is, its descriptor may already be closed and
      its number taken by another connection;
    - whatever the socket does not take (all of it, on an error) goes to
      ``transport.write``, which queues it, applies flow control, and meets any error
      itself, as it would have without this.
    """
    if (
        _COMPILED
        and fd >= 0
        and not transport.is_closing()
        and transport.get_write_buffer_size() == 0
    ):
        size = len(data)
        # send and the MSG_ flags are C, declared in compiled.pxd.
        sent = send(  # type: ignore[name-defined]  # noqa: F821
            fd,
            cython.cast(cython.p_char, data),
            size,
            MSG_DONTWAIT | MSG_NOSIGNAL,  # type: ignore[name-defined]  # noqa: F821
        )
        if sent == size:
            return
        if sent > 0:
            data = span(data, sent, size)
    transport.write(data)
