"""Random JSON at PUT never makes the server fail: every answer is a 2xx or a 4xx."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.apiserver.conftest import Caller

pytestmark = pytest.mark.postgres

SPEC_KEYS = ["name", "port", "domain", "image", "volumeMount", "env", "replicas", "bogus"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["web", "a.example.com", "nginx:1", "/data", "", "-", "\x00", "é", "v1"])
)
anything = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def mutated_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid spec with a few of its values replaced, removed or added."""
    name = draw(st.sampled_from(["fuzz-a", "fuzz-b", "fuzz-c"]))
    spec: dict[str, Any] = {
        "name": name,
        "port": 8080,
        "domain": f"{name}.fuzz.example.com",
        "image": "registry.local/fuzz:1",
        "replicas": 1,
        "env": [{"name": "A", "value": "1"}],
        "volumeMount": "/data",
    }
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(SPEC_KEYS))
        if draw(st.booleans()):
            spec[key] = draw(anything)
        else:
            spec.pop(key, None)
    document: dict[str, Any] = {
        "apiVersion": draw(st.sampled_from(["v1", "v1", "v2", 1, None])),
        "spec": spec,
    }
    if draw(st.booleans()):
        document[draw(st.sampled_from(["apiVersion", "spec", "extra"]))] = draw(anything)
    return document


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=mutated_specs() | anything,
    name=st.sampled_from(["fuzz-a", "fuzz-b", "fuzz-c", "Bad Name"]),
)
def test_put_never_answers_500(app: Flask, fuzzer: Caller, body: Any, name: str) -> None:
    response = app.test_client().put(
        f"/v1/services/{name.replace(' ', '%20')}",
        data=json.dumps(body),
        headers={**fuzzer.headers, "Content-Type": "application/json"},
    )
    assert response.status_code in (200, 201, 400, 404, 409), response.json
    assert isinstance(response.json, dict)
    if response.status_code >= 400:
        assert response.json["error"]


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_put_of_arbitrary_bytes_never_answers_500(app: Flask, fuzzer: Caller, raw: bytes) -> None:
    response = app.test_client().put(
        "/v1/services/fuzz-a",
        data=raw,
        headers={**fuzzer.headers, "Content-Type": "application/json"},
    )
    assert response.status_code in (200, 201, 400, 409), response.json


@pytest.fixture(scope="module")
def fuzzer(make_caller) -> Caller:  # type: ignore[no-untyped-def]
    return make_caller("fuzzer")
