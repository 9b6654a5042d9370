"""The agent's configuration from the environment."""

from __future__ import annotations

import pytest

from agent.config import Config, ProxyEndpoint, parse_proxies
from agent.reconciler import fmt
from sws.errors import InvalidInput


def test_defaults() -> None:
    config = Config.from_env({"SWS_DATABASE_URL": "postgresql://sws@db/sws"})
    assert config.network == "sws-services"
    assert config.interval == 10.0
    assert config.start_timeout == 60.0
    assert config.grace_period == 2.0
    assert config.instance == "sws"
    assert config.proxies == ()


def test_values_and_proxies() -> None:
    config = Config.from_env(
        {
            "SWS_DATABASE_URL": "postgresql://sws@db/sws",
            "SWS_INTERVAL": "2.5",
            "SWS_GRACE_PERIOD": "0",
            "SWS_START_TIMEOUT": "30s",
            "SWS_SERVICES_NETWORK": "net",
            "SWS_PROXIES": "proxy-1=http://proxy-1:9000, proxy-2=http://proxy-2:9000/",
        }
    )
    assert (config.interval, config.grace_period, config.start_timeout) == (2.5, 0.0, 30.0)
    assert config.network == "net"
    assert config.proxies == (
        ProxyEndpoint("proxy-1", "http://proxy-1:9000"),
        ProxyEndpoint("proxy-2", "http://proxy-2:9000"),
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "SWS_DATABASE_URL: is required"),
        ({"SWS_INTERVAL": "soon"}, "SWS_INTERVAL: 'soon' is not a number of seconds"),
        ({"SWS_GRACE_PERIOD": "-1"}, "SWS_GRACE_PERIOD: '-1' must not be negative"),
        ({"SWS_INSTANCE": "Bad_Name"}, "SWS_INSTANCE: 'Bad_Name' is not an instance name"),
        ({"SWS_PROXIES": "proxy-1"}, "SWS_PROXIES: 'proxy-1' is not name=http://host:port"),
        ({"SWS_INTERVAL": "0"}, "interval: must be positive"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    base = {"SWS_DATABASE_URL": "postgresql://sws@db/sws"} if env else {}
    with pytest.raises(InvalidInput) as info:
        Config.from_env({**base, **env})
    assert info.value.message.startswith(message)


def test_duplicate_proxy_names_are_refused() -> None:
    with pytest.raises(InvalidInput, match="listed twice"):
        parse_proxies("a=http://x:1,a=http://y:2")


def test_instances_compete_for_different_locks() -> None:
    a = Config(database_url="x", instance="a")
    assert a.leader_lock_key == Config(database_url="y", instance="a").leader_lock_key
    assert a.leader_lock_key != Config(database_url="x", instance="b").leader_lock_key
    assert -(2**63) <= a.leader_lock_key < 2**63


def test_log_lines_quote_what_needs_it() -> None:
    assert fmt("replica.failed", service="web", reason="exited with code 3") == (
        'replica.failed service=web reason="exited with code 3"'
    )
    assert fmt("x", empty="") == 'x empty=""'
