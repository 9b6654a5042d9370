"""Several worker processes behind one admin API.

Theory of operation
-------------------
With ``--workers N`` (N > 1) the process started by the CLI becomes the supervisor. It
reserves the listen port (binding a SO_REUSEPORT socket it never listens on, which also
resolves port 0), then starts N workers. Each worker is a fresh interpreter running a
``Server`` without an admin API, listening on that port with SO_REUSEPORT of its own, so the
kernel spreads new connections across the workers.

The supervisor runs the admin API. Each worker has a control socket to it (a socketpair
inherited at start) that carries one JSON line per command and one JSON line back:
``routes`` (swap in a table), ``drain``, ``resume``, ``stats`` (counters and connection
count). A route swap is validated once in the supervisor and then sent to every worker;
health and metrics add the workers' answers up. Route tables are kept in the supervisor,
so a worker that dies is started again and handed the table and drain state in force.

SIGTERM to the supervisor marks it draining and sends SIGTERM to every worker; each worker
drains on its own (see Server) and the supervisor exits when all have.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import asdict
from typing import Any

import uvloop

from proxy.admin import AdminServer, Control
from proxy.config import Config
from proxy.metrics import merge, render
from proxy.server import Server, fields, load_routes
from sws.route_table import RouteTable

log = logging.getLogger("sws.proxy")

_CONFIG_ENV = "SWS_PROXY_WORKER_CONFIG"
_FD_ENV = "SWS_PROXY_WORKER_FD"


class Worker:
    """The supervisor's handle on one worker process."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: subprocess.Popen[bytes] | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.lock = asyncio.Lock()

    async def start(self, config: Config) -> None:
        ours, theirs = socket.socketpair()
        env = {
            **os.environ,
            _CONFIG_ENV: json.dumps(asdict(config)),
            _FD_ENV: str(theirs.fileno()),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from proxy.workers import worker_main; worker_main()"],
            env=env,
            pass_fds=(theirs.fileno(),),
        )
        theirs.close()
        self.reader, self.writer = await asyncio.open_connection(sock=ours)

    async def call(self, command: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        async with self.lock:
            if self.writer is None or self.reader is None:
                raise ConnectionError(f"worker {self.index} is not running")
            self.writer.write(json.dumps(command).encode() + b"\n")
            await self.writer.drain()
            line = await asyncio.wait_for(self.reader.readline(), timeout)
            if not line:
                raise ConnectionError(f"worker {self.index} closed its control socket")
            answer: dict[str, Any] = json.loads(line)
            return answer


class Supervisor(Control):
    """Starts the workers, keeps them running, and answers the admin API for all of them."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.table = RouteTable.empty()
        self.draining = False
        self.workers = [Worker(i) for i in range(config.workers)]
        self._admin: AdminServer | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._stopping = False
        self.routes_loaded = False
        self._holder: socket.socket | None = None
        self.started = threading.Event()
        self.listen_port = 0
        self.admin_port = 0

    def run(self) -> None:
        uvloop.run(self.serve())

    def _reserve_port(self) -> int:
        family = socket.AF_INET6 if ":" in self.config.listen_host else socket.AF_INET
        holder = socket.socket(family, socket.SOCK_STREAM)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind((self.config.listen_host, self.config.listen_port))
        self._holder = holder
        port: int = holder.getsockname()[1]
        return port

    def _worker_config(self) -> Config:
        values = asdict(self.config)
        values.update(listen_port=self.listen_port, workers=1)
        return Config(**values)

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._stopped = loop.create_future()
        if self.config.routes_file:
            self.table = load_routes(self.config.routes_file)
            self.routes_loaded = True
        self.listen_port = self._reserve_port()
        worker_config = self._worker_config()
        for worker in self.workers:
            await worker.start(worker_config)
        await asyncio.gather(*(self._hand_over(w) for w in self.workers))
        self._admin = AdminServer(self)
        self.admin_port = await self._admin.start(self.config.admin_host, self.config.admin_port)
        if threading.current_thread() is threading.main_thread():
            loop.add_signal_handler(signal.SIGTERM, self.shutdown)
            loop.add_signal_handler(signal.SIGINT, self.shutdown)
        watch = loop.create_task(self._watch(worker_config))
        log.info(
            "proxy_started %s",
            fields(
                listen=f"{self.config.listen_host}:{self.listen_port}",
                admin=f"{self.config.admin_host}:{self.admin_port}",
                routes_version=self.table.version,
                workers=len(self.workers),
                pid=os.getpid(),
            ),
        )
        self.started.set()
        try:
            await self._stopped
        finally:
            watch.cancel()
            self._admin.close()
            for worker in self.workers:
                if worker.proc is not None and worker.proc.poll() is None:
                    worker.proc.kill()
            if self._holder is not None:
                self._holder.close()

    async def _hand_over(self, worker: Worker) -> None:
        """Bring a (re)started worker up to date, which also waits until it is serving."""
        await worker.call({"op": "routes", "table": self.table.to_json_obj()}, timeout=30)
        if self.draining:
            await worker.call({"op": "drain"})

    async def _watch(self, worker_config: Config) -> None:
        while True:
            await asyncio.sleep(0.5)
            for worker in self.workers:
                proc = worker.proc
                if proc is None or proc.poll() is None or self._stopping:
                    continue
                log.warning("worker_exited %s", fields(worker=worker.index, code=proc.returncode))
                try:
                    await worker.start(worker_config)
                    await self._hand_over(worker)
                except (OSError, ConnectionError, TimeoutError) as exc:
                    log.error("worker_restart_failed %s", fields(error=repr(exc)))

    def shutdown(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self.draining = True
        asyncio.get_running_loop().create_task(self._drain_and_stop())

    async def _drain_and_stop(self) -> None:
        log.info("proxy_draining %s", fields(workers=len(self.workers)))
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
        deadline = asyncio.get_running_loop().time() + self.config.drain_timeout + 5
        while asyncio.get_running_loop().time() < deadline:
            if all(w.proc is None or w.proc.poll() is not None for w in self.workers):
                break
            await asyncio.sleep(0.05)
        log.info("proxy_stopping")
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    async def _each(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        answers = await asyncio.gather(
            *(w.call(command) for w in self.workers), return_exceptions=True
        )
        good: list[dict[str, Any]] = []
        for worker, answer in zip(self.workers, answers, strict=True):
            if isinstance(answer, BaseException):
                log.warning(
                    "worker_unreachable %s", fields(worker=worker.index, error=repr(answer))
                )
            else:
                good.append(answer)
        return good

    # -- Control ----------------------------------------------------------------------------

    async def put_routes(self, table: RouteTable) -> None:
        self.table = table
        self.routes_loaded = True
        await self._each({"op": "routes", "table": table.to_json_obj()})
        log.info("routes_swapped %s", fields(version=table.version, services=len(table.services)))

    def routes(self) -> RouteTable:
        return self.table

    async def set_draining(self, draining: bool) -> None:
        self.draining = draining
        await self._each({"op": "drain" if draining else "resume"})

    async def health(self) -> dict[str, Any]:
        stats = await self._each({"op": "stats"})
        return {
            "status": "draining" if self.draining else "ok",
            "ready": self.routes_loaded
            and bool(stats)
            and not self.draining
            and not self._stopping,
            "version": self.table.version,
            "connections": sum(s["connections"] for s in stats),
            "workers": len(stats),
        }

    async def metrics_text(self) -> str:
        stats = await self._each({"op": "stats"})
        return render(
            merge([s["metrics"] for s in stats]),
            open_connections=sum(s["connections"] for s in stats),
            route_version=self.table.version,
            draining=self.draining,
            workers=len(stats),
        )


async def _control(server: Server, sock: socket.socket) -> None:
    """Answer the supervisor's commands until it goes away, then stop."""
    reader, writer = await asyncio.open_connection(sock=sock)
    while True:
        line = await reader.readline()
        if not line:
            server.shutdown()
            return
        command = json.loads(line)
        op = command.get("op")
        answer: dict[str, Any]
        if op == "routes":
            server.set_routes(RouteTable.from_json_obj(command["table"]))
            answer = {"ok": True}
        elif op in ("drain", "resume"):
            await server.set_draining(op == "drain")
            answer = {"ok": True}
        elif op == "stats":
            answer = await server.stats()
        else:
            answer = {"error": f"unknown command {op!r}"}
        writer.write(json.dumps(answer).encode() + b"\n")
        await writer.drain()


def worker_main() -> None:
    """Entry point of a worker process (started by the Supervisor)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    config = Config(**json.loads(os.environ[_CONFIG_ENV]))
    sock = socket.socket(fileno=int(os.environ[_FD_ENV]))
    # The supervisor hands the table over the control socket; loading the file again here
    # would only race with it.
    config.routes_file = None
    server = Server(config, admin=False, reuse_port=True)

    async def main() -> None:
        control = asyncio.get_running_loop().create_task(_wait_then_control(server, sock))
        try:
            await server.serve()
        finally:
            control.cancel()

    uvloop.run(main())


async def _wait_then_control(server: Server, sock: socket.socket) -> None:
    while not server.started.is_set():
        await asyncio.sleep(0.01)
    await _control(server, sock)
