"""What the compiled proxy modules share: whether they are compiled, and a bytes copy.

A leaf module (it imports nothing of the proxy's), so both protocol and upstream can take
functions from it; they cannot from each other (see docs/proxy.md, "Compiled modules").
"""

from __future__ import annotations

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
