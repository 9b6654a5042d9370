"""Rendering API objects for people (aligned tables, ages) and for programs (JSON, YAML)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import yaml

FORMATS = ("table", "json", "yaml")


def as_json(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=False)


def as_yaml(value: object) -> str:
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True).rstrip("\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell, three spaces apart, like kubectl's."""
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def age(at: str | None, now: datetime | None = None) -> str:
    """How long ago an RFC 3339 time was, in the largest whole unit: 42s, 5m, 3h, 12d."""
    if not at:
        return "-"
    try:
        then = datetime.fromisoformat(at)
    except ValueError:
        return "-"
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
