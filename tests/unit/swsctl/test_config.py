from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sws.errors import InvalidInput
from swsctl import config


def test_path_follows_xdg_config_home(tmp_path: Path) -> None:
    assert (
        config.config_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "sws" / "config.yaml"
    )
    assert config.config_path({"HOME": "/nonexistent"}).parts[-3:] == (
        ".config",
        "sws",
        "config.yaml",
    )


def test_save_then_load_round_trips_with_private_modes(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "sws" / "config.yaml"
    settings = config.Settings("http://localhost", "tok", "api.sws.localhost")
    config.save(path, settings)
    assert config.load(path) == settings
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not list(path.parent.glob("*.tmp"))


def test_save_tightens_an_existing_loose_file(tmp_path: Path) -> None:
    path = tmp_path / "sws" / "config.yaml"
    path.parent.mkdir(mode=0o755)
    path.write_text("host: x\n")
    path.chmod(0o644)
    config.save(path, config.Settings("http://h", "t"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_missing_file_is_empty_settings(tmp_path: Path) -> None:
    assert config.load(tmp_path / "none.yaml") == config.Settings()


@pytest.mark.parametrize("text", ["host: [unclosed", "- a list\n"])
def test_broken_file_says_to_configure(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput, match="swsctl configure"):
        config.load(path)


def test_given_values_override_saved_ones() -> None:
    saved = config.Settings("http://saved", "saved-token", "saved.domain")
    given = config.Settings(host="http://flag", token=None, api_domain="")
    assert given.over(saved) == config.Settings("http://flag", "saved-token", "saved.domain")


@pytest.mark.parametrize("host", ["localhost", "ftp://x", "http://", "http://h/?q=1"])
def test_bad_hosts_are_refused(host: str) -> None:
    with pytest.raises(InvalidInput):
        config.check_host(host)


def test_good_host_loses_its_trailing_slash() -> None:
    assert config.check_host("https://sws.example.com:8443/") == "https://sws.example.com:8443"
