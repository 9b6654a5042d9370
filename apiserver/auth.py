"""Bearer-token authentication: every /v1 request names its user by a token."""

from __future__ import annotations

import secrets

from flask import current_app, g, request

from apiserver.store import Store
from confdb.users import User, user_by_token
from sws.errors import Forbidden, Unauthorized

TOKEN_BYTES = 32


def new_token() -> str:
    """A fresh bearer token: shown once, stored only as its hash."""
    return secrets.token_urlsafe(TOKEN_BYTES)


class MissingToken(Unauthorized):
    """No bearer token at all."""


class InvalidToken(Unauthorized):
    """A bearer token that matches no user."""


def bearer_token() -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise MissingToken("missing bearer token (Authorization: Bearer <token>)")
    return token


def authenticate() -> User:
    """The user the request's token belongs to, in a short transaction of its own.

    Kept apart from the request's write so no confdb connection is held while the body is
    still arriving.
    """
    token = bearer_token()
    store: Store = current_app.extensions["sws.store"]
    with store.transaction() as conn:
        user = user_by_token(conn, token)
    if user is None:
        raise InvalidToken("invalid token")
    g.user = user.name
    return user


def require_admin(user: User, what: str) -> None:
    if not user.is_admin:
        raise Forbidden(f"{what} is for admins only")
