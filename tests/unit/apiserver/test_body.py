from __future__ import annotations

from decimal import Decimal

import pytest

from apiserver.body import parse_json
from sws.errors import InvalidInput


def test_parses_numbers_exactly() -> None:
    assert parse_json(b'{"port": 8080.0, "n": 3}') == {"port": Decimal("8080.0"), "n": 3}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "invalid JSON at line 1 column 1"),
        (b'{"a": }', "invalid JSON at line 1 column 7"),
        (b"\xc3\x28", "not valid UTF-8"),
        (b"[NaN]", "NaN is not a JSON number"),
        (b"-Infinity", "is not a JSON number"),
        (b"1e999999999", "out of range"),
        (b"9" * 65, "longer than 64 characters"),
        (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
    ],
)
def test_bad_bodies_are_invalid_input(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_json(raw)
    assert message in caught.value.message
