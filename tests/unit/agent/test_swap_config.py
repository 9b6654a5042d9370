"""The swap's and the API route's settings, and the platform's reserved routes (pure)."""

from __future__ import annotations

import pytest

from agent.config import Config
from sws.errors import InvalidInput
from sws.plan import DesiredService
from sws.platform_routes import (
    API_ROUTE,
    api_route,
    combine,
    is_platform,
    platform_part,
    screen,
    tenant_part,
)
from sws.route_table import Route, RouteTable
from sws.spec import ServiceSpec

BASE = {"SWS_DATABASE_URL": "postgresql://sws@db/sws"}


def test_swap_defaults() -> None:
    config = Config.from_env(BASE)
    assert config.loadbalancer_admin is None
    assert (config.swap_drain_timeout, config.swap_up_timeout) == (10.0, 10.0)
    assert config.proxy_check_interval == 1.0
    assert config.api_domain is None and config.api_backend_address is None


def test_swap_settings_from_the_environment() -> None:
    config = Config.from_env(
        {
            **BASE,
            "SWS_LOADBALANCER_ADMIN": "http://loadbalancer:9100/",
            "SWS_SWAP_DRAIN_TIMEOUT": "3s",
            "SWS_SWAP_UP_TIMEOUT": "4",
            "SWS_PROXY_CHECK_INTERVAL": "0.5",
            "SWS_API_DOMAIN": "API.sws.localhost.",
            "SWS_API_BACKEND": "apiserver:8080",
        }
    )
    assert config.loadbalancer_admin == "http://loadbalancer:9100"
    assert (config.swap_drain_timeout, config.swap_up_timeout) == (3.0, 4.0)
    assert config.proxy_check_interval == 0.5
    assert config.api_domain == "api.sws.localhost"
    assert config.api_backend_address == ("apiserver", 8080)
    assert config.swap_lock_key != config.leader_lock_key


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SWS_LOADBALANCER_ADMIN": "loadbalancer:9100"},
            "SWS_LOADBALANCER_ADMIN: 'loadbalancer:9100' is not an http://host:port URL",
        ),
        (
            {"SWS_API_DOMAIN": "api_x..com", "SWS_API_BACKEND": "a:1"},
            "SWS_API_DOMAIN: 'api_x..com' is not a domain name",
        ),
        (
            {"SWS_API_DOMAIN": "api.example.com", "SWS_API_BACKEND": "apiserver"},
            "SWS_API_BACKEND: 'apiserver' is not host:port (port 1-65535)",
        ),
        (
            {"SWS_API_DOMAIN": "api.example.com", "SWS_API_BACKEND": "a:70000"},
            "SWS_API_BACKEND: 'a:70000' is not host:port",
        ),
        ({"SWS_API_DOMAIN": "api.example.com"}, "SWS_API_DOMAIN, SWS_API_BACKEND: set both"),
        ({"SWS_SWAP_UP_TIMEOUT": "0"}, "swap_up_timeout: must be positive"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput) as e:
        Config.from_env({**BASE, **env})
    assert message in e.value.message


def service(name: str, domain: str, deleting: bool = False) -> DesiredService:
    spec = ServiceSpec.from_document(
        {"apiVersion": "v1", "spec": {"name": name, "port": 8080, "domain": domain, "image": "app"}}
    )
    return DesiredService(spec, 1, deleting)


def test_a_service_on_the_api_domain_is_refused_unless_being_deleted() -> None:
    kept, refused = screen(
        [
            service("web", "web.example.com"),
            service("evil", "api.example.com"),
            service("old", "api.example.com", True),
        ],
        ["API.example.com."],
    )
    assert [s.name for s in kept] == ["web", "old"]
    assert [(s.name, m) for s, m in refused] == [
        ("evil", "domain api.example.com is reserved for the platform")
    ]


def test_the_api_route_name_is_one_no_tenant_can_have() -> None:
    route = api_route("api.example.com", ["10.0.0.2:8080", "10.0.0.2:8080"])
    assert route.name == API_ROUTE and is_platform(route)
    assert route.backends == ("10.0.0.2:8080",)
    with pytest.raises(Exception, match="name"):
        ServiceSpec.from_document(
            {
                "apiVersion": "v1",
                "spec": {"name": API_ROUTE, "port": 1, "domain": "a.b", "image": "x"},
            }
        )


def test_the_planner_sees_only_tenant_routes_and_publishing_adds_the_platform() -> None:
    web = Route("web", ("web.example.com",), ("10.0.0.5:8080",))
    api = api_route("api.example.com", ["10.0.0.2:8080"])
    table = RouteTable(7, (web, api))
    tenants = tenant_part(table)
    assert tenants is not None and tenants.version == 7 and tenants.services == (web,)
    assert platform_part(table) == (api,)
    assert tenant_part(None) is None
    hijack = Route("evil", ("api.example.com",), ("10.0.0.9:80",))
    assert combine([web, hijack], [api]) == (web, api)
