"""Name lookups for upstream connects, remembered for a short time.

Backends are usually named (compose service names like ``proxy-1``) and their addresses
change when a container is recreated, so names must be looked up again and again. Looking
one up on every connect costs a trip through the loop's thread pool and, inside Docker, a
DNS query: more than the rest of opening the connection. The resolver keeps each answer for
``ttl`` seconds and forgets it as soon as a connect to it fails, so a recreated backend is
found on the next attempt after its old address stops answering, and at the latest ``ttl``
seconds after its name moves. IP literals are used as they are.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import socket

from loadbalancer.config import Address


class Resolver:
    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        # (host, port) -> (expiry on the loop clock, IP literals in preference order)
        self._cache: dict[tuple[str, int], tuple[float, list[str]]] = {}

    def cached(self, address: Address, now: float) -> list[str] | None:
        """Return the IP literals to try for ``address`` if known without a lookup."""
        entry = self._cache.get((address.host, address.port))
        if entry is not None and entry[0] > now:
            return entry[1]
        if _is_ip(address.host):
            self._cache[(address.host, address.port)] = (math.inf, [address.host])
            return [address.host]
        return None

    async def hosts(self, address: Address) -> list[str]:
        """Return the IP literals to try, in order, for a connect to ``address``."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        known = self.cached(address, now)
        if known is not None:
            return known
        key = (address.host, address.port)
        infos = await loop.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
        hosts = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not hosts:
            raise OSError(f"{address.host} has no address")
        if self._ttl > 0:
            self._cache[key] = (now + self._ttl, hosts)
        return hosts

    def forget(self, address: Address) -> None:
        if not _is_ip(address.host):
            self._cache.pop((address.host, address.port), None)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
