"""The API as deployed: gunicorn with two worker processes, spoken to over HTTP."""

from __future__ import annotations

import secrets
import threading

import pytest
import requests

from tests.integration.apiserver.conftest import document, unique
from tests.integration.apiserver.live import LiveApi
from tests.unit.apiserver.openapi_schema import DOCUMENT

pytestmark = pytest.mark.postgres

WRITERS = 8


def test_concurrent_applies_across_worker_processes(live_api: LiveApi) -> None:
    token = live_api.create_user(unique("user"))
    headers = {"Authorization": f"Bearer {token}"}
    name = unique()
    barrier = threading.Barrier(WRITERS)
    answers: list[tuple[int, int]] = []
    lock = threading.Lock()

    def apply(replicas: int) -> None:
        body = document(name, replicas=replicas)
        barrier.wait()
        r = requests.put(
            f"{live_api.url}/v1/services/{name}", json=body, headers=headers, timeout=30
        )
        with lock:
            answers.append((r.status_code, r.json()["generation"]))

    threads = [threading.Thread(target=apply, args=(i,)) for i in range(1, WRITERS + 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(status for status, _ in answers) == [200] * (WRITERS - 1) + [201]
    assert sorted(generation for _, generation in answers) == list(range(1, WRITERS + 1))


def test_http_level_errors(live_api: LiveApi) -> None:
    token = live_api.create_user(unique("user"))
    headers = {"Authorization": f"Bearer {token}"}
    name = unique()

    missing = requests.get(f"{live_api.url}/v1/services", timeout=10)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="sws"'
    wrong = requests.get(
        f"{live_api.url}/v1/services",
        headers={"Authorization": f"Bearer {secrets.token_urlsafe(32)}"},
        timeout=10,
    )
    assert wrong.headers["WWW-Authenticate"] == 'Bearer realm="sws", error="invalid_token"'

    big = document(name, env=[{"name": "BIG", "value": "x" * (2 * 1024 * 1024)}])
    too_large = requests.put(
        f"{live_api.url}/v1/services/{name}", json=big, headers=headers, timeout=30
    )
    assert too_large.status_code == 413
    assert too_large.json() == {"error": "request body is larger than 1 MiB"}
    # The connection and the server are fine afterwards.
    assert (
        requests.get(f"{live_api.url}/v1/services", headers=headers, timeout=10).status_code == 200
    )

    assert requests.get(f"{live_api.url}/openapi.json", timeout=10).json() == DOCUMENT
    assert requests.get(f"{live_api.url}/healthz", timeout=10).json() == {"status": "ok"}
