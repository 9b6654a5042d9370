"""Checking JSON bodies against the schemas of apiserver/openapi.json."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest

jsonschema = pytest.importorskip("jsonschema")
referencing = pytest.importorskip("referencing")

DOCUMENT: dict[str, Any] = json.loads(
    resources.files("apiserver").joinpath("openapi.json").read_text()
)
_URI = "urn:sws:openapi"
_REGISTRY = referencing.Registry().with_resource(
    _URI,
    referencing.Resource.from_contents(
        DOCUMENT, default_specification=referencing.jsonschema.DRAFT202012
    ),
)


def conforms(body: object, schema_name: str) -> None:
    """Fail with the first violation if `body` does not match the named component schema."""
    schema = {"$ref": f"{_URI}#/components/schemas/{schema_name}"}
    validator = jsonschema.Draft202012Validator(schema, registry=_REGISTRY)
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    assert not errors, f"{schema_name}: {errors[0].message} at {list(errors[0].path)}"
