from __future__ import annotations

import asyncio

from loadbalancer.config import Address
from loadbalancer.resolver import Resolver
from tests.integration.loadbalancer.backends import NamedHttpServer
from tests.integration.loadbalancer.conftest import http_get


def test_names_are_remembered_for_the_ttl_and_forgotten_on_failure() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        resolver = Resolver(ttl=60)
        name = Address("localhost", 80)
        assert resolver.cached(name, loop.time()) is None
        hosts = await resolver.hosts(name)
        assert "127.0.0.1" in hosts
        assert resolver.cached(name, loop.time()) == hosts
        assert resolver.cached(name, loop.time() + 61) is None, "expired after the ttl"
        resolver.forget(name)
        assert resolver.cached(name, loop.time()) is None

        literal = Address("127.0.0.1", 80)
        assert resolver.cached(literal, loop.time()) == ["127.0.0.1"]
        resolver.forget(literal)
        assert resolver.cached(literal, loop.time() + 1e9) == ["127.0.0.1"]

        uncached = Resolver(ttl=0)
        await uncached.hosts(name)
        assert uncached.cached(name, loop.time()) is None

    asyncio.run(scenario())


def test_a_named_backend_is_reached_on_whichever_address_answers(balancer_factory) -> None:
    # localhost may resolve to ::1 first; the server only listens on 127.0.0.1.
    a = NamedHttpServer("a").start()
    try:
        lb = balancer_factory(f"a=localhost:{a.port}")
        for _ in range(3):
            with lb.connect() as sock:
                assert http_get(sock, keep_alive=False) == (200, b"a")
        assert lb.admin.backend("a")["connect_failures"] == 0
    finally:
        a.stop()
