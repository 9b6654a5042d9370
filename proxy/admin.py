"""The admin API: route table, health, metrics, drain.

    GET  /healthz   200 {"status": "ok"|"draining", "ready": bool, "version": N, "connections": N}
    GET  /readyz    the same body; 200 when ready (a table in force, not draining, not
                    stopping), else 503: what the balancer's health checks ask
    GET  /routes    200 the route table in force (canonical JSON)
    PUT  /routes    200 {"version": N, "services": N}; 400 {"error": ...} keeps the old table
    GET  /metrics   200 Prometheus text
    POST /drain     200 health; POST /resume 200 health

One request per connection: the callers are the agent, the balancer's health checks and
Prometheus, none of which needs keep-alive. The API drives a ``Control``: the single-process
``Server`` or, with several workers, the ``Supervisor`` that fans each call out.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol, cast

from httptools import HttpParserError, HttpRequestParser

from sws.errors import RouteTableError
from sws.route_table import RouteTable

log = logging.getLogger("sws.proxy")

_MAX_BODY = 16 * 1024 * 1024


class Control(Protocol):
    """What the admin API can ask of the proxy."""

    async def put_routes(self, table: RouteTable) -> None: ...

    def routes(self) -> RouteTable: ...

    async def set_draining(self, draining: bool) -> None: ...

    async def health(self) -> dict[str, Any]: ...

    async def metrics_text(self) -> str: ...


Response = tuple[int, str, bytes]


def _json(status: int, obj: object) -> Response:
    return status, "application/json", json.dumps(obj).encode() + b"\n"


async def handle(control: Control, method: str, path: str, body: bytes) -> Response:
    """Answer one admin request."""
    path = path.split("?", 1)[0]
    if path == "/healthz" and method == "GET":
        return _json(200, await control.health())
    if path == "/readyz" and method == "GET":
        # Readiness, for the balancer: a route table in force, not draining, not stopping.
        health = await control.health()
        return _json(200 if health.get("ready") else 503, health)
    if path == "/routes":
        if method == "GET":
            return _json(200, control.routes().to_json_obj())
        if method == "PUT":
            try:
                obj = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                return _json(400, {"error": f"route table: body is not JSON ({exc})"})
            try:
                table = RouteTable.from_json_obj(obj)
            except RouteTableError as exc:
                log.warning("routes_rejected error=%s", json.dumps(exc.message))
                return _json(400, {"error": exc.message})
            await control.put_routes(table)
            return _json(200, {"version": table.version, "services": len(table.services)})
        return _json(405, {"error": f"{method} /routes is not allowed (GET, PUT)"})
    if path == "/metrics" and method == "GET":
        text = await control.metrics_text()
        return 200, "text/plain; version=0.0.4; charset=utf-8", text.encode()
    if path in ("/drain", "/resume"):
        if method != "POST":
            return _json(405, {"error": f"{method} {path} is not allowed (POST)"})
        await control.set_draining(path == "/drain")
        return _json(200, await control.health())
    if path in ("/healthz", "/metrics"):
        return _json(405, {"error": f"{method} {path} is not allowed (GET)"})
    return _json(404, {"error": f"{path} is not an admin endpoint"})


class AdminConnection(asyncio.Protocol):
    """One admin request: read it whole, answer, close."""

    def __init__(self, control: Control, tasks: set[asyncio.Task[None]]) -> None:
        self.control = control
        self.tasks = tasks
        self.parser = HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.size = 0
        self.done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        try:
            self.parser.feed_data(data)
        except HttpParserError as exc:
            self._reply(*_json(400, {"error": f"bad request: {exc}"}))

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > _MAX_BODY:
            self._reply(*_json(413, {"error": f"body is larger than {_MAX_BODY} bytes"}))
            raise HttpParserError("body too large")
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True
        method = self.parser.get_method().decode("latin-1")
        task = asyncio.get_running_loop().create_task(
            self._answer(method, self.url.decode("latin-1"), b"".join(self.body))
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, method: str, path: str, body: bytes) -> None:
        try:
            response = await handle(self.control, method, path, body)
        except Exception as exc:
            log.error("admin_failed error=%r", exc, exc_info=exc)
            response = _json(500, {"error": "internal error"})
        self._reply(*response)

    def _reply(self, status: int, content_type: str, body: bytes) -> None:
        self.done = True
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
        transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s"
            % (
                status,
                reason.get(status, "Error").encode(),
                content_type.encode(),
                len(body),
                body,
            )
        )
        transport.close()


class AdminServer:
    """Listens for admin requests and hands them to a Control."""

    def __init__(self, control: Control) -> None:
        self.control = control
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: AdminConnection(self.control, self._tasks), host, port
        )
        port_: int = self._server.sockets[0].getsockname()[1]
        return port_

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
