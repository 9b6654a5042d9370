"""swsctl against a real apiserver (gunicorn, as deployed) over a throwaway confdb."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from swsctl.cli import main
from tests.integration.apiserver.live import LiveApi, serving


@pytest.fixture(scope="session")
def live_api(
    make_database: Callable[..., str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApi]:
    log = tmp_path_factory.mktemp("apiserver") / "apiserver.log"
    with serving(make_database("sws_live"), log) as api:
        yield api


@pytest.fixture
def xdg(tmp_path: Path) -> Path:
    return tmp_path / "xdg"


@pytest.fixture
def swsctl(xdg: Path) -> Callable[..., Result]:
    """Run swsctl in-process with its own config dir and no SWS_* from outside."""

    def run(
        *args: str, env: dict[str, str | None] | None = None, input: str | None = None
    ) -> Result:
        base: dict[str, str | None] = {
            "XDG_CONFIG_HOME": str(xdg),
            "SWS_HOST": None,
            "SWS_TOKEN": None,
            "SWS_API_DOMAIN": None,
        }
        return CliRunner().invoke(main, list(args), env={**base, **(env or {})}, input=input)

    return run
