"""The agent's log lines: an event word, then key=value fields."""

from __future__ import annotations

import json


def fmt(event: str, **fields: object) -> str:
    """`event k=v ...`, quoting values that need it."""
    parts = [event]
    for key, value in fields.items():
        text = str(value)
        if not text or any(ch in text for ch in ' "=\n'):
            text = json.dumps(text)
        parts.append(f"{key}={text}")
    return " ".join(parts)
