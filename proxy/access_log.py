"""One JSON line per request on stdout, buffered and written out on every tick."""

from __future__ import annotations

import json
import sys
import time
from typing import BinaryIO


class AccessLog:
    """Collects access-log lines and writes them out in batches."""

    __slots__ = ("_lines", "_second", "_stamp", "_stream")

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout.buffer
        self._lines: list[bytes] = []
        self._second = -1
        self._stamp = ""

    def _time(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int((now - second) * 1000):03d}Z"

    def record(
        self,
        *,
        host: str,
        method: str,
        path: str,
        status: int,
        nbytes: int,
        duration: float,
        service: str,
        backend: str,
        request_id: str,
    ) -> None:
        """Queue one line. The query string is never logged: it may carry secrets."""
        self._lines.append(
            json.dumps(
                {
                    "time": self._time(),
                    "event": "request",
                    "host": host,
                    "method": method,
                    "path": path,
                    "status": status,
                    "bytes": nbytes,
                    "duration": round(duration, 6),
                    "service": service,
                    "backend": backend,
                    "request_id": request_id,
                },
                separators=(",", ":"),
            ).encode()
            + b"\n"
        )

    def flush(self) -> None:
        if not self._lines:
            return
        data = b"".join(self._lines)
        self._lines.clear()
        try:
            self._stream.write(data)
            self._stream.flush()
        except (OSError, ValueError):
            # A closed or broken stdout must not take the proxy down with it.
            pass
