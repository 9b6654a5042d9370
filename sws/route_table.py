"""The route table: which backends serve which domains.

The agent builds a table from the running containers and pushes it to each proxy's admin
API as JSON; the proxy looks every request's Host up in it. The table is immutable and
validates itself when built, so a proxy holding one can trust it: every domain belongs to
exactly one service and every backend is an ``ip:port`` it can connect to.

JSON form (``to_json_obj`` gives it canonically, sorted)::

    {"version": 7,
     "services": [{"name": "web", "domains": ["web.example.com"],
                   "backends": ["172.18.0.5:8080"]}]}
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sws.errors import RouteTableError

_DOMAIN_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_SERVICE_NAME = re.compile(r"^[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?$")
_TABLE_KEYS = frozenset({"version", "services"})
_ROUTE_KEYS = frozenset({"name", "domains", "backends"})


def normalize_host(host: str) -> str:
    """Lower-case a Host value and drop its port and any trailing dot."""
    if host.startswith("["):
        # An IPv6 literal keeps its colons; the port, if any, follows the bracket.
        end = host.find("]")
        host = host[: end + 1] if end >= 0 else host
    else:
        colon = host.rfind(":")
        if colon >= 0:
            host = host[:colon]
    return host.rstrip(".").lower()


def _domain_problem(domain: str) -> str | None:
    if not domain:
        return "is empty"
    if len(domain) > 253:
        return "is longer than 253 characters"
    for label in domain.split("."):
        if not _DOMAIN_LABEL.match(label):
            return "is not a domain name (labels of a-z, 0-9 and '-', 1-63 long)"
    return None


def _backend_problem(backend: str) -> str | None:
    host, sep, port = backend.rpartition(":")
    if not sep or not host:
        return "is not ip:port"
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return "is not ip:port"
    else:
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return "is not ip:port"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return "is not ip:port (port must be 1-65535)"
    return None


def split_backend(backend: str) -> tuple[str, int]:
    """Split a validated ``ip:port`` (IPv6 in brackets) into host and port."""
    host, _, port = backend.rpartition(":")
    if host.startswith("["):
        host = host[1:-1]
    return host, int(port)


@dataclass(frozen=True, slots=True)
class Route:
    """One service: the domains it answers and the backends that serve it."""

    name: str
    domains: tuple[str, ...]
    backends: tuple[str, ...]

    def __post_init__(self) -> None:
        domains = tuple(d.rstrip(".").lower() if isinstance(d, str) else d for d in self.domains)
        object.__setattr__(self, "domains", domains)
        object.__setattr__(self, "backends", tuple(self.backends))
        problem = self.problem()
        if problem is not None:
            raise RouteTableError(problem)
        # Sorted once valid, so two tables that say the same thing compare equal.
        object.__setattr__(self, "domains", tuple(sorted(self.domains)))
        object.__setattr__(self, "backends", tuple(sorted(self.backends)))

    def problem(self, where: str = "") -> str | None:
        """Name the first rule this route breaks, prefixed with ``where``, or None."""
        if not isinstance(self.name, str) or not _SERVICE_NAME.match(self.name):
            return (
                f"{where}name: {self.name!r} is not a service name "
                "(a-z, 0-9, '-', '_', '.', 1-63 long)"
            )
        if not self.domains:
            return f"{where}domains: must list at least one domain"
        seen: set[str] = set()
        for i, domain in enumerate(self.domains):
            if not isinstance(domain, str):
                return f"{where}domains[{i}]: {domain!r} is not a string"
            problem = _domain_problem(domain)
            if problem is not None:
                return f'{where}domains[{i}]: "{domain}" {problem}'
            if domain in seen:
                return f'{where}domains[{i}]: "{domain}" is listed twice'
            seen.add(domain)
        for i, backend in enumerate(self.backends):
            if not isinstance(backend, str):
                return f"{where}backends[{i}]: {backend!r} is not a string"
            problem = _backend_problem(backend)
            if problem is not None:
                return f'{where}backends[{i}]: "{backend}" {problem}'
        if len(set(self.backends)) != len(self.backends):
            return f"{where}backends: a backend is listed twice"
        return None

    def to_json_obj(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "domains": list(self.domains),
            "backends": list(self.backends),
        }


@dataclass(frozen=True, slots=True)
class RouteTable:
    """A versioned set of routes with O(1) lookup by host."""

    version: int
    services: tuple[Route, ...]
    _by_domain: Mapping[str, Route] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "services", tuple(self.services))
        if isinstance(self.version, bool) or not isinstance(self.version, int):
            raise RouteTableError(f"version: {self.version!r} is not a non-negative integer")
        if self.version < 0:
            raise RouteTableError(f"version: {self.version} is not a non-negative integer")
        by_domain: dict[str, Route] = {}
        names: dict[str, int] = {}
        for i, route in enumerate(self.services):
            if not isinstance(route, Route):
                raise RouteTableError(f"services[{i}]: is not a route")
            if route.name in names:
                raise RouteTableError(
                    f'services[{i}].name: "{route.name}" is already used by '
                    f"services[{names[route.name]}]"
                )
            names[route.name] = i
            for domain in route.domains:
                other = by_domain.get(domain)
                if other is not None:
                    raise RouteTableError(
                        f'services[{i}].domains: domain "{domain}" is already served '
                        f'by service "{other.name}"'
                    )
                by_domain[domain] = route
        object.__setattr__(self, "_by_domain", by_domain)
        object.__setattr__(self, "services", tuple(sorted(self.services, key=lambda r: r.name)))

    @classmethod
    def empty(cls) -> RouteTable:
        return cls(version=0, services=())

    @classmethod
    def from_json_obj(cls, obj: object) -> RouteTable:
        """Build a table from its JSON form; raise RouteTableError naming the first problem."""
        if not isinstance(obj, dict):
            raise RouteTableError("route table: must be a JSON object")
        unknown = sorted(set(obj) - _TABLE_KEYS)
        if unknown:
            raise RouteTableError(f"{unknown[0]}: is not a route table field")
        if "version" not in obj:
            raise RouteTableError("version: is required")
        services = obj.get("services", [])
        if not isinstance(services, list):
            raise RouteTableError("services: must be a list")
        routes: list[Route] = []
        for i, item in enumerate(services):
            where = f"services[{i}]"
            if not isinstance(item, dict):
                raise RouteTableError(f"{where}: must be an object")
            unknown = sorted(set(item) - _ROUTE_KEYS)
            if unknown:
                raise RouteTableError(f"{where}.{unknown[0]}: is not a route field")
            for key in ("name", "domains"):
                if key not in item:
                    raise RouteTableError(f"{where}.{key}: is required")
            domains = item["domains"]
            backends = item.get("backends", [])
            if not isinstance(domains, list):
                raise RouteTableError(f"{where}.domains: must be a list")
            if not isinstance(backends, list):
                raise RouteTableError(f"{where}.backends: must be a list")
            try:
                routes.append(
                    Route(name=item["name"], domains=tuple(domains), backends=tuple(backends))
                )
            except RouteTableError as exc:
                raise RouteTableError(f"{where}.{exc.message}") from None
        return cls(version=obj["version"], services=tuple(routes))

    def to_json_obj(self) -> dict[str, Any]:
        """Return the canonical JSON form: services sorted by name, lists sorted."""
        return {
            "version": self.version,
            "services": [r.to_json_obj() for r in self.services],
        }

    def lookup(self, host: str) -> Route | None:
        """Return the route serving ``host`` (port, case and trailing dot ignored)."""
        route = self._by_domain.get(host)
        if route is None:
            route = self._by_domain.get(normalize_host(host))
        return route

    def backends(self) -> frozenset[str]:
        """Every backend any service of the table names."""
        return frozenset(b for r in self.services for b in r.backends)
