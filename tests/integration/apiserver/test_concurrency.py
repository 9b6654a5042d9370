"""Concurrent applies: one consistent generation sequence, one winner per name and domain."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from flask import Flask

from tests.integration.apiserver.conftest import Caller, document, unique

pytestmark = pytest.mark.postgres

WRITERS = 8


def run_at_once(jobs: list[Callable[[], object]]) -> list[object]:
    """Run every job in its own thread, released together."""
    barrier = threading.Barrier(len(jobs))
    results: list[object] = [None] * len(jobs)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = jobs[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_concurrent_applies_of_one_name_form_one_sequence(app: Flask, alice: Caller) -> None:
    name = unique()

    def apply(replicas: int) -> Callable[[], tuple[int, dict]]:
        def job() -> tuple[int, dict]:
            r = app.test_client().put(
                f"/v1/services/{name}",
                json=document(name, replicas=replicas),
                headers=alice.headers,
            )
            return r.status_code, r.json

        return job

    results = run_at_once([apply(i) for i in range(1, WRITERS + 1)])
    statuses = sorted(status for status, _ in results)  # type: ignore[misc]
    assert statuses == [200] * (WRITERS - 1) + [201]
    generations = sorted(body["generation"] for _, body in results)  # type: ignore[misc]
    assert generations == list(range(1, WRITERS + 1))
    assert [body["result"] for _, body in results].count("created") == 1  # type: ignore[misc]
    final = app.test_client().get(f"/v1/services/{name}", headers=alice.headers).json
    assert final["generation"] == WRITERS
    # The stored spec is the one whose write got the last generation.
    last = max(results, key=lambda r: r[1]["generation"])  # type: ignore[index]
    assert final["spec"] == last[1]["spec"]  # type: ignore[index]


def test_concurrent_creates_of_one_domain_have_one_winner(
    app: Flask, make_caller: Callable[..., Caller]
) -> None:
    domain = f"{unique('race')}.example.com"
    callers = [make_caller("racer") for _ in range(WRITERS)]

    def create(caller: Caller) -> Callable[[], int]:
        def job() -> int:
            name = unique()
            r = app.test_client().put(
                f"/v1/services/{name}", json=document(name, domain=domain), headers=caller.headers
            )
            return r.status_code

        return job

    statuses = run_at_once([create(c) for c in callers])
    assert sorted(statuses) == [201] + [409] * (WRITERS - 1)  # type: ignore[type-var]


def test_concurrent_creates_of_one_name_by_different_users(
    app: Flask, make_caller: Callable[..., Caller]
) -> None:
    name = unique()
    callers = [make_caller("racer") for _ in range(WRITERS)]

    def create(i: int, caller: Caller) -> Callable[[], int]:
        def job() -> int:
            r = app.test_client().put(
                f"/v1/services/{name}",
                json=document(name, domain=f"{name}-{i}.example.com"),
                headers=caller.headers,
            )
            return r.status_code

        return job

    statuses = run_at_once([create(i, c) for i, c in enumerate(callers)])
    assert sorted(statuses) == [201] + [409] * (WRITERS - 1)  # type: ignore[type-var]
