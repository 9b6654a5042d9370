"""confdb going away answers 503 (never 500), and the same app recovers when it is back."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from flask import Flask

from apiserver.app import create_app
from apiserver.config import Config
from tests.conftest import wait_until
from tests.integration.apiserver.conftest import Caller, document, unique
from tests.integration.apiserver.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres


@pytest.fixture
def relay(database_url: str) -> Iterator[TcpProxy]:
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    proxy = TcpProxy(str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432))
    yield proxy
    proxy.close()


@pytest.fixture
def relayed_app(database_url: str, relay: TcpProxy) -> Iterator[Flask]:
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    info.update(host="127.0.0.1", port=str(relay.port))
    url = psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items() if v is not None})
    app = create_app(Config(database_url=url, db_timeout=1.0))
    yield app
    app.extensions["sws.store"].close()


def test_unreachable_confdb_is_503_and_recovers(
    relayed_app: Flask, relay: TcpProxy, alice: Caller
) -> None:
    client = relayed_app.test_client()
    name = unique()
    assert (
        client.put(f"/v1/services/{name}", json=document(name), headers=alice.headers).status_code
        == 201
    )

    relay.cut()
    for request in (
        lambda: client.get("/healthz"),
        lambda: client.get(f"/v1/services/{name}", headers=alice.headers),
        lambda: client.get("/v1/services", headers=alice.headers),
        lambda: client.put(
            f"/v1/services/{name}", json=document(name, replicas=2), headers=alice.headers
        ),
        lambda: client.delete(f"/v1/services/{name}", headers=alice.headers),
    ):
        response = request()
        assert response.status_code == 503
        assert response.json["error"]
        assert response.headers["Retry-After"]

    relay.restore()
    wait_until(
        lambda: client.get("/healthz").status_code == 200, timeout=30, what="/healthz ok again"
    )
    again = client.put(
        f"/v1/services/{name}", json=document(name, replicas=2), headers=alice.headers
    )
    assert again.status_code == 200
    assert again.json["generation"] == 2
