"""Users and their bearer tokens.

A token is shown to its user once and stored only as its sha256, so a copy of confdb does not
hand out working credentials. Looking a user up by token hashes it the same way.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import psycopg

from sws.errors import Conflict, InvalidInput

# Rows are plain tuples; each function turns them into typed values at once.
Conn = psycopg.Connection[Any]

_USER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class User:
    id: int
    name: str
    is_admin: bool


def hash_token(token: str) -> str:
    """The form a token is stored and looked up in."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_user_name(name: str) -> None:
    """Refuse names that would be awkward in logs, URLs and tables."""
    if not _USER_NAME.match(name):
        raise InvalidInput(
            f'user name "{name}" is not valid (lowercase letters, digits, ".", "_" and "-", '
            "starting with a letter or digit, at most 63 characters)"
        )


def create_user(conn: Conn, name: str, token: str, *, is_admin: bool = False) -> User | None:
    """Insert a user holding `token`; None if the name is taken (nothing is changed then)."""
    check_user_name(name)
    row = conn.execute(
        """
        INSERT INTO users (name, token_hash, is_admin) VALUES (%s, %s, %s)
        ON CONFLICT (name) DO NOTHING
        RETURNING id, name, is_admin
        """,
        (name, hash_token(token), is_admin),
    ).fetchone()
    if row is None:
        return None
    return _user(row)


def create_user_or_fail(conn: Conn, name: str, token: str, *, is_admin: bool = False) -> User:
    user = create_user(conn, name, token, is_admin=is_admin)
    if user is None:
        raise Conflict(f'user "{name}" already exists')
    return user


def replace_token(conn: Conn, name: str, token: str) -> User | None:
    """Make `token` the only one `name` holds; None if there is no such user.

    The old token stops working when the transaction commits: requests look the user up by
    token every time, so nothing holds on to it.
    """
    row = conn.execute(
        "UPDATE users SET token_hash = %s WHERE name = %s RETURNING id, name, is_admin",
        (hash_token(token), name),
    ).fetchone()
    return None if row is None else _user(row)


def user_by_token(conn: Conn, token: str) -> User | None:
    """The user holding `token`, or None."""
    row = conn.execute(
        "SELECT id, name, is_admin FROM users WHERE token_hash = %s", (hash_token(token),)
    ).fetchone()
    return None if row is None else _user(row)


def user_by_name(conn: Conn, name: str) -> User | None:
    row = conn.execute("SELECT id, name, is_admin FROM users WHERE name = %s", (name,)).fetchone()
    return None if row is None else _user(row)


def _user(row: tuple[Any, ...]) -> User:
    id_, name, is_admin = row
    return User(id=int(id_), name=str(name), is_admin=bool(is_admin))
