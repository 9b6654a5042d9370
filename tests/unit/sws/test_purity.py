"""`sws/` is the pure core: it must not import anything that does I/O."""

from __future__ import annotations

import ast
import pathlib

import pytest

FORBIDDEN = {
    "socket",
    "ssl",
    "asyncio",
    "selectors",
    "subprocess",
    "http",
    "urllib",
    "requests",
    "psycopg",
    "psycopg_pool",
    "docker",
    "flask",
    "werkzeug",
    "gunicorn",
    "uvloop",
    "httptools",
    "click",
    "threading",
    "multiprocessing",
    "sqlite3",
    "confdb",
    "agent",
    "apiserver",
    "proxy",
    "loadbalancer",
    "swsctl",
}
CORE = pathlib.Path(__file__).resolve().parents[3] / "sws"
MODULES = sorted(CORE.rglob("*.py"))


def imported_roots(path: pathlib.Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            roots.add("__import__")
    return roots


def test_core_has_modules() -> None:
    assert any(p.name == "spec.py" for p in MODULES)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_core_module_imports_no_io(path: pathlib.Path) -> None:
    bad = imported_roots(path) & (FORBIDDEN | {"__import__"})
    assert not bad, f"sws/{path.name} imports {sorted(bad)}: the core must stay free of I/O"


def test_the_check_would_catch_an_io_import(tmp_path: pathlib.Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os\nfrom psycopg import sql\nimport asyncio.events\n")
    assert imported_roots(module) & FORBIDDEN == {"psycopg", "asyncio"}
