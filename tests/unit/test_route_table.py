"""The route table validates itself and looks hosts up the way the proxy needs."""

from __future__ import annotations

import json

import pytest

from sws.errors import RouteTableError, SwsError
from sws.route_table import Route, RouteTable, normalize_host, split_backend

TABLE = {
    "version": 7,
    "services": [
        {"name": "web", "domains": ["web.example.com"], "backends": ["172.18.0.5:8080"]},
        {
            "name": "api",
            "domains": ["API.example.com.", "api2.example.com"],
            "backends": ["172.18.0.7:80", "[::1]:9000"],
        },
    ],
}


def table() -> RouteTable:
    return RouteTable.from_json_obj(json.loads(json.dumps(TABLE)))


def test_round_trip_is_canonical_and_sorted() -> None:
    obj = table().to_json_obj()
    assert obj == {
        "version": 7,
        "services": [
            {
                "name": "api",
                "domains": ["api.example.com", "api2.example.com"],
                "backends": ["172.18.0.7:80", "[::1]:9000"],
            },
            {"name": "web", "domains": ["web.example.com"], "backends": ["172.18.0.5:8080"]},
        ],
    }
    assert RouteTable.from_json_obj(obj) == table()


@pytest.mark.parametrize(
    "host",
    [
        "web.example.com",
        "WEB.Example.COM",
        "web.example.com:8080",
        "web.example.com.",
        "Web.example.com.:443",
    ],
)
def test_lookup_ignores_port_case_and_trailing_dot(host: str) -> None:
    route = table().lookup(host)
    assert route is not None and route.name == "web"


def test_lookup_unknown_host_is_none() -> None:
    assert table().lookup("other.example.com") is None
    assert table().lookup("") is None
    assert RouteTable.empty().lookup("web.example.com") is None


def test_normalize_host_handles_ipv6_literals() -> None:
    assert normalize_host("[::1]:8080") == "[::1]"
    assert normalize_host("[::1]") == "[::1]"
    assert normalize_host("Example.COM.") == "example.com"


def test_split_backend() -> None:
    assert split_backend("172.18.0.5:8080") == ("172.18.0.5", 8080)
    assert split_backend("[::1]:9000") == ("::1", 9000)


def test_service_without_backends_is_valid() -> None:
    t = RouteTable.from_json_obj(
        {"version": 1, "services": [{"name": "idle", "domains": ["idle.example"], "backends": []}]}
    )
    route = t.lookup("idle.example")
    assert route is not None and route.backends == ()


def test_error_is_an_sws_error_with_status_400() -> None:
    with pytest.raises(SwsError) as info:
        RouteTable.from_json_obj({"version": -1, "services": []})
    assert info.value.status == 400
    assert isinstance(info.value, RouteTableError)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([], "route table: must be a JSON object"),
        ({"services": []}, "version: is required"),
        ({"version": -1, "services": []}, "version: -1 is not a non-negative integer"),
        ({"version": "7", "services": []}, "version: '7' is not a non-negative integer"),
        ({"version": True, "services": []}, "version: True is not a non-negative integer"),
        ({"version": 1, "services": {}}, "services: must be a list"),
        ({"version": 1, "services": [], "extra": 1}, "extra: is not a route table field"),
        ({"version": 1, "services": [3]}, "services[0]: must be an object"),
        (
            {"version": 1, "services": [{"name": "a", "domains": ["a.x"], "backends": ["x"]}]},
            'services[0].backends[0]: "x" is not ip:port',
        ),
        (
            {
                "version": 1,
                "services": [
                    {"name": "a", "domains": ["a.x"], "backends": []},
                    {"name": "b", "domains": ["b.x"], "backends": []},
                    {"name": "c", "domains": ["c.x"], "backends": ["10.0.0.1:80", "x"]},
                ],
            },
            'services[2].backends[1]: "x" is not ip:port',
        ),
        (
            {
                "version": 1,
                "services": [{"name": "a", "domains": ["a.x"], "backends": ["1.2.3.4:0"]}],
            },
            'services[0].backends[0]: "1.2.3.4:0" is not ip:port (port must be 1-65535)',
        ),
        (
            {
                "version": 1,
                "services": [{"name": "a", "domains": ["a.x"], "backends": ["host.x:80"]}],
            },
            'services[0].backends[0]: "host.x:80" is not ip:port',
        ),
        (
            {"version": 1, "services": [{"name": "a", "domains": ["bad domain"], "backends": []}]},
            'services[0].domains[0]: "bad domain" is not a domain name',
        ),
        (
            {"version": 1, "services": [{"name": "a", "domains": [], "backends": []}]},
            "services[0].domains: must list at least one domain",
        ),
        (
            {"version": 1, "services": [{"name": "Bad Name", "domains": ["a.x"]}]},
            "services[0].name: 'Bad Name' is not a service name",
        ),
        (
            {"version": 1, "services": [{"domains": ["a.x"]}]},
            "services[0].name: is required",
        ),
        (
            {"version": 1, "services": [{"name": "a", "domains": ["a.x"], "port": 1}]},
            "services[0].port: is not a route field",
        ),
        (
            {
                "version": 1,
                "services": [
                    {"name": "a", "domains": ["a.x"], "backends": []},
                    {"name": "b", "domains": ["b.x", "A.x."], "backends": []},
                ],
            },
            'services[1].domains: domain "a.x" is already served by service "a"',
        ),
        (
            {
                "version": 1,
                "services": [
                    {"name": "a", "domains": ["a.x"], "backends": []},
                    {"name": "a", "domains": ["b.x"], "backends": []},
                ],
            },
            'services[1].name: "a" is already used by services[0]',
        ),
        (
            {"version": 1, "services": [{"name": "a", "domains": ["a.x", "a.x"]}]},
            'services[0].domains[1]: "a.x" is listed twice',
        ),
    ],
)
def test_invalid_tables_name_the_problem(obj: object, message: str) -> None:
    with pytest.raises(RouteTableError) as info:
        RouteTable.from_json_obj(obj)
    assert str(info.value).startswith(message)


def test_route_built_directly_validates_and_normalises() -> None:
    route = Route(name="web", domains=("Web.Example.com.",), backends=("10.0.0.1:80",))
    assert route.domains == ("web.example.com",)
    with pytest.raises(RouteTableError, match="is not ip:port"):
        Route(name="web", domains=("web.example.com",), backends=("10.0.0.1",))


def test_backends_lists_every_backend() -> None:
    assert table().backends() == {"172.18.0.5:8080", "172.18.0.7:80", "[::1]:9000"}
