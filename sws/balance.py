"""Least-connections choice of a backend.

Theory of operation
-------------------
The front balancer keeps, for each backend, how many connections it has open to it (counted
from the moment the backend is chosen, so connections still being set up count too), whether
its health checks say it is up and whether an operator left it enabled or set it draining.
A new client connection goes to the backend with the fewest open connections among those
that are both healthy and enabled.

Ties are common: at start every backend has zero, and with short requests the counts keep
meeting. Taking the first tied backend every time would pile idle-time traffic onto one of
them, so the caller passes a ``turn`` that it advances on every choice; among the tied
backends (in the order given) the one at ``turn`` modulo their number wins. The same turn
with the same inputs always gives the same answer: the function holds no state.

This is the decision only; opening, counting and closing connections belongs to the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class BackendView(NamedTuple):
    """What the choice needs to know about one backend (a tuple: cheap to build per choice)."""

    name: str
    open_connections: int
    healthy: bool
    enabled: bool


def choose(backends: Sequence[BackendView], turn: int = 0) -> str | None:
    """Return the name of the least-loaded healthy, enabled backend, or None if none is."""
    least = -1
    tied: list[str] = []
    for backend in backends:
        if not (backend.healthy and backend.enabled):
            continue
        if least < 0 or backend.open_connections < least:
            least = backend.open_connections
            tied = [backend.name]
        elif backend.open_connections == least:
            tied.append(backend.name)
    if not tied:
        return None
    return tied[turn % len(tied)]
