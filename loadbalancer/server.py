"""The balancer process: listeners, health checks, admin API and graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

import uvloop

from loadbalancer import logfmt
from loadbalancer.admin import AdminApi, AdminProtocol
from loadbalancer.config import Address, Config
from loadbalancer.health import HealthChecker
from loadbalancer.pool import Pool
from loadbalancer.resolver import Resolver
from loadbalancer.splice import Relay

log = logging.getLogger(logfmt.LOGGER_NAME)


def _bound(server: asyncio.AbstractServer) -> list[Address]:
    addresses = []
    for sock in getattr(server, "sockets", ()):
        host, port = sock.getsockname()[:2]
        addresses.append(Address(host, port))
    return addresses


class Server:
    """Runs one balancer described by a Config until told to stop.

    ``run()`` blocks on its own uvloop event loop; ``request_stop()`` may be called from
    any thread (signal handlers call it on SIGTERM and SIGINT). ``started`` is set once all
    sockets are bound, and ``listen_addresses``/``admin_address`` then hold the real ports.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.started = threading.Event()
        self.listen_addresses: list[Address] = []
        self.admin_address: Address | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = False
        self._force = False

    def run(self) -> None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(self.serve())

    def request_stop(self) -> None:
        """Stop accepting and let open connections finish within the grace period."""
        self._stop_requested = True
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)

    def _on_signal(self, signum: int) -> None:
        if self._stop is not None and self._stop.is_set():
            # A second signal during the grace period means "now".
            self._force = True
            logfmt.emit(log, logging.WARNING, "shutdown_forced", signal=signal.Signals(signum).name)
        else:
            logfmt.emit(log, logging.INFO, "signal", signal=signal.Signals(signum).name)
        self.request_stop()

    async def serve(self) -> None:
        config = self.config
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop = stop = asyncio.Event()
        if self._stop_requested:
            stop.set()

        pool = Pool(config.backends, rise=config.rise, fall=config.fall)
        relay = Relay(
            pool,
            Resolver(config.resolve_ttl),
            config.connect_timeout,
            config.connect_buffer,
            config.half_close_timeout,
        )
        checker = HealthChecker(pool, config.check_interval, config.check_timeout)
        api = AdminApi(pool, relay)

        checks: asyncio.Task[None] | None = None
        listeners: list[asyncio.AbstractServer] = []
        admin: asyncio.AbstractServer | None = None
        try:
            for address in config.listen:
                listeners.append(
                    await loop.create_server(
                        relay.protocol,
                        address.host,
                        address.port,
                        backlog=config.backlog,
                        reuse_address=True,
                    )
                )
            admin = await loop.create_server(
                lambda: AdminProtocol(api),
                config.admin.host,
                config.admin.port,
                reuse_address=True,
            )
            checks = loop.create_task(checker.run(), name="health-checks")
            self.listen_addresses = [a for server in listeners for a in _bound(server)]
            self.admin_address = _bound(admin)[0]
            if threading.current_thread() is threading.main_thread():
                for signum in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(signum, self._on_signal, signum)
            logfmt.emit(
                log,
                logging.INFO,
                "listening",
                listen=",".join(str(a) for a in self.listen_addresses),
                admin=self.admin_address,
                backends=",".join(f"{b.name}={b.address}" for b in config.backends),
            )
            self.started.set()
            await stop.wait()
            await self._shutdown(listeners, relay)
        finally:
            for server in listeners:
                server.close()
            if admin is not None:
                admin.close()
            if checks is not None:
                checks.cancel()
            relay.abort_all()
            self._loop = None

    async def _shutdown(self, listeners: list[asyncio.AbstractServer], relay: Relay) -> None:
        for server in listeners:
            server.close()
        logfmt.emit(
            log,
            logging.INFO,
            "shutdown_started",
            open_connections=len(relay.clients),
            grace_period=self.config.grace_period,
        )
        deadline = asyncio.get_running_loop().time() + self.config.grace_period
        idle = asyncio.ensure_future(relay.wait_idle())
        try:
            # Poll so a second signal (self._force) cuts the grace period short.
            while not idle.done() and not self._force:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                await asyncio.wait([idle], timeout=min(remaining, 0.1))
        finally:
            idle.cancel()
        left = len(relay.clients)
        if left:
            logfmt.emit(log, logging.WARNING, "shutdown_aborting", open_connections=left)
            relay.abort_all()
        logfmt.emit(log, logging.INFO, "shutdown_complete")
