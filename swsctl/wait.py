"""Waiting for the agent: until services run at their new generation, or are gone.

A rollout is done when the agent reports having acted on the generation we wrote
(observedGeneration >= generation) and either every replica is ready (running) or it gave up
(failing). Progress goes to stderr, one line whenever a service's state changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import click

from sws.errors import NotFound

POLL_INTERVAL_S = 1.0


def _progress(name: str, body: Mapping[str, object]) -> str:
    replicas = body.get("replicas")
    ready = replicas.get("ready") if isinstance(replicas, dict) else "?"
    desired = replicas.get("desired") if isinstance(replicas, dict) else "?"
    line = f"{name}: ready {ready}/{desired}, {body.get('state')}"
    message = body.get("message")
    return f"{line} ({message})" if message else line


Fetch = Callable[[str], Mapping[str, Any]]


def until_rolled_out(
    fetch: Fetch,
    generations: Mapping[str, int],
    timeout: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Poll until each service is running or failing at its generation; return the problems."""
    deadline = clock() + timeout
    pending = dict(generations)
    shown: dict[str, str] = {}
    problems: list[str] = []
    while pending:
        for name, generation in list(pending.items()):
            body = fetch(name)
            line = _progress(name, body)
            if shown.get(name) != line:
                click.echo(line, err=True)
                shown[name] = line
            observed = body.get("observedGeneration")
            if not isinstance(observed, int) or observed < generation:
                continue
            replicas = body.get("replicas") or {}
            ready = isinstance(replicas, dict) and replicas.get("ready") == replicas.get("desired")
            if body.get("state") == "running" and ready:
                del pending[name]
            elif body.get("state") == "failing":
                problems.append(
                    f'service "{name}" is failing: {body.get("message") or "no reason given"}'
                )
                del pending[name]
        if not pending:
            break
        if clock() >= deadline:
            for name in pending:
                problems.append(f'service "{name}" did not become ready within {timeout:g}s')
            break
        sleep(POLL_INTERVAL_S)
    return problems


def until_gone(
    fetch: Fetch,
    names: list[str],
    timeout: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Poll until each service answers 404; return the ones still there at the deadline."""
    deadline = clock() + timeout
    pending = list(names)
    shown: dict[str, str] = {}
    while pending:
        for name in list(pending):
            try:
                body = fetch(name)
            except NotFound:
                click.echo(f"{name}: deleted", err=True)
                pending.remove(name)
                continue
            line = _progress(name, body)
            if shown.get(name) != line:
                click.echo(line, err=True)
                shown[name] = line
        if not pending:
            break
        if clock() >= deadline:
            return [f'service "{name}" was not removed within {timeout:g}s' for name in pending]
        sleep(POLL_INTERVAL_S)
    return []
