from __future__ import annotations

import pytest

from loadbalancer.config import (
    Address,
    Config,
    ConfigError,
    HttpCheck,
    parse_address,
    parse_backend,
)
from sws.errors import InvalidInput


def test_backend_with_tcp_check() -> None:
    backend = parse_backend("proxy-1=proxy-1:8080")
    assert backend.name == "proxy-1"
    assert backend.address == Address("proxy-1", 8080)
    assert backend.http_check is None


def test_backend_with_http_check() -> None:
    backend = parse_backend("p=10.0.0.1:80,health=http://10.0.0.1:9000/healthz?deep=1")
    assert backend.http_check == HttpCheck(Address("10.0.0.1", 9000), "/healthz?deep=1")
    assert str(backend.http_check) == "http://10.0.0.1:9000/healthz?deep=1"


def test_health_url_defaults() -> None:
    check = parse_backend("p=h:80,health=http://h").http_check
    assert check == HttpCheck(Address("h", 80), "/")


def test_ipv6_addresses() -> None:
    assert parse_address("[::1]:8080") == Address("::1", 8080)
    assert str(Address("::1", 8080)) == "[::1]:8080"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p", 'backend: "p" is not NAME=HOST:PORT[,health=URL]'),
        ("-p=h:1", 'backend: name "-p" must be'),
        ("p=h", 'backend p: "h" is not HOST:PORT'),
        ("p=h:70000", 'backend p: "70000" in "h:70000" is not a port (1-65535)'),
        ("p=h:0", 'backend p: "0" in "h:0" is not a port (1-65535)'),
        ("p=:80", 'backend p: ":80" has no host'),
        ("p=h:1,weight=3", 'backend p: unknown option "weight=3" (known: health=URL)'),
        ("p=h:1,health=https://h/", 'backend p: health URL "https://h/" must start with http://'),
        ("p=h:1,health=http://h:99999/", "has a port outside 1-65535"),
        ("p=h:1,health=http://u:pw@h/", "may not carry credentials"),
    ],
)
def test_bad_backend_names_the_field_and_rule(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_backend(text)
    assert message in caught.value.message
    assert isinstance(caught.value, InvalidInput)


def test_listen_may_bind_port_zero() -> None:
    assert parse_address("127.0.0.1:0", "listen", bind=True).port == 0
    with pytest.raises(ConfigError):
        parse_address("127.0.0.1:0", "backend")


def config(**overrides: object) -> Config:
    settings: dict[str, object] = {
        "listen": (Address("0.0.0.0", 80),),
        "admin": Address("127.0.0.1", 9000),
        "backends": (parse_backend("a=h:1"), parse_backend("b=h:2")),
    }
    settings.update(overrides)
    return Config(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"listen": ()}, "listen: at least one address is required"),
        ({"backends": ()}, "backend: at least one backend is required"),
        ({"backends": (parse_backend("a=h:1"), parse_backend("a=h:2"))}, 'name "a" is given twice'),
        ({"rise": 0}, "rise: 0 is not a count (1-100)"),
        ({"fall": 101}, "fall: 101 is not a count (1-100)"),
        ({"check_interval": 0}, "check_interval: 0 is not a duration"),
        ({"connect_timeout": -1.0}, "connect_timeout: -1.0 is not a duration"),
        ({"grace_period": -1.0}, "grace_period: -1.0 is not a duration"),
    ],
)
def test_bad_settings_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config(**overrides)


def test_defaults() -> None:
    defaults = config()
    assert (defaults.check_interval, defaults.rise, defaults.fall) == (0.5, 2, 2)
    assert (defaults.connect_timeout, defaults.grace_period) == (1.0, 8.0)
