"""The proxy server: listener, route table, backends, deadlines, drain and shutdown.

``Server(config).run()`` installs uvloop and serves until stopped. With one worker (the
default) the admin API runs in the same process and event loop as the proxy. With more, the
process that runs ``Supervisor`` (proxy/workers.py) owns the admin API and each worker runs a
``Server`` without one; see docs/proxy.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any, cast

import uvloop

from proxy.access_log import AccessLog
from proxy.admin import AdminServer
from proxy.config import Config
from proxy.metrics import Metrics, render
from proxy.protocol import ClientConnection, Exchange
from proxy.upstream import Backend, UpstreamConnection
from sws.errors import RouteTableError
from sws.route_table import RouteTable

log = logging.getLogger("sws.proxy")

_HOST_CACHE_LIMIT = 4096


def fields(**values: object) -> str:
    """Render key=value pairs for a log line."""
    return " ".join(f"{k}={v}" for k, v in values.items())


def load_routes(path: str) -> RouteTable:
    """Read a route table file; raise RouteTableError naming the file and the problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RouteTableError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RouteTableError(f"{path}: is not JSON ({exc})") from None
    try:
        return RouteTable.from_json_obj(obj)
    except RouteTableError as exc:
        raise RouteTableError(f"{path}: {exc.message}") from None


