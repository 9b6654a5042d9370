from __future__ import annotations

import ast
import pathlib

from hypothesis import given
from hypothesis import strategies as st

from sws.balance import BackendView, choose


def view(name: str, open_connections: int = 0, healthy: bool = True, enabled: bool = True):
    return BackendView(name, open_connections, healthy, enabled)


def test_least_connections_wins() -> None:
    backends = [view("a", 3), view("b", 1), view("c", 2)]
    assert choose(backends) == "b"


def test_skips_unhealthy_even_if_least_loaded() -> None:
    backends = [view("a", 0, healthy=False), view("b", 5)]
    assert choose(backends) == "b"


def test_skips_disabled_even_if_least_loaded() -> None:
    backends = [view("a", 0, enabled=False), view("b", 5)]
    assert choose(backends) == "b"


def test_none_when_nothing_is_eligible() -> None:
    backends = [view("a", healthy=False), view("b", enabled=False)]
    assert choose(backends) is None
    assert choose([]) is None


def test_ties_rotate_with_turn() -> None:
    backends = [view("a", 1), view("b", 1), view("c", 4)]
    picks = [choose(backends, turn) for turn in range(4)]
    assert picks == ["a", "b", "a", "b"]


def test_tie_rotation_ignores_ineligible_backends() -> None:
    backends = [view("a", 0), view("b", 0, healthy=False), view("c", 0)]
    assert [choose(backends, turn) for turn in range(3)] == ["a", "c", "a"]


def test_same_inputs_same_answer() -> None:
    backends = [view("a", 2), view("b", 2)]
    assert choose(backends, 7) == choose(backends, 7)


@given(
    st.lists(
        st.tuples(st.integers(0, 50), st.booleans(), st.booleans()),
        min_size=0,
        max_size=8,
    ),
    st.integers(0, 1000),
)
def test_choice_is_always_an_eligible_minimum(
    rows: list[tuple[int, bool, bool]], turn: int
) -> None:
    backends = [view(f"b{i}", n, healthy, enabled) for i, (n, healthy, enabled) in enumerate(rows)]
    eligible = [b for b in backends if b.healthy and b.enabled]
    picked = choose(backends, turn)
    if not eligible:
        assert picked is None
        return
    least = min(b.open_connections for b in eligible)
    assert picked in {b.name for b in eligible if b.open_connections == least}


def test_balance_module_imports_no_io() -> None:
    source = pathlib.Path(__file__).parents[2].joinpath("sws", "balance.py").read_text()
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "collections", "typing"}
