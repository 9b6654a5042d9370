"""Real backends and a real proxy on 127.0.0.1, port 0, each on its own event loop thread."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import websockets

from proxy.config import Config
from proxy.server import Server

DEADLINE = 10.0


def wait_for(predicate: Callable[[], bool], timeout: float = DEADLINE, what: str = "it") -> None:
    """Poll until ``predicate`` holds, failing after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class LoopThread:
    """An asyncio loop running in a daemon thread, for backends."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = DEADLINE) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], Any]) -> None:
        self.loop.call_soon_threadsafe(fn)

    def stop(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


# -- the HTTP test backend ------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    conn: int

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None


@dataclass
class Backend:
    """A small HTTP/1.1 server whose behaviour is chosen by the request path.

    /                  echo the request as JSON
    /slow/<s>          wait s seconds, then echo
    /hold              wait until release() is called, then echo
    /sse               one event, wait for release(), a second event, end
    /chunked           a chunked answer in three pieces
    /close             an answer ended by closing the connection
    /status/<code>     an answer with that status and no body
    /big/<n>           n bytes of body; ``big_done`` is set once all are written
    /hop               an answer full of hop-by-hop fields
    /progress          record each body piece as it arrives (``progress``)
    /stall             read no body until release(), then echo
    /drop-next         answer, then drop the connection at its next request unanswered
    """

    name: str
    lt: LoopThread
    port: int = 0
    requests: list[Seen] = field(default_factory=list)
    connections: int = 0
    progress: list[int] = field(default_factory=list)
    big_done: bool = False
    _server: asyncio.AbstractServer | None = None
    _release: asyncio.Event | None = None
    _drop_next: set[int] = field(default_factory=set)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def release(self) -> None:
        self.lt.call(lambda: self._release.set() if self._release else None)

    async def start(self) -> None:
        self._release = asyncio.Event()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                if conn in self._drop_next:
                    writer.transport.abort()
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = [tuple(x.split(": ", 1)) for x in lines[1:] if x]
                seen = Seen(method, path, headers, b"", conn)  # type: ignore[arg-type]
                if (seen.header("expect") or "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                if path == "/stall":
                    # Read no body until released: the sender must be held back.
                    self.requests.append(seen)
                    assert self._release is not None
                    await self._release.wait()
                body = await self._read_body(reader, seen, path == "/progress")
                seen.body = body
                if path != "/stall":
                    self.requests.append(seen)
                if not await self._answer(seen, writer, conn):
                    return
        except asyncio.CancelledError:
            pass
        finally:
            writer.close()

    async def _read_body(self, reader: asyncio.StreamReader, seen: Seen, track: bool) -> bytes:
        parts: list[bytes] = []
        if (seen.header("transfer-encoding") or "").lower() == "chunked":
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
                if track:
                    self.progress.append(len(parts[-1]))
        elif seen.header("content-length"):
            left = int(seen.header("content-length") or 0)
            while left:
                piece = await reader.read(min(left, 65536))
                if not piece:
                    break
                parts.append(piece)
                left -= len(piece)
                if track:
                    self.progress.append(len(piece))
        return b"".join(parts)

    async def _answer(self, seen: Seen, writer: asyncio.StreamWriter, conn: int) -> bool:
        path = seen.path.split("?", 1)[0]
        echo = json.dumps(
            {
                "backend": self.name,
                "method": seen.method,
                "path": seen.path,
                "headers": seen.headers,
                "body": seen.body.decode("latin-1"),
                "conn": conn,
            }
        ).encode()
        if path.startswith("/slow/"):
            await asyncio.sleep(float(path[6:]))
        elif path == "/hold":
            assert self._release is not None
            await self._release.wait()
        elif path == "/sse":
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            event = b"data: one\n\n"
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            assert self._release is not None
            await self._release.wait()
            event = b"data: two\n\n"
            writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(event), event))
            return True
        elif path == "/chunked":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in (b"alpha-", b"beta-", b"gamma"):
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
            writer.write(b"0\r\nX-Trailer: t\r\n\r\n")
            return True
        elif path == "/close":
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-")
            await writer.drain()
            writer.write(b"the-end")
            await writer.drain()
            return False
        elif path.startswith("/status/"):
            code = int(path[8:])
            writer.write(b'HTTP/1.1 %d X\r\nETag: "e"\r\n\r\n' % code)
            return True
        elif path.startswith("/big/"):
            n = int(path[5:])
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
            block = b"x" * 65536
            sent = 0
            while sent < n:
                piece = block[: n - sent]
                writer.write(piece)
                sent += len(piece)
                await writer.drain()
            self.big_done = True
            return True
        elif path == "/hop":
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-Private\r\n"
                b"X-Private: secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n"
                b"Trailer: X-T\r\nX-End-To-End: kept\r\n\r\nok"
            )
            return True
        elif path == "/stall":
            size = b"%d" % len(seen.body)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(size), size))
            return True
        elif path == "/drop-next":
            self._drop_next.add(conn)
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        body = b"" if seen.method == "HEAD" else echo
        writer.write(head % len(echo) + b"X-Backend: " + self.name.encode() + b"\r\n\r\n" + body)
        await writer.drain()
        return True


# -- the proxy under test --------------------------------------------------------------------


class ProxyHandle:
    """A Server running in its own thread and loop, plus helpers to talk to it."""

    def __init__(self, config: Config) -> None:
        self.server = Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        if not self.server.started.wait(DEADLINE):
            raise RuntimeError("proxy did not start")
        self.port = self.server.listen_port
        self.admin_port = self.server.admin_port

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(DEADLINE)

    def admin(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        data = (
            b""
            if body is None
            else (body if isinstance(body, bytes) else json.dumps(body).encode())
        )
        with socket.create_connection(("127.0.0.1", self.admin_port), timeout=DEADLINE) as s:
            s.sendall(
                b"%s %s HTTP/1.1\r\nHost: admin\r\nContent-Length: %d\r\n\r\n%s"
                % (method.encode(), path.encode(), len(data), data)
            )
            resp = Client.from_socket(s).response()
        if resp.header("content-type", "").startswith("application/json"):
            return resp.status, json.loads(resp.body)
        return resp.status, resp.body.decode()

    def put_routes(self, version: int, services: list[dict[str, Any]]) -> None:
        status, body = self.admin("PUT", "/routes", {"version": version, "services": services})
        assert status == 200, body

    def client(self) -> Client:
        return Client(self.port)


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str, default: str = "") -> str:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else default

    def has(self, name: str) -> bool:
        return any(k.lower() == name.lower() for k, _ in self.headers)

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """A raw HTTP/1.1 client over one socket, for exact control of the bytes."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.buf = b""

    @classmethod
    def from_socket(cls, sock: socket.socket) -> Client:
        self = cls.__new__(cls)
        self.sock = sock
        self.buf = b""
        return self

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def get(self, path: str = "/", host: str = "web.test", extra: str = "") -> Response:
        self.send(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode())
        return self.response()

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            if not self._fill():
                raise ConnectionError(f"closed before {marker!r}; got {self.buf[:200]!r}")
        head, self.buf = self.buf.split(marker, 1)
        return head

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError("closed mid-body")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def head(self) -> tuple[int, list[tuple[str, str]]]:
        lines = self._until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = [tuple(x.split(": ", 1)) for x in lines[1:] if x]
        return status, headers  # type: ignore[return-value]

    def response(self, head_only: bool = False) -> Response:
        status, headers = self.head()
        resp = Response(status, headers, b"")
        if head_only or status in (204, 304) or 100 <= status < 200:
            return resp
        if resp.header("transfer-encoding").lower() == "chunked":
            parts = []
            while True:
                size = int(self._until(b"\r\n"), 16)
                if size == 0:
                    self._until(b"\r\n")
                    break
                parts.append(self._exactly(size))
                self._exactly(2)
            resp.body = b"".join(parts)
        elif resp.has("content-length"):
            resp.body = self._exactly(int(resp.header("content-length")))
        else:
            while self._fill():
                pass
            resp.body, self.buf = self.buf, b""
        return resp

    def chunk(self) -> bytes:
        """Read one chunk of a chunked body."""
        size = int(self._until(b"\r\n"), 16)
        data = self._exactly(size)
        self._exactly(2)
        return data

    def closed(self, timeout: float = DEADLINE) -> bool:
        """True once the proxy has closed this connection (reading what is left)."""
        self.sock.settimeout(timeout)
        try:
            while self._fill():
                pass
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(DEADLINE)
        return True


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.stop()


