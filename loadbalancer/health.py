"""Active health checks: a TCP connect, or an HTTP GET that must answer 200."""

from __future__ import annotations

import asyncio
import contextlib

from loadbalancer.config import Address, HttpCheck
from loadbalancer.pool import Backend, Pool

_MAX_STATUS_LINE = 4096


async def _tcp_check(address: Address) -> None:
    _, writer = await asyncio.open_connection(address.host, address.port)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def _http_check(check: HttpCheck) -> None:
    reader, writer = await asyncio.open_connection(check.address.host, check.address.port)
    try:
        request = (
            f"GET {check.path} HTTP/1.1\r\n"
            f"Host: {check.address}\r\n"
            "User-Agent: sws-loadbalancer-check\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(request.encode("latin-1"))
        status_line = await reader.readuntil(b"\r\n")
    except asyncio.IncompleteReadError:
        raise ConnectionError("connection closed before a status line") from None
    except asyncio.LimitOverrunError:
        raise ConnectionError("status line too long") from None
    finally:
        writer.close()
    parts = status_line[:_MAX_STATUS_LINE].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise ConnectionError("answer is not HTTP")
    if parts[1] != b"200":
        raise ConnectionError(f"status {parts[1].decode('latin-1', 'replace')}")


def describe(exc: BaseException) -> str:
    """Say why a check or connect failed, in a few words and without a traceback."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class HealthChecker:
    """Runs one check loop per backend until cancelled."""

    def __init__(self, pool: Pool, interval: float, timeout: float) -> None:
        self._pool = pool
        self._interval = interval
        self._timeout = timeout

    async def check_once(self, backend: Backend) -> str | None:
        """Check a backend; return None when it is healthy, else why not."""
        check = backend.config.http_check
        try:
            async with asyncio.timeout(self._timeout):
                if check is None:
                    await _tcp_check(backend.address)
                else:
                    await _http_check(check)
        except Exception as exc:  # whatever broke the check, the backend failed it
            return describe(exc)
        return None

    async def run_backend(self, backend: Backend) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            self._pool.record_check(backend, await self.check_once(backend))
            await asyncio.sleep(max(0.0, self._interval - (loop.time() - started)))

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for backend in self._pool:
                group.create_task(self.run_backend(backend), name=f"check-{backend.name}")
