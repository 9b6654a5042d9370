"""The platform's own routes in every route table, and the domains they reserve.

The agent publishes, beside the tenants' routes, a route for the platform's API domain (the
apiserver) when one is configured. Its name contains a dot, which no service name may (they
are DNS labels), so no tenant can take it. Its domain is reserved: a tenant service asking
for it is left out of the routes and reported failing, so a tenant can never hijack the API.

The planner (`sws.plan`) sees only the tenants' part of the published table, and the agent
adds the platform's part when it publishes; so the planner's comparison of "routes wanted"
with "routes published" is not disturbed by routes it does not make.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sws.plan import DesiredService
from sws.route_table import Route, RouteTable

API_ROUTE = "sws.apiserver"


def reserved_message(domain: str) -> str:
    return f"domain {domain} is reserved for the platform"


def api_route(domain: str, backends: Iterable[str]) -> Route:
    """The apiserver's route: `domain` to the apiserver's current addresses."""
    return Route(name=API_ROUTE, domains=(domain,), backends=tuple(sorted(set(backends))))


def is_platform(route: Route) -> bool:
    # Service names are DNS labels; a dot marks a name only the platform uses.
    return "." in route.name


def screen(
    desired: Iterable[DesiredService], reserved: Iterable[str]
) -> tuple[list[DesiredService], list[tuple[DesiredService, str]]]:
    """Split services into those that may be routed and those asking for a reserved domain."""
    taken = {d.rstrip(".").lower() for d in reserved}
    kept: list[DesiredService] = []
    refused: list[tuple[DesiredService, str]] = []
    for service in desired:
        domain = service.spec.domain.rstrip(".").lower()
        if not service.deleting and domain in taken:
            refused.append((service, reserved_message(domain)))
        else:
            kept.append(service)
    return kept, refused


def tenant_part(table: RouteTable | None) -> RouteTable | None:
    """The published table without the platform's routes, as the planner should see it."""
    if table is None:
        return None
    return RouteTable(table.version, tuple(r for r in table.services if not is_platform(r)))


def platform_part(table: RouteTable | None) -> tuple[Route, ...]:
    if table is None:
        return ()
    return tuple(r for r in table.services if is_platform(r))


def combine(tenants: Sequence[Route], platform: Sequence[Route]) -> tuple[Route, ...]:
    """Tenant routes plus the platform's; a tenant route on a platform domain is dropped."""
    reserved = {d for r in platform for d in r.domains}
    kept = tuple(r for r in tenants if not is_platform(r) and not (set(r.domains) & reserved))
    return kept + tuple(platform)
