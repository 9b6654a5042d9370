"""The floor under any uvloop proxy written in Python: a relay that does no HTTP at all.

    python bench/proxy/floor.py --listen 127.0.0.1:18805 --backend 127.0.0.1:18801

Each client connection gets its own backend connection, opened when the client connects,
and bytes are copied both ways as they come: one read and one write per direction per
request, the same system calls sws-proxy and nginx make, and a single Python call per read.
No parsing, no routing, no pool, no deadlines, no flow control: not a proxy anyone should
run, only a measure of what the event loop and the interpreter cost before the proxy does
any work of its own. bench/proxy/run.py --floor puts it beside sws-proxy and nginx.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import uvloop


class Upstream(asyncio.Protocol):
    def __init__(self, client: Client) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        held, self.client.held = self.client.held, []
        for data in held:
            self.transport.write(data)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        self.client.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.transport.close()


class Client(asyncio.Protocol):
    def __init__(self, backend: tuple[str, int]) -> None:
        self.backend = backend
        self.upstream = Upstream(self)
        self.held: list[bytes] = []
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.connecting: asyncio.Task[Any] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        self.connecting = loop.create_task(
            loop.create_connection(lambda: self.upstream, *self.backend)
        )

    def data_received(self, data: bytes) -> None:
        upstream = self.upstream.transport
        if upstream is None:
            self.held.append(data)
        else:
            upstream.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream.transport is not None:
            self.upstream.transport.close()


async def serve(listen: tuple[str, int], backend: tuple[str, int]) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Client(backend), *listen, backlog=2048)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--backend", required=True)
    args = parser.parse_args()
    listen_host, listen_port = args.listen.rsplit(":", 1)
    backend_host, backend_port = args.backend.rsplit(":", 1)
    uvloop.run(serve((listen_host, int(listen_port)), (backend_host, int(backend_port))))


if __name__ == "__main__":
    main()
