"""The platform's API domain in every table the agent publishes; no tenant can take it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.conftest import wait_until
from tests.integration.agent.conftest import (  # noqa: F401 (fixtures)
    Env,
    env,
    running_agent,
    testapp_images,
)
from tests.integration.swap.conftest import Backend, ProxyProcess, get_through

pytestmark = [pytest.mark.docker, pytest.mark.postgres]


def test_the_api_domain_routes_to_the_apiserver_and_no_tenant_can_take_it(env: Env) -> None:  # noqa: F811
    apiserver = Backend()
    port = apiserver.address.rsplit(":", 1)[1]
    proxy = ProxyProcess("proxy-1")
    proxy.start()
    try:
        config = env.config(
            interval=1.0,
            proxies=(proxy.endpoint,),
            proxy_check_interval=0.2,
            api_domain="api.test",
            api_backend=f"localhost:{port}",
        )
        with running_agent(config):
            generation = env.apply("evil", domain="api.test")
            message = "domain api.test is reserved for the platform"
            wait_until(
                lambda: env.status("evil") == ("failing", message, generation),
                timeout=15,
                what="the hijacking service reported failing",
            )
            table = env.route_table()
            assert table is not None
            assert [(r.name, r.domains, r.backends) for r in table.services] == [
                ("sws.apiserver", ("api.test",), (f"127.0.0.1:{port}",))
            ]
            assert ("Failed", message) in env.events("evil")
            assert env.containers("evil") == []
            wait_until(
                lambda: proxy.health()["version"] == table.version, what="proxy on the table"
            )
            assert get_through(proxy.listen, "api.test")["host"] == "api.test"
            first_version = table.version

        # The apiserver at a new address (a recreated container): a new table, a new route.
        moved = Backend("127.0.0.2")
        try:
            with running_agent(replace(config, api_backend=moved.address)):

                def moved_route() -> bool:
                    t = env.route_table()
                    return t is not None and any(r.backends == (moved.address,) for r in t.services)

                wait_until(moved_route, timeout=15, what="the route following the apiserver")
                table = env.route_table()
                assert table is not None and table.version == first_version + 1
                wait_until(
                    lambda: proxy.health()["version"] == table.version,
                    what="proxy on the new table",
                )
                assert get_through(proxy.listen, "api.test")["host"] == "api.test"
                # Still refused, still not routed.
                assert [r.name for r in table.services] == ["sws.apiserver"]
        finally:
            moved.close()
    finally:
        proxy.kill()
        apiserver.close()
