"""A small web service that SWS deploys in its own tests.

Theory of operation: asyncio accepts connections and gives each its own task, which
reads requests one after another on the same connection (HTTP/1.1 keep-alive, and
pipelining for free since the stream is read in order). A request is its head plus a
`Body` that decodes Content-Length or chunked framing lazily, so handlers can stream
it; whatever a handler leaves unread is drained before the next request is parsed.
Responses of known length carry Content-Length; streamed ones (SSE, echo of a chunked
body) use chunked encoding so the connection survives them. GET /ws switches the
connection to RFC 6455 frames and echoes messages until either side closes.

Only the standard library is used, so the image needs nothing but python3.

Environment: PORT (8080), APP_VERSION, VOLUME_DIR (default /data if it exists),
STARTUP_DELAY (seconds to wait before listening), FAIL_AT_START (exit code to exit
with at once), ACCESS_LOG (1; 0 silences the line per request, for load tests).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import http
import json
import os
import signal
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

MAX_HEAD = 64 * 1024
MAX_WS_MESSAGE = 16 * 1024 * 1024
VOLUME_PREVIEW = 4096
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS_CLOSE_TIMEOUT = 5.0


class BadRequest(Exception):
    """The peer sent something that is not HTTP/1.x."""


class InvalidArgument(Exception):
    """A query argument broke its rule; answered with 400 on a healthy connection."""


@dataclass
class Config:
    host: str = "0.0.0.0"
    port: int = 8080
    version: str = ""
    volume_dir: Path | None = None
    startup_delay: float = 0.0
    access_log: bool = True

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Config:
        volume = env.get("VOLUME_DIR")
        default_volume = Path("/data")
        return cls(
            host=env.get("HOST", "0.0.0.0"),
            port=int(_env_number(env, "PORT", 8080)),
            version=env.get("APP_VERSION", ""),
            volume_dir=Path(volume)
            if volume
            else (default_volume if default_volume.is_dir() else None),
            startup_delay=_env_number(env, "STARTUP_DELAY", 0.0),
            access_log=env.get("ACCESS_LOG", "1") != "0",
        )


def _env_number(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"testapp: {name}: {raw!r} is not a number") from None
    if value < 0:
        raise SystemExit(f"testapp: {name}: {raw!r} must not be negative")
    return value


class Body:
    """The request body, read on demand from the connection."""

    def __init__(self, reader: asyncio.StreamReader, headers: dict[str, str]) -> None:
        self._reader = reader
        self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self.length: int | None = None
        if not self.chunked and "content-length" in headers:
            try:
                self.length = int(headers["content-length"])
            except ValueError:
                raise BadRequest("content-length is not a number") from None
            if self.length < 0:
                raise BadRequest("content-length is negative")
        self._remaining = self.length or 0
        self._done = not self.chunked and not self._remaining

    async def chunks(self, size: int = 65536) -> AsyncIterator[bytes]:
        while not self._done:
            if self.chunked:
                line = await self._reader.readuntil(b"\r\n")
                try:
                    chunk_size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise BadRequest("bad chunk size") from None
                if chunk_size == 0:
                    # Trailers end at the first empty line.
                    while (await self._reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    self._done = True
                    return
                data = await self._reader.readexactly(chunk_size)
                if await self._reader.readexactly(2) != b"\r\n":
                    raise BadRequest("chunk not followed by CRLF")
                yield data
            else:
                data = await self._reader.read(min(size, self._remaining))
                if not data:
                    raise asyncio.IncompleteReadError(b"", self._remaining)
                self._remaining -= len(data)
                self._done = self._remaining == 0
                yield data

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    async def drain(self) -> int:
        total = 0
        async for chunk in self.chunks():
            total += len(chunk)
        return total


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    raw_headers: list[tuple[str, str]]
    body: Body
    peer: str
    path: str = ""
    query: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        parts = urlsplit(self.target)
        self.path = parts.path or "/"
        self.query = parse_qs(parts.query)

    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens

    def arg(self, name: str, default: str) -> str:
        return self.query.get(name, [default])[0]


class Connection:
    """Serve one client connection until it closes or stops being HTTP."""

    def __init__(
        self, app: App, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.app = app
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    async def serve(self) -> None:
        try:
            while True:
                request = await self.read_request()
                if request is None:
                    return
                keep = await self.app.handle(self, request)
                if not keep:
                    return
                await request.body.drain()
        except BadRequest as exc:
            with contextlib.suppress(ConnectionError):
                await self.respond(400, f"bad request: {exc}\n".encode(), keep_alive=False)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.LimitOverrunError:
            with contextlib.suppress(ConnectionError):
                await self.respond(431, b"request head too large\n", keep_alive=False)
        except Exception as exc:
            print(f"error peer={self.peer} exc={exc!r}", file=sys.stderr, flush=True)
        finally:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()

    async def read_request(self) -> Request | None:
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                raise BadRequest("connection closed inside the request head") from None
            return None
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ")
        except ValueError:
            raise BadRequest("malformed request line") from None
        if version not in ("HTTP/1.0", "HTTP/1.1"):
            raise BadRequest(f"unsupported version {version}")
        raw: list[tuple[str, str]] = []
        folded: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise BadRequest("malformed header line")
            value = value.strip()
            raw.append((name, value))
            key = name.lower()
            folded[key] = f"{folded[key]}, {value}" if key in folded else value
        body = Body(self.reader, folded)
        if folded.get("expect", "").lower() == "100-continue" and version == "HTTP/1.1":
            self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return Request(method, target, version, folded, raw, body, self.peer)

    def head(self, status: int, headers: list[tuple[str, str]]) -> None:
        lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}"]
        lines += [f"{name}: {value}" for name, value in headers]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    async def respond(
        self,
        status: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        keep_alive: bool = True,
        send_body: bool = True,
    ) -> None:
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Connection", "keep-alive" if keep_alive else "close"),
        ]
        self.head(status, headers)
        if send_body:
            self.writer.write(body)
        await self.writer.drain()

    async def write_chunk(self, data: bytes) -> None:
        if data:
            self.writer.write(b"%x\r\n%b\r\n" % (len(data), data))
            await self.writer.drain()

    async def end_chunks(self) -> None:
        self.writer.write(b"0\r\n\r\n")
        await self.writer.drain()


class WebSocket:
    """Echo RFC 6455 messages; the server side never masks, the client always must."""

    def __init__(self, conn: Connection) -> None:
        self.reader = conn.reader
        self.writer = conn.writer

    async def read_frame(self) -> tuple[bool, int, bytes]:
        first, second = await self.reader.readexactly(2)
        fin, rsv, opcode = bool(first & 0x80), first & 0x70, first & 0x0F
        masked, length = bool(second & 0x80), second & 0x7F
        if rsv or not masked:
            raise WsError(1002, "reserved bits set" if rsv else "client frame not masked")
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        if opcode >= 8 and (length > 125 or not fin):
            raise WsError(1002, "bad control frame")
        if length > MAX_WS_MESSAGE:
            raise WsError(1009, "frame too large")
        mask = await self.reader.readexactly(4)
        payload = bytearray(await self.reader.readexactly(length))
        # XOR with the repeated mask in one big-integer operation rather than per byte.
        key = (mask * (length // 4 + 1))[:length]
        unmasked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(
            length, "big"
        )
        return fin, opcode, unmasked

    async def send(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
        self.writer.write(header + payload)
        await self.writer.drain()

    async def close(self, code: int, reason: str = "") -> None:
        await self.send(8, struct.pack("!H", code) + reason.encode())

    async def run(self) -> None:
        message_opcode = 0
        parts: list[bytes] = []
        try:
            while True:
                fin, opcode, payload = await self.read_frame()
                if opcode == 8:
                    try:
                        reply = self.close_reply(payload)
                    except WsError as exc:
                        await self.close(exc.code, exc.reason)
                        return
                    await self.send(8, reply)
                    return
                if opcode == 9:
                    await self.send(10, payload)
                    continue
                if opcode == 10:
                    continue
                if opcode not in (0, 1, 2):
                    raise WsError(1002, f"unknown opcode {opcode}")
                if (opcode == 0) != bool(message_opcode):
                    raise WsError(1002, "unexpected continuation state")
                if opcode:
                    message_opcode = opcode
                parts.append(payload)
                if sum(map(len, parts)) > MAX_WS_MESSAGE:
                    raise WsError(1009, "message too large")
                if not fin:
                    continue
                message = b"".join(parts)
                kind, message_opcode, parts = message_opcode, 0, []
                if kind == 1:
                    try:
                        message.decode("utf-8")
                    except UnicodeDecodeError:
                        raise WsError(1007, "text is not UTF-8") from None
                await self.send(kind, message)
        except WsError as exc:
            await self.close(exc.code, exc.reason)
            # Give the peer a moment to answer the close, as the handshake asks.
            with contextlib.suppress(asyncio.TimeoutError, asyncio.IncompleteReadError, WsError):
                async with asyncio.timeout(WS_CLOSE_TIMEOUT):
                    while (await self.read_frame())[1] != 8:
                        pass

    @staticmethod
    def close_reply(payload: bytes) -> bytes:
        if not payload:
            return b""
        if len(payload) == 1:
            raise WsError(1002, "close payload of one byte")
        (code,) = struct.unpack("!H", payload[:2])
        valid = code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1011 or 3000 <= code <= 4999
        if not valid:
            raise WsError(1002, f"invalid close code {code}")
        try:
            payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise WsError(1007, "close reason is not UTF-8") from None
        return payload[:2]


class WsError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class App:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.hostname = socket.gethostname()

    async def handle(self, conn: Connection, req: Request) -> bool:
        """Answer one request; return whether the connection may carry another."""
        started = time.monotonic()
        keep = req.keep_alive()
        try:
            status, keep = await self.route(conn, req, keep)
        except InvalidArgument as exc:
            status = 400
            await conn.respond(400, f"{exc}\n".encode(), keep_alive=keep)
        if not self.config.access_log:
            return keep
        log = {
            "event": "request",
            "method": req.method,
            "path": req.path,
            "status": status,
            "peer": req.peer,
            "ms": round((time.monotonic() - started) * 1000, 1),
        }
        print(json.dumps(log), flush=True)
        return keep

    async def route(self, conn: Connection, req: Request, keep: bool) -> tuple[int, bool]:
        if req.path == "/healthz":
            await conn.respond(200, b"ok\n", keep_alive=keep, send_body=req.method != "HEAD")
            return 200, keep
        if req.path == "/slow":
            seconds = _number_arg(req, "seconds", "1", 0, 3600)
            await asyncio.sleep(seconds)
            return await self.info(conn, req, keep, {"slept": seconds})
        if req.path == "/sse":
            return await self.sse(conn, req, keep)
        if req.path == "/ws":
            return await self.websocket(conn, req)
        if req.path == "/echo" and req.method in ("POST", "PUT"):
            return await self.echo(conn, req, keep)
        if req.path == "/write" and req.method in ("POST", "PUT"):
            return await self.write(conn, req, keep)
        return await self.info(conn, req, keep, {})

    async def info(
        self, conn: Connection, req: Request, keep: bool, extra: dict[str, object]
    ) -> tuple[int, bool]:
        received = await req.body.drain()
        doc: dict[str, object] = {
            "hostname": self.hostname,
            "version": self.config.version,
            "method": req.method,
            "path": req.path,
            "query": {k: v[0] if len(v) == 1 else v for k, v in req.query.items()},
            "peer": req.peer,
            "headers": _join_headers(req.raw_headers),
            "env": dict(os.environ),
            "volume": self.volume(),
            "body_bytes": received,
            **extra,
        }
        body = json.dumps(doc, indent=1).encode() + b"\n"
        await conn.respond(200, body, "application/json", keep, send_body=req.method != "HEAD")
        return 200, keep

    def volume(self) -> dict[str, str]:
        root = self.config.volume_dir
        if root is None or not root.is_dir():
            return {}
        files: dict[str, str] = {}
        for entry in sorted(root.iterdir()):
            if entry.is_file():
                with entry.open("rb") as f:
                    files[entry.name] = f.read(VOLUME_PREVIEW).decode("utf-8", "replace")
        return files

    async def sse(self, conn: Connection, req: Request, keep: bool) -> tuple[int, bool]:
        count = int(_number_arg(req, "count", "5", 0, 100000))
        interval = _number_arg(req, "interval", "1", 0, 3600)
        await req.body.drain()
        headers = [
            ("Content-Type", "text/event-stream"),
            ("Cache-Control", "no-cache"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "keep-alive" if keep else "close"),
        ]
        conn.head(200, headers)
        for i in range(count):
            if i:
                await asyncio.sleep(interval)
            data = json.dumps({"n": i, "hostname": self.hostname, "time": time.time()})
            await conn.write_chunk(f"id: {i}\nevent: tick\ndata: {data}\n\n".encode())
        await conn.end_chunks()
        return 200, keep

    async def echo(self, conn: Connection, req: Request, keep: bool) -> tuple[int, bool]:
        content_type = req.headers.get("content-type", "application/octet-stream")
        known = req.body.length is not None
        framing = (
            ("Content-Length", str(req.body.length)) if known else ("Transfer-Encoding", "chunked")
        )
        conn.head(
            200,
            [
                ("Content-Type", content_type),
                framing,
                ("Connection", "keep-alive" if keep else "close"),
            ],
        )
        async for chunk in req.body.chunks():
            if known:
                conn.writer.write(chunk)
                await conn.writer.drain()
            else:
                await conn.write_chunk(chunk)
        if not known:
            await conn.end_chunks()
        return 200, keep

    async def write(self, conn: Connection, req: Request, keep: bool) -> tuple[int, bool]:
        root = self.config.volume_dir
        if root is None:
            await conn.respond(409, b"no volume: set VOLUME_DIR or mount /data\n", keep_alive=keep)
            return 409, keep
        name = req.arg("name", "")
        if not name or "/" in name or "\0" in name or name in (".", ".."):
            raise InvalidArgument(f"name: {name!r} is not a plain file name")
        written = 0
        # Write beside the target and rename, so readers never see half a file.
        partial = root / f".{name}.partial"
        try:
            with partial.open("wb") as f:
                async for chunk in req.body.chunks():
                    f.write(chunk)
                    written += len(chunk)
            partial.replace(root / name)
        except OSError as exc:
            await conn.respond(500, f"write {name}: {exc.strerror}\n".encode(), keep_alive=False)
            return 500, False
        body = json.dumps({"written": name, "bytes": written}).encode() + b"\n"
        await conn.respond(201, body, "application/json", keep)
        return 201, keep

    async def websocket(self, conn: Connection, req: Request) -> tuple[int, bool]:
        connection = {t.strip().lower() for t in req.headers.get("connection", "").split(",")}
        key = req.headers.get("sec-websocket-key", "")
        if (
            req.method != "GET"
            or req.headers.get("upgrade", "").lower() != "websocket"
            or "upgrade" not in connection
            or not key
        ):
            await conn.respond(400, b"expected a WebSocket upgrade\n", keep_alive=False)
            return 400, False
        if req.headers.get("sec-websocket-version") != "13":
            conn.head(
                426,
                [("Sec-WebSocket-Version", "13"), ("Content-Length", "0"), ("Connection", "close")],
            )
            await conn.writer.drain()
            return 426, False
        accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        conn.head(
            101,
            [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept)],
        )
        await conn.writer.drain()
        await WebSocket(conn).run()
        return 101, False


def _join_headers(raw: list[tuple[str, str]]) -> dict[str, str]:
    joined: dict[str, str] = {}
    for name, value in raw:
        joined[name] = f"{joined[name]}, {value}" if name in joined else value
    return joined


def _number_arg(req: Request, name: str, default: str, low: float, high: float) -> float:
    raw = req.arg(name, default)
    try:
        value = float(raw)
    except ValueError:
        raise InvalidArgument(f"{name}: {raw!r} is not a number") from None
    if not low <= value <= high:
        raise InvalidArgument(f"{name}: {raw!r} is out of range ({low:g}-{high:g})")
    return value


async def serve(config: Config) -> None:
    if config.startup_delay:
        print(f"starting delay={config.startup_delay:g}", file=sys.stderr, flush=True)
        await asyncio.sleep(config.startup_delay)
    app = App(config)
    tasks: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await Connection(app, reader, writer).serve()
        finally:
            tasks.discard(task)

    server = await asyncio.start_server(
        on_connect, config.host, config.port, limit=MAX_HEAD, reuse_address=True
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # As PID 1 in a container, the default SIGTERM action is ignored by the kernel.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"listening port={config.port} version={config.version or '-'} hostname={app.hostname}",
        file=sys.stderr,
        flush=True,
    )
    async with server:
        await stop.wait()
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print("stopped", file=sys.stderr, flush=True)


def main() -> None:
    fail = os.environ.get("FAIL_AT_START", "")
    if fail:
        try:
            code = int(fail)
        except ValueError:
            print(f"testapp: FAIL_AT_START: {fail!r} is not an exit code", file=sys.stderr)
            sys.exit(2)
        print(f"failing at start as asked exit_code={code}", file=sys.stderr, flush=True)
        sys.exit(code)
    config = Config.from_env(dict(os.environ))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config))


if __name__ == "__main__":
    main()