class Server:
    """Runs one proxy process: the listener and, with one worker, the admin API."""

    def __init__(self, config: Config, *, admin: bool = True, reuse_port: bool = False) -> None:
        self.config = config
        # The limits the per-request path reads, copied once: compiled (server.pxd) each is
        # a C field, where reading the Config's attribute is a dictionary lookup.
        self.body_timeout = config.body_timeout
        self.buffer_limit = config.buffer_limit
        self.fail_timeout = config.fail_timeout
        self.header_timeout = config.header_timeout
        self.keepalive_timeout = config.keepalive_timeout
        self.linger_timeout = config.linger_timeout
        self.max_header_bytes = config.max_header_bytes
        self.max_url_bytes = config.max_url_bytes
        self.upstream_timeout = config.upstream_timeout
        self.upstream_idle_timeout = config.upstream_idle_timeout
        self.upstream_max_idle = config.upstream_max_idle
        self._with_admin = admin
        self._reuse_port = reuse_port
        self.loop: asyncio.AbstractEventLoop | None = None
        self.clock = _unset_clock
        # The loop's time as of the last tick: deadlines are set from it, so a state change
        # costs a float load instead of a clock read; the tick reads the real clock.
        self.now = 0.0
        self.table = RouteTable.empty()
        self.backends: dict[str, Backend] = {}
        self._service_backends: dict[str, tuple[Backend, ...]] = {}
        self._host_cache: dict[bytes, tuple[str, tuple[Backend, ...]] | None] = {}
        self.clients: set[ClientConnection] = set()
        self.upstreams: set[UpstreamConnection] = set()
        self.draining = False
        self.stopping = False
        # SIGTERM received: not ready any more, though still serving for shutdown_delay.
        self.shutting_down = False
        # Whether a route table has been put in force (from --routes or PUT /routes): until
        # then every host is unknown, so the proxy must not be sent traffic.
        self.routes_loaded = False
        self._idle_close: asyncio.TimerHandle | None = None
        self.metrics = Metrics()
        self.access_log = AccessLog() if config.access_log else None
        self.turn = 0
        self.retried = 0
        # Generated request ids: a per-process prefix and a counter (the client side counts).
        self.rid_prefix = os.urandom(6).hex().encode() + b"-"
        self.rid_counter = 0
        self._listener: asyncio.AbstractServer | None = None
        self._admin: AdminServer | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._shutdown_task: asyncio.Task[None] | None = None
        # Set once listening, for callers that run the server in a thread.
        self.started = threading.Event()
        self.listen_port = 0
        self.admin_port = 0

    # -- running ----------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until stopped (SIGTERM drains first)."""
        uvloop.run(self.serve())

    async def serve(self) -> None:
        loop = self.loop = asyncio.get_running_loop()
        self.clock = loop.time
        self.now = loop.time()
        self._stopped = loop.create_future()
        config = self.config
        if config.routes_file and self.table.version == 0 and not self.table.services:
            self.set_routes(load_routes(config.routes_file))
        # The protocol classes are asyncio protocols in all but name: compiled, they are
        # extension types and cannot derive from asyncio.Protocol (see setup.py).
        self._listener = await loop.create_server(
            lambda: cast(asyncio.Protocol, ClientConnection(self)),
            config.listen_host,
            config.listen_port,
            backlog=2048,
            reuse_port=self._reuse_port or None,
        )
        self.listen_port = self._listener.sockets[0].getsockname()[1]
        if self._with_admin:
            self._admin = AdminServer(self)
            self.admin_port = await self._admin.start(config.admin_host, config.admin_port)
        if threading.current_thread() is threading.main_thread():
            loop.add_signal_handler(signal.SIGTERM, self.shutdown)
            loop.add_signal_handler(signal.SIGINT, self.shutdown)
        self._tick_handle = loop.call_later(config.tick, self._tick)
        log.info(
            "%s %s",
            "proxy_started" if self._with_admin else "worker_started",
            fields(
                listen=f"{config.listen_host}:{self.listen_port}",
                admin=f"{config.admin_host}:{self.admin_port}" if self._with_admin else "-",
                routes_version=self.table.version,
                pid=os.getpid(),
            ),
        )
        self.started.set()
        try:
            await self._stopped
        finally:
            await self._close()

    def shutdown(self) -> None:
        """Report not ready, drain, then stop once connections reach zero or time is up."""
        if self._shutdown_task is None and self.loop is not None:
            self.shutting_down = True
            self._shutdown_task = self.loop.create_task(self._drain_and_stop())

    def stop(self) -> None:
        """Stop now (thread-safe)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return

        def _stop() -> None:
            if self._stopped is not None and not self._stopped.done():
                self._stopped.set_result(None)

        loop.call_soon_threadsafe(_stop)

    async def _drain_and_stop(self) -> None:
        if self.config.shutdown_delay > 0:
            log.info("proxy_unready %s", fields(delay=self.config.shutdown_delay))
            await asyncio.sleep(self.config.shutdown_delay)
        self.drain()
        log.info(
            "proxy_draining %s",
            fields(connections=len(self.clients), timeout=self.config.drain_timeout),
        )
        deadline = self.clock() + self.config.drain_timeout
        while self.clients and self.clock() < deadline:
            await asyncio.sleep(self.config.tick)
        log.info("proxy_stopping %s", fields(connections_left=len(self.clients)))
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    async def _close(self) -> None:
        self.stopping = True
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        if self._listener is not None:
            self._listener.close()
        if self._admin is not None:
            self._admin.close()
        for client in list(self.clients):
            client.transport.close()
        for upstream in list(self.upstreams):
            upstream.transport.close()
        if self.access_log is not None:
            self.access_log.flush()
        await asyncio.sleep(0)

    def _tick(self) -> None:
        assert self.loop is not None
        # Scheduled first: a failure below must not stop every later deadline.
        self._tick_handle = self.loop.call_later(self.config.tick, self._tick)
        now = self.now = self.clock()
        for conn in [c for c in self.clients if c.deadline and c.deadline <= now] + [
            u for u in self.upstreams if u.deadline and u.deadline <= now
        ]:
            try:
                conn.timed_out()
            except Exception as exc:
                self.log_error("timeout_failed", exc)
                conn.transport.close()
        if self.access_log is not None:
            self.access_log.flush()

    # -- routing ----------------------------------------------------------------------------

    def set_routes(self, table: RouteTable) -> None:
        """Put ``table`` in force for every request started from now on."""
        self.routes_loaded = True
        wanted = table.backends()
        for addr in wanted:
            backend = self.backends.get(addr)
            if backend is None:
                self.backends[addr] = Backend(addr)
            else:
                backend.retired = False
        for addr, backend in list(self.backends.items()):
            if addr not in wanted:
                backend.retired = True
                backend.close_idle()
                del self.backends[addr]
        self._service_backends = {
            route.name: tuple(self.backends[a] for a in route.backends) for route in table.services
        }
        self._host_cache = {}
        self.table = table

    def route(self, host: bytes) -> tuple[str, tuple[Backend, ...]] | None:
        """Return (service, backends) for a Host value, or None for an unknown host."""
        cache = self._host_cache
        try:
            return cache[host]
        except KeyError:
            pass
        # llhttp keeps whitespace that trails a field value; a Host with it is the same host.
        route = self.table.lookup(host.decode("latin-1").rstrip(" \t"))
        found = None if route is None else (route.name, self._service_backends[route.name])
        if len(cache) >= _HOST_CACHE_LIMIT:
            cache.clear()
        cache[host] = found
        return found

    def connect(self, backend: Backend, ex: Exchange) -> None:
        assert self.loop is not None
        self.loop.create_task(self._connect(backend, ex))

    async def _connect(self, backend: Backend, ex: Exchange) -> None:
        assert self.loop is not None
        try:
            _, protocol = await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: cast(asyncio.Protocol, UpstreamConnection(self, backend)),
                    backend.host,
                    backend.port,
                ),
                self.config.connect_timeout,
            )
        except TimeoutError:
            ex.client.connect_failed(
                ex,
                backend,
                504,
                f"backend {backend.addr} of {ex.service} did not accept a connection within "
                f"{self.config.connect_timeout:g}s",
            )
        except OSError as exc:
            ex.client.connect_failed(
                ex,
                backend,
                502,
                f"backend {backend.addr} of {ex.service} refused the connection "
                f"({exc.strerror or exc})",
            )
        except Exception as exc:
            self.log_error("connect_failed", exc)
            ex.client.connect_failed(
                ex, backend, 502, f"backend {backend.addr} of {ex.service} could not be reached"
            )
        else:
            ex.client.connected(ex, cast(UpstreamConnection, protocol))

    def finished(self, ex: Exchange, status: int) -> None:
        """Count and log one answered request."""
        duration = self.clock() - ex.start if ex.start else 0.0
        self.metrics.observe(ex.service, status, duration)
        access_log = self.access_log
        if access_log is not None:
            url = ex.url
            query = url.find(b"?")
            access_log.record(
                host=ex.host.decode("latin-1"),
                method=ex.method.decode("latin-1"),
                path=(url if query < 0 else url[:query]).decode("latin-1"),
                status=status,
                nbytes=ex.bytes_out,
                duration=duration,
                service=ex.service,
                backend=ex.backend.addr if ex.backend is not None else "",
                request_id=ex.request_id.decode("latin-1"),
            )

    def log_error(self, event: str, exc: BaseException) -> None:
        log.error("%s %s", event, fields(error=repr(exc)), exc_info=exc)

    # -- Control (what the admin API drives) ------------------------------------------------

    async def put_routes(self, table: RouteTable) -> None:
        self.set_routes(table)
        log.info("routes_swapped %s", fields(version=table.version, services=len(table.services)))

    def routes(self) -> RouteTable:
        return self.table

    def drain(self) -> None:
        """Busy connections close after their current answer; idle ones after a grace."""
        self.draining = True
        if self._idle_close is not None:
            self._idle_close.cancel()
            self._idle_close = None
        if self.config.drain_idle_grace > 0 and self.loop is not None:
            self._idle_close = self.loop.call_later(self.config.drain_idle_grace, self._close_idle)
        else:
            self._close_idle()

    def _close_idle(self) -> None:
        self._idle_close = None
        if self.draining:
            for client in list(self.clients):
                client.drain()

    async def set_draining(self, draining: bool) -> None:
        if draining:
            self.drain()
        else:
            self.draining = False
            if self._idle_close is not None:
                self._idle_close.cancel()
                self._idle_close = None
        log.info(
            "proxy_%s %s", "drain" if draining else "resume", fields(connections=len(self.clients))
        )

    async def health(self) -> dict[str, Any]:
        return {
            "status": "draining" if self.draining else "ok",
            "ready": self.routes_loaded and not self.draining and not self.shutting_down,
            "version": self.table.version,
            "connections": len(self.clients),
        }

    async def stats(self) -> dict[str, Any]:
        """This process's counters, for the admin API or a supervisor adding workers up."""
        return {
            "metrics": self.metrics.snapshot(),
            "connections": len(self.clients),
            "draining": self.draining,
            "version": self.table.version,
        }

    async def metrics_text(self) -> str:
        return render(
            self.metrics.snapshot(),
            open_connections=len(self.clients),
            route_version=self.table.version,
            draining=self.draining,
            workers=1,
        )


def _unset_clock() -> float:
    raise RuntimeError("the server is not running")
