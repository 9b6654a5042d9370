"""Reading JSON request bodies without ever letting bad input become a server error."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation

from flask import Request

from sws.errors import InvalidInput, UnsupportedMediaType

# Longer numbers mean nothing in a spec, and converting huge ones costs time.
MAX_NUMBER_CHARS = 64


def read_json(request: Request) -> object:
    """The request's JSON document; 415 unless it is declared application/json."""
    if request.mimetype != "application/json":
        shown = request.mimetype or "none"
        raise UnsupportedMediaType(f"Content-Type must be application/json, not {shown}")
    # Raises 413 past MAX_CONTENT_LENGTH, whether or not Content-Length was sent.
    return parse_json(request.get_data(cache=False))


def parse_json(data: bytes) -> object:
    """Parse a JSON document; every failure is InvalidInput naming the position."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInput(f"request body is not valid UTF-8 (byte {e.start})") from None
    try:
        return json.loads(
            text, parse_float=_decimal, parse_int=_integer, parse_constant=_no_constant
        )
    except json.JSONDecodeError as e:
        raise InvalidInput(f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise InvalidInput("invalid JSON: nested too deeply") from None
    except ValueError as e:
        raise InvalidInput(f"invalid JSON: {e}") from None


def _check_length(text: str) -> None:
    if len(text) > MAX_NUMBER_CHARS:
        raise InvalidInput(f"invalid JSON: a number longer than {MAX_NUMBER_CHARS} characters")


def _decimal(text: str) -> Decimal:
    # Decimal keeps 8080.0 an exact integer for the spec; float would not for big values.
    _check_length(text)
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InvalidInput(f"invalid JSON: {text!r} is not a number") from None
    if not value.is_finite() or abs(value.adjusted()) > MAX_NUMBER_CHARS:
        raise InvalidInput("invalid JSON: a number out of range")
    return value


def _integer(text: str) -> int:
    _check_length(text)
    return int(text)


def _no_constant(text: str) -> object:
    raise InvalidInput(f"invalid JSON: {text} is not a JSON number")