@pytest.fixture
def backend_factory(loop_thread: LoopThread) -> Iterator[Callable[[str], Backend]]:
    made: list[Backend] = []

    def make(name: str) -> Backend:
        backend = Backend(name, loop_thread)
        loop_thread.run(backend.start())
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.release()
        loop_thread.run(backend.close())


@pytest.fixture
def backend(backend_factory: Callable[[str], Backend]) -> Backend:
    return backend_factory("a")


@pytest.fixture
def proxy_factory() -> Iterator[Callable[..., ProxyHandle]]:
    made: list[ProxyHandle] = []

    def make(**overrides: Any) -> ProxyHandle:
        config = Config(
            listen_host="127.0.0.1",
            listen_port=0,
            admin_host="127.0.0.1",
            admin_port=0,
            access_log=False,
            **overrides,
        )
        handle = ProxyHandle(config)
        made.append(handle)
        return handle

    yield make
    for handle in made:
        handle.stop()


@pytest.fixture
def proxy(proxy_factory: Callable[..., ProxyHandle], backend: Backend) -> ProxyHandle:
    handle = proxy_factory()
    handle.put_routes(1, [{"name": "web", "domains": ["web.test"], "backends": [backend.addr]}])
    return handle


def free_port() -> int:
    """A port nothing listens on (bound and released), for 'connection refused'."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WsEcho:
    """A websockets echo server that prefixes each reply with its name."""

    def __init__(self, lt: LoopThread, name: str) -> None:
        self.lt = lt
        self.name = name

        async def start() -> Any:
            async def echo(ws: Any) -> None:
                async for message in ws:
                    await ws.send(f"{self.name}:{message}")

            return await websockets.serve(echo, "127.0.0.1", 0)

        self.server = lt.run(start())
        self.port = (
            self.server.sockets[0].getsockname()[1] if hasattr(self.server, "sockets") else 0
        )
        if not self.port:
            self.port = next(iter(self.server.sockets)).getsockname()[1]

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.lt.call(self.server.close)
