"""Settings of one balancer process, and the parsing of its command-line values."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from sws.errors import InvalidInput

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class ConfigError(InvalidInput):
    """A setting is malformed; the message names the setting and the rule it broke."""


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class HttpCheck:
    """Health check by ``GET path`` on ``address``; status 200 means up."""

    address: Address
    path: str

    def __str__(self) -> str:
        return f"http://{self.address}{self.path}"


@dataclass(frozen=True, slots=True)
class BackendConfig:
    """One backend; without an HTTP check it is checked by opening a TCP connection."""

    name: str
    address: Address
    http_check: HttpCheck | None = None


@dataclass
class Config:
    listen: tuple[Address, ...]
    admin: Address
    backends: tuple[BackendConfig, ...]
    check_interval: float = 0.5
    check_timeout: float = 0.5
    rise: int = 2
    fall: int = 2
    connect_timeout: float = 1.0
    # Silence allowed on a pair once one direction has ended.
    half_close_timeout: float = 60.0
    # How long a backend name's addresses are reused before being looked up again.
    resolve_ttl: float = 1.0
    # Under Docker's default 10 s stop timeout, so the balancer ends on its own terms.
    grace_period: float = 8.0
    # Client bytes held while the upstream connection is being opened; above this the
    # client is paused rather than buffered without bound.
    connect_buffer: int = 256 * 1024
    backlog: int = 2048
    log_level: str = "info"

    def __post_init__(self) -> None:
        if not self.listen:
            raise ConfigError("listen: at least one address is required")
        if not self.backends:
            raise ConfigError("backend: at least one backend is required")
        seen: set[str] = set()
        for backend in self.backends:
            if backend.name in seen:
                raise ConfigError(f'backend: name "{backend.name}" is given twice')
            seen.add(backend.name)
        for name in ("check_interval", "check_timeout", "connect_timeout", "half_close_timeout"):
            value = getattr(self, name)
            if not 0 < value <= 3600:
                raise ConfigError(f"{name}: {value} is not a duration (0 < seconds <= 3600)")
        if not 0 <= self.resolve_ttl <= 3600:
            raise ConfigError(
                f"resolve_ttl: {self.resolve_ttl} is not a duration (0 <= seconds <= 3600)"
            )
        if not 0 <= self.grace_period <= 3600:
            raise ConfigError(
                f"grace_period: {self.grace_period} is not a duration (0 <= seconds <= 3600)"
            )
        for name in ("rise", "fall"):
            value = getattr(self, name)
            if not 1 <= value <= 100:
                raise ConfigError(f"{name}: {value} is not a count (1-100)")
        if self.connect_buffer < 1024:
            raise ConfigError(f"connect_buffer: {self.connect_buffer} is below 1024 bytes")


def parse_address(text: str, what: str = "address", bind: bool = False) -> Address:
    """Parse ``HOST:PORT`` or ``[V6]:PORT``; the host may be a DNS name.

    An address to ``bind`` may have port 0, which asks the system for a free port.
    """
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ConfigError(f'{what}: "{text}" is not HOST:PORT ([V6]:PORT for IPv6)')
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise ConfigError(f'{what}: "{text}" is not HOST:PORT ([V6]:PORT for IPv6)')
    if not host:
        raise ConfigError(f'{what}: "{text}" has no host')
    lowest = 0 if bind else 1
    if not port_text.isdigit() or not lowest <= int(port_text) <= 65535:
        raise ConfigError(f'{what}: "{port_text}" in "{text}" is not a port ({lowest}-65535)')
    return Address(host, int(port_text))


def parse_http_check(url: str, what: str) -> HttpCheck:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http":
        raise ConfigError(f'{what}: health URL "{url}" must start with http://')
    if not parts.hostname:
        raise ConfigError(f'{what}: health URL "{url}" has no host')
    try:
        port = parts.port or 80
    except ValueError:
        raise ConfigError(f'{what}: health URL "{url}" has a port outside 1-65535') from None
    if port == 0:
        raise ConfigError(f'{what}: health URL "{url}" has a port outside 1-65535')
    if parts.fragment or parts.username or parts.password:
        raise ConfigError(f'{what}: health URL "{url}" may not carry credentials or a fragment')
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return HttpCheck(Address(parts.hostname, port), path)


def parse_backend(text: str) -> BackendConfig:
    """Parse ``NAME=HOST:PORT[,health=http://HOST:PORT/PATH]``."""
    name, sep, rest = text.partition("=")
    if not sep:
        raise ConfigError(f'backend: "{text}" is not NAME=HOST:PORT[,health=URL]')
    if not _NAME.match(name):
        raise ConfigError(
            f'backend: name "{name}" must be 1-63 letters, digits, "_", "." or "-", '
            "starting with a letter or digit"
        )
    what = f"backend {name}"
    address_text, *options = rest.split(",")
    address = parse_address(address_text, what)
    http_check = None
    for option in options:
        key, sep, value = option.partition("=")
        if key != "health" or not sep:
            raise ConfigError(f'{what}: unknown option "{option}" (known: health=URL)')
        http_check = parse_http_check(value, what)
    return BackendConfig(name, address, http_check)
