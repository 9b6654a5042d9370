"""swsctl's saved settings: `$XDG_CONFIG_HOME/sws/config.yaml`, readable by its owner only.

Flags and `SWS_HOST`/`SWS_TOKEN`/`SWS_API_DOMAIN` override what the file says.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from sws.errors import InvalidInput


@dataclass(frozen=True)
class Settings:
    host: str | None = None
    token: str | None = None
    api_domain: str | None = None

    def over(self, base: Settings) -> Settings:
        """These settings where set, `base`'s elsewhere."""
        return replace(
            base,
            **{k: v for k, v in vars(self).items() if v not in (None, "")},
        )


def config_path(environ: Mapping[str, str] = os.environ) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "sws" / "config.yaml"


def load(path: Path) -> Settings:
    """The settings saved at `path`; empty ones if there is no file yet."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Settings()
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        raise InvalidInput(f"{path} is not valid YAML; run `swsctl configure`") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{path} is not a mapping; run `swsctl configure`")

    def text_of(key: str) -> str | None:
        value = data.get(key)
        return str(value) if value not in (None, "") else None

    return Settings(host=text_of("host"), token=text_of("token"), api_domain=text_of("apiDomain"))


def save(path: Path, settings: Settings) -> None:
    """Write the settings so that only their owner can read them (dir 0700, file 0600)."""
    path.parent.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path.parent, 0o700)
    data = {"host": settings.host, "token": settings.token}
    if settings.api_domain:
        data["apiDomain"] = settings.api_domain
    text = yaml.safe_dump(data, sort_keys=False)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    # Replace in one step: a crash leaves the old file or the new one, never half of one.
    os.replace(tmp, path)


def check_host(host: str) -> str:
    """The API URL without a trailing slash, or InvalidInput saying what is wrong with it."""
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(f'API URL "{host}" must look like http://host[:port]')
    if parts.query or parts.fragment:
        raise InvalidInput(f'API URL "{host}" must not have a query or fragment')
    return host.rstrip("/")
