"""The admin API: a small HTTP/1.1 server answering JSON (and Prometheus text on /metrics).

GET  /healthz                 200 while the process runs (liveness)
GET  /readyz                  200 if some backend is enabled and not down, else 503
GET  /backends                every backend's state and counters
GET  /backends/NAME           one backend
POST /backends/NAME/drain     stop sending new connections to NAME
POST /backends/NAME/enable    send new connections to NAME again
GET  /metrics                 Prometheus text format
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import cast

import httptools

from loadbalancer import logfmt, metrics
from loadbalancer.pool import Backend, Pool
from loadbalancer.splice import Relay

log = logging.getLogger(logfmt.LOGGER_NAME)

_MAX_BODY = 64 * 1024
_JSON = "application/json"


class Response:
    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        content_type: str = _JSON,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers


def _json(status: int, document: object, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, json.dumps(document, indent=None).encode() + b"\n", _JSON, headers)


def _error(status: int, message: str, **fields: object) -> Response:
    return _json(status, {"error": message, **fields})


class AdminApi:
    """Routes admin requests to the pool; knows nothing about sockets."""

    def __init__(self, pool: Pool, relay: Relay) -> None:
        self._pool = pool
        self._relay = relay

    def handle(self, method: str, target: str) -> Response:
        path, _, query = target.partition("?")
        parts = [p for p in path.split("/") if p]
        if parts == ["healthz"]:
            return self._only(method, "GET", self._healthz)
        if parts == ["readyz"]:
            return self._only(method, "GET", self._readyz)
        if parts == ["metrics"]:
            return self._only(method, "GET", self._metrics)
        if parts == ["backends"]:
            return self._only(method, "GET", self._backends)
        if len(parts) in (2, 3) and parts[0] == "backends":
            backend = self._pool.get(parts[1])
            if backend is None:
                return _error(
                    404,
                    f'backend "{parts[1]}" not found',
                    backend=parts[1],
                    known=[b.name for b in self._pool],
                )
            if len(parts) == 2:
                return self._only(method, "GET", lambda: _json(200, backend.to_json()))
            if parts[2] == "drain":
                force = "force=true" in query.split("&")
                return self._only(method, "POST", lambda: self._drain(backend, force))
            if parts[2] == "enable":
                return self._only(method, "POST", lambda: self._enable(backend))
        return _error(404, f"no such path: {path}")

    @staticmethod
    def _only(method: str, allowed: str, action: Callable[[], Response]) -> Response:
        if method != allowed:
            return _json(
                405,
                {"error": f"method {method} not allowed here (allowed: {allowed})"},
                (("Allow", allowed),),
            )
        return action()

    def _healthz(self) -> Response:
        return _json(200, {"status": "ok"})

    def _readyz(self) -> Response:
        available = [b.name for b in self._pool if b.available]
        if available:
            return _json(200, {"status": "ready", "available": available})
        return _json(503, {"status": "no backend available", "available": []})

    def _backends(self) -> Response:
        return _json(200, {"backends": [b.to_json() for b in self._pool]})

    def _drain(self, backend: Backend, force: bool) -> Response:
        others = [b for b in self._pool if b is not backend and b.available]
        if backend.available and not others and not force:
            # Like a disruption budget: a rolling update that drains the second proxy before
            # the first is back would otherwise refuse every client.
            return _error(
                409,
                f'draining backend "{backend.name}" would leave no backend to take '
                "connections; add ?force=true to drain it anyway",
                backend=backend.name,
            )
        self._pool.drain(backend)
        return _json(200, backend.to_json())

    def _enable(self, backend: Backend) -> Response:
        self._pool.enable(backend)
        return _json(200, backend.to_json())

    def _metrics(self) -> Response:
        relay = self._relay
        text = metrics.render(
            self._pool, len(relay.clients), relay.accepted, relay.half_close_expired
        )
        return Response(200, text.encode(), metrics.CONTENT_TYPE)


class AdminProtocol(asyncio.Protocol):
    """One admin connection: parse requests with httptools, answer each in order."""

    def __init__(self, api: AdminApi) -> None:
        self._api = api
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._body_size = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but behave as one.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._send(_error(400, "upgrade is not supported"), keep_alive=False)
        except httptools.HttpParserError as exc:
            self._send(_error(400, f"malformed request: {exc}"), keep_alive=False)

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > _MAX_BODY:
            raise httptools.HttpParserError("body too large")

    def on_message_complete(self) -> None:
        method = self._parser.get_method().decode("latin-1")
        target = self._url.decode("latin-1")
        response = self._api.handle(method, target)
        if method == "POST":
            logfmt.emit(
                log,
                logging.INFO,
                "admin_request",
                method=method,
                path=target,
                status=response.status,
            )
        self._send(response, keep_alive=self._parser.should_keep_alive())

    def _send(self, response: Response, keep_alive: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        reason = HTTPStatus(response.status).phrase
        head_lines = [
            f"HTTP/1.1 {response.status} {reason}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            "Cache-Control: no-store",
            *(f"{name}: {value}" for name, value in response.headers),
        ]
        if not keep_alive:
            head_lines.append("Connection: close")
        transport.write("\r\n".join(head_lines).encode("latin-1") + b"\r\n\r\n" + response.body)
        if not keep_alive:
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
