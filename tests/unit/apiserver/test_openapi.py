from __future__ import annotations

import json
import re

import pytest

from apiserver.app import create_app
from apiserver.config import Config
from tests.unit.apiserver.openapi_schema import DOCUMENT, conforms, violations

# Building the app opens nothing: the pool connects on first use.
UNUSED_URL = "postgresql://nobody@127.0.0.1:1/none"


def test_document_is_valid_openapi_3_1() -> None:
    # Not a declared test dependency: checked where it is installed.
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(DOCUMENT)
    assert DOCUMENT["openapi"].startswith("3.1")


def test_every_route_is_documented_and_nothing_else() -> None:
    app = create_app(Config(database_url=UNUSED_URL))
    routes: set[tuple[str, str]] = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                routes.add((path, method.lower()))
    documented = {
        (path, method)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch")
    }
    assert routes == documented


def test_every_reference_resolves() -> None:
    refs = re.findall(r'"\$ref": "(#/[^"]+)"', json.dumps(DOCUMENT))
    assert refs
    for ref in refs:
        assert violations(None, {"$ref": ref}) is not None


def test_schemas_accept_a_full_service_and_refuse_a_broken_one() -> None:
    service = {
        "name": "web",
        "owner": "alice",
        "domain": "web.example.com",
        "image": "nginx:1",
        "generation": 2,
        "observedGeneration": 1,
        "state": "running",
        "message": "",
        "replicas": {"desired": 1, "ready": 1},
        "deleting": False,
        "createdAt": "2024-01-01T00:00:00Z",
        "updatedAt": "2024-01-01T00:00:00Z",
        "spec": {
            "apiVersion": "v1",
            "spec": {
                "name": "web",
                "port": 80,
                "domain": "web.example.com",
                "image": "nginx:1",
                "replicas": 1,
            },
        },
        "purgeVolume": False,
        "instances": [],
        "events": [],
        "result": "created",
    }
    conforms(service, "AppliedService")
    for broken in (
        {**service, "state": "sleeping"},
        {**service, "generation": "2"},
        {**service, "createdAt": "yesterday"},
        {k: v for k, v in service.items() if k != "result"},
        {**service, "spec": {"apiVersion": "v1", "spec": {"name": "web", "port": 0}}},
    ):
        with pytest.raises(AssertionError):
            conforms(broken, "AppliedService")
