"""The agent's configuration: plain values, read from the environment by the CLI."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from sws.errors import InvalidInput, RouteTableError
from sws.platform_routes import api_route

_INSTANCE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")


@dataclass(frozen=True)
class ProxyEndpoint:
    name: str
    admin_url: str


@dataclass(frozen=True)
class Config:
    database_url: str
    # None: DOCKER_HOST or the default socket, as the Docker CLI does.
    docker_url: str | None = None
    # Every container, volume and network carries this; another instance's are never touched.
    instance: str = "sws"
    network: str = "sws-services"
    # Seconds between passes when nothing happens (a NOTIFY starts one at once).
    interval: float = 10.0
    # How soon to look again while something is in progress.
    requeue: float = 0.25
    start_timeout: float = 60.0
    # Between routing a replica out and stopping it.
    grace_period: float = 2.0
    # SIGTERM -> SIGKILL when stopping.
    stop_timeout: float = 10.0
    probe_timeout: float = 0.5
    backoff_initial: float = 5.0
    backoff_max: float = 300.0
    proxies: tuple[ProxyEndpoint, ...] = ()
    log_level: str = "INFO"
    # The front balancer's admin API; None: proxies are updated in place, one at a time.
    loadbalancer_admin: str | None = None
    # How long a swap waits for a drained proxy's connections to close before going on.
    swap_drain_timeout: float = 10.0
    # How long a swap waits for the balancer to report a re-enabled proxy up.
    swap_up_timeout: float = 10.0
    # How often the proxies are looked at when no new table arrives.
    proxy_check_interval: float = 1.0
    # One request to a proxy's or the balancer's admin API.
    admin_timeout: float = 2.0
    # The platform's API domain and the apiserver's host:port it routes to.
    api_domain: str | None = None
    api_backend: str | None = None

    def __post_init__(self) -> None:
        if not _INSTANCE.match(self.instance):
            raise InvalidInput(
                f"SWS_INSTANCE: {self.instance!r} is not an instance name "
                "(a-z, 0-9 and '-', 1-32 long)"
            )
        for field_name in (
            "interval",
            "requeue",
            "start_timeout",
            "probe_timeout",
            "backoff_initial",
            "backoff_max",
            "swap_up_timeout",
            "proxy_check_interval",
            "admin_timeout",
        ):
            if getattr(self, field_name) <= 0:
                raise InvalidInput(f"{field_name}: must be positive")
        for field_name in ("grace_period", "stop_timeout", "swap_drain_timeout"):
            if getattr(self, field_name) < 0:
                raise InvalidInput(f"{field_name}: must not be negative")
        if (self.api_domain is None) != (self.api_backend is None):
            raise InvalidInput(
                "SWS_API_DOMAIN, SWS_API_BACKEND: set both (the API domain and the apiserver's "
                "host:port) or neither"
            )

    @property
    def swap_lock_key(self) -> int:
        """The advisory-lock key that lets one proxy swap run at a time (agent or command)."""
        digest = hashlib.sha256(f"sws-swap:{self.instance}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    @property
    def api_backend_address(self) -> tuple[str, int] | None:
        """The apiserver's (host, port), or None when no API domain is routed."""
        if self.api_backend is None:
            return None
        host, _, port = self.api_backend.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def leader_lock_key(self) -> int:
        """The advisory-lock key agents of this instance compete for (a signed 64-bit int)."""
        digest = hashlib.sha256(f"sws-agent:{self.instance}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        """Build from SWS_* variables; a bad value raises InvalidInput naming the variable."""
        url = env.get("SWS_DATABASE_URL", "")
        if not url:
            raise InvalidInput("SWS_DATABASE_URL: is required (postgresql://user@host/db)")
        return cls(
            database_url=url,
            docker_url=env.get("SWS_DOCKER_URL") or None,
            instance=env.get("SWS_INSTANCE", "sws"),
            network=env.get("SWS_SERVICES_NETWORK", "sws-services"),
            interval=_seconds(env, "SWS_INTERVAL", 10.0),
            requeue=_seconds(env, "SWS_REQUEUE", 0.25),
            start_timeout=_seconds(env, "SWS_START_TIMEOUT", 60.0),
            grace_period=_seconds(env, "SWS_GRACE_PERIOD", 2.0),
            stop_timeout=_seconds(env, "SWS_STOP_TIMEOUT", 10.0),
            probe_timeout=_seconds(env, "SWS_PROBE_TIMEOUT", 0.5),
            backoff_initial=_seconds(env, "SWS_BACKOFF_INITIAL", 5.0),
            backoff_max=_seconds(env, "SWS_BACKOFF_MAX", 300.0),
            proxies=parse_proxies(env.get("SWS_PROXIES", "")),
            log_level=env.get("SWS_LOG_LEVEL", "INFO").upper(),
            loadbalancer_admin=_admin_url(env, "SWS_LOADBALANCER_ADMIN"),
            swap_drain_timeout=_seconds(env, "SWS_SWAP_DRAIN_TIMEOUT", 10.0),
            swap_up_timeout=_seconds(env, "SWS_SWAP_UP_TIMEOUT", 10.0),
            proxy_check_interval=_seconds(env, "SWS_PROXY_CHECK_INTERVAL", 1.0),
            admin_timeout=_seconds(env, "SWS_ADMIN_TIMEOUT", 2.0),
            api_domain=_api_domain(env),
            api_backend=_host_port(env, "SWS_API_BACKEND"),
        )


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text.removesuffix("s"))
    except ValueError:
        raise InvalidInput(f"{name}: {text!r} is not a number of seconds") from None
    if value < 0:
        raise InvalidInput(f"{name}: {text!r} must not be negative")
    return value


def parse_proxies(text: str) -> tuple[ProxyEndpoint, ...]:
    """`proxy-1=http://proxy-1:9000,proxy-2=http://proxy-2:9000` -> endpoints, in order."""
    out: list[ProxyEndpoint] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, url = item.partition("=")
        if not sep or not name.strip() or not url.strip().startswith(("http://", "https://")):
            raise InvalidInput(f"SWS_PROXIES: {item!r} is not name=http://host:port")
        out.append(ProxyEndpoint(name.strip(), url.strip().rstrip("/")))
    names = [p.name for p in out]
    if len(set(names)) != len(names):
        raise InvalidInput("SWS_PROXIES: a proxy name is listed twice")
    return tuple(out)


def _admin_url(env: Mapping[str, str], name: str) -> str | None:
    text = env.get(name, "").strip()
    if not text:
        return None
    if not text.startswith(("http://", "https://")) or len(text.split("://", 1)[1]) == 0:
        raise InvalidInput(f"{name}: {text!r} is not an http://host:port URL")
    return text.rstrip("/")


def _api_domain(env: Mapping[str, str]) -> str | None:
    text = env.get("SWS_API_DOMAIN", "").strip().lower().rstrip(".")
    if not text:
        return None
    try:
        api_route(text, ())
    except RouteTableError:
        raise InvalidInput(
            f"SWS_API_DOMAIN: {text!r} is not a domain name (labels of a-z, 0-9 and '-')"
        ) from None
    return text


def _host_port(env: Mapping[str, str], name: str) -> str | None:
    text = env.get(name, "").strip()
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InvalidInput(f"{name}: {text!r} is not host:port (port 1-65535)")
    return text
