"""The proxy runs compiled (setup.py) where it is built, and the same sources pass as Python.

The per-request modules are plain Python that Cython compiles with the types in the .pxd
files beside them. Both forms must behave the same: the suite runs against the compiled
modules (``make test`` builds them in place), and this file runs the proxy's tests once more
against a copy of the sources with no compiled module in it.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import STRICT

ROOT = Path(__file__).resolve().parents[3]
# As setup.py: a module is compiled exactly when a .pxd file stands beside it.
COMPILED = tuple(sorted(f"proxy.{p.stem}" for p in (ROOT / "proxy").glob("*.pxd")))
PURE_RUN = "SWS_PROXY_PURE_RUN"


def _is_compiled(name: str) -> bool:
    origin = importlib.import_module(name).__file__ or ""
    return not origin.endswith(".py")


@pytest.mark.skipif(os.environ.get(PURE_RUN) == "1", reason="the pure-Python run itself")
def test_the_per_request_modules_are_compiled() -> None:
    compiled = {name: _is_compiled(name) for name in COMPILED}
    if not all(compiled.values()):
        message = f"not compiled: {sorted(n for n, c in compiled.items() if not c)} (make build)"
        if STRICT:
            pytest.fail(message)
        pytest.skip(message)


@pytest.mark.skipif(os.environ.get(PURE_RUN) == "1", reason="the pure-Python run itself")
def test_the_proxy_tests_pass_as_pure_python(tmp_path: Path) -> None:
    ignore = shutil.ignore_patterns("*.so", "*.c", "__pycache__", "*.pyc")
    for name in ("proxy", "sws", "tests"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    env = {**os.environ, PURE_RUN: "1", "PYTHONPATH": str(tmp_path)}
    script = f"import {', '.join(COMPILED)}; " + "; ".join(f"print({m}.__file__)" for m in COMPILED)
    origins = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert origins == [str(tmp_path / "proxy" / f"{m.split('.')[1]}.py") for m in COMPILED]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/unit/proxy",
            "tests/integration/proxy",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
