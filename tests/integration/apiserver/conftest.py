"""An app over a real, migrated confdb (one per session, flaskr-style), and users to call it."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from apiserver.app import create_app
from apiserver.auth import new_token
from apiserver.config import Config
from confdb.users import User, create_user_or_fail
from tests.integration.apiserver.live import LiveApi, serving


@dataclass(frozen=True)
class Caller:
    user: User
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def name(self) -> str:
        return self.user.name


@pytest.fixture(scope="session")
def app(database_url: str) -> Iterator[Flask]:
    app = create_app(Config(database_url=database_url, db_timeout=3.0))
    app.config["TESTING"] = True
    yield app
    app.extensions["sws.store"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="session")
def make_caller(database_url: str) -> Callable[..., Caller]:
    def make(prefix: str = "user", *, admin: bool = False) -> Caller:
        token = new_token()
        with psycopg.connect(database_url) as conn:
            user = create_user_or_fail(
                conn, f"{prefix}-{secrets.token_hex(4)}", token, is_admin=admin
            )
        return Caller(user, token)

    return make


@pytest.fixture
def alice(make_caller: Callable[..., Caller]) -> Caller:
    return make_caller("alice")


@pytest.fixture
def bob(make_caller: Callable[..., Caller]) -> Caller:
    return make_caller("bob")


@pytest.fixture
def admin(make_caller: Callable[..., Caller]) -> Caller:
    return make_caller("admin", admin=True)


def unique(prefix: str = "web") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def document(name: str, domain: str | None = None, **spec: object) -> dict[str, object]:
    body: dict[str, object] = {
        "name": name,
        "port": 8081,
        "domain": domain or f"{name}.example.com",
        "image": "registry.local/web:1",
    }
    body.update(spec)
    return {"apiVersion": "v1", "spec": body}


@pytest.fixture(scope="session")
def live_api(
    make_database: Callable[..., str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApi]:
    """The apiserver as deployed (gunicorn, two worker processes) over its own confdb."""
    log = tmp_path_factory.mktemp("apiserver-live") / "apiserver.log"
    with serving(make_database("sws_gunicorn"), log) as api:
        yield api
