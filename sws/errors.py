"""The error hierarchy every component shares.

Each error says whose fault it is and carries an HTTP status hint, so the apiserver maps
errors to responses in one handler and the CLI prints one line for each.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class SwsError(Exception):
    """Base of every error SWS raises on purpose."""

    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict[str, object]:
        return {"error": self.message}


@dataclass(frozen=True)
class FieldError:
    """One broken rule at one place in a document, e.g. ``spec.port``."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class InvalidInput(SwsError):
    """The caller sent something malformed: the caller's fault."""

    status = 400


class SpecError(InvalidInput):
    """A service spec broke one or more rules; every broken rule is listed."""

    def __init__(self, errors: Iterable[FieldError], source: str = "") -> None:
        self.errors = tuple(errors)
        self.source = source
        prefix = f"{source}: " if source else ""
        if len(self.errors) == 1:
            message = f"{prefix}invalid spec: {self.errors[0]}"
        else:
            message = f"{prefix}invalid spec ({len(self.errors)} errors): " + "; ".join(
                str(e) for e in self.errors
            )
        super().__init__(message)

    def to_json(self) -> dict[str, object]:
        return {"error": self.message, "details": [e.to_json() for e in self.errors]}


class RouteTableError(InvalidInput):
    """A route table broke a rule; the running table stays in place."""


class Unauthorized(SwsError):
    """No token, or one that matches no user."""

    status = 401


class Forbidden(SwsError):
    status = 403


class NotFound(SwsError):
    """The object does not exist, or belongs to someone else (never reveal which)."""

    status = 404


class Conflict(SwsError):
    """The request is valid but collides with what already exists."""

    status = 409


class PayloadTooLarge(SwsError):
    status = 413


class UnsupportedMediaType(SwsError):
    status = 415


class Unavailable(SwsError):
    """A system we depend on (confdb, the Docker Engine) cannot be reached right now."""

    status = 503


class RuntimeFailure(SwsError):
    """The container runtime refused or failed an operation."""

    status = 502
