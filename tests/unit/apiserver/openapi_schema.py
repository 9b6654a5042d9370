"""Checking JSON bodies against the schemas of apiserver/openapi.json.

A small checker for the JSON Schema keywords that document uses ($ref, allOf, type, const,
enum, required, properties, additionalProperties, items, minimum, maximum, maxItems,
maxLength, pattern, format date-time), so the tests need no schema library.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from importlib import resources
from typing import Any

DOCUMENT: dict[str, Any] = json.loads(
    resources.files("apiserver").joinpath("openapi.json").read_text()
)

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def conforms(body: object, schema_name: str) -> None:
    """Fail with every violation if `body` does not match the named component schema."""
    problems = violations(body, {"$ref": f"#/components/schemas/{schema_name}"})
    assert not problems, f"{schema_name}: " + "; ".join(problems)


def violations(value: object, schema: dict[str, Any], path: str = "$") -> list[str]:
    if "$ref" in schema:
        return violations(value, _resolve(schema["$ref"]), path)
    found: list[str] = []
    for part in schema.get("allOf", []):
        found += violations(value, part, path)
    if "type" in schema and not _has_type(value, schema["type"]):
        return [*found, f"{path}: {value!r} is not of type {schema['type']}"]
    if "const" in schema and value != schema["const"]:
        found.append(f"{path}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                found.append(f"{path}: missing {key!r}")
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                found += violations(item, properties[key], f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                found.append(f"{path}: unexpected {key!r}")
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            found.append(f"{path}: more than {schema['maxItems']} items")
        for i, item in enumerate(value):
            found += violations(item, schema.get("items", {}), f"{path}[{i}]")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            found.append(f"{path}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            found.append(f"{path}: {value} > {schema['maximum']}")
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            found.append(f"{path}: longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            found.append(f"{path}: {value!r} does not match {schema['pattern']}")
        if schema.get("format") == "date-time":
            try:
                datetime.fromisoformat(value)
            except ValueError:
                found.append(f"{path}: {value!r} is not a date-time")
    return found


def _has_type(value: object, expected: str | list[str]) -> bool:
    names = [expected] if isinstance(expected, str) else expected
    for name in names:
        if name == "integer" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if name == "number" and isinstance(value, int | float) and not isinstance(value, bool):
            return True
        if name in _TYPES and isinstance(value, _TYPES[name]):
            return True
    return False


def _resolve(ref: str) -> dict[str, Any]:
    assert ref.startswith("#/"), ref
    node: Any = DOCUMENT
    for part in ref[2:].split("/"):
        node = node[part]
    return dict(node)
