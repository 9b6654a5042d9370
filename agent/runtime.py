"""The container runtime: the one module that speaks to the Docker Engine.

Everything SWS creates carries labels (`sws.managed`, `sws.instance`, `sws.service`, ...);
listing filters on the instance label, so containers without our labels, or of another
platform instance on the same engine, are never seen and so never touched. Docker SDK
exceptions are translated here: the rest of the agent sees only `sws.errors` types.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import docker.client
import docker.errors
import requests.exceptions
from docker.types import LogConfig

from sws.errors import Conflict, NotFound, RuntimeFailure, SwsError, Unavailable

LABEL_MANAGED = "sws.managed"
LABEL_INSTANCE = "sws.instance"
LABEL_SERVICE = "sws.service"
LABEL_REPLICA = "sws.replica"
LABEL_GENERATION = "sws.generation"
LABEL_TEMPLATE = "sws.template-hash"
LABEL_PORT = "sws.port"

# Docker restarts a crashing replica a few times by itself (fast, with its own back-off);
# after that the container stays exited and the agent reports it and takes over.
RESTART_POLICY = {"Name": "on-failure", "MaximumRetryCount": 3}
LOG_CONFIG = LogConfig(type="json-file", config={"max-size": "10m", "max-file": "3"})

_FRACTION = re.compile(r"\.(\d{1,6})\d*")


@dataclass(frozen=True)
class ContainerInfo:
    """A labelled container as the engine reports it."""

    id: str
    name: str
    labels: Mapping[str, str]
    state: str
    ip: str
    created: float
    started_at: float = 0.0
    exit_code: int | None = None


@dataclass(frozen=True)
class ContainerRequest:
    """What to create: the image, labels and wiring of one replica."""

    name: str
    image: str
    env: Mapping[str, str]
    labels: Mapping[str, str]
    volume: str | None = None
    mount: str | None = None


class ForeignVolume(RuntimeFailure):
    """A service volume of this name exists, made by another SWS instance."""


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """Turn docker SDK and transport errors into ours, naming the operation."""
    try:
        yield
    except SwsError:
        raise
    except docker.errors.ImageNotFound as e:
        raise NotFound(f"{what}: {_explain(e)}") from None
    except docker.errors.NotFound as e:
        raise NotFound(f"{what}: {_explain(e)}") from None
    except docker.errors.APIError as e:
        if e.status_code == 409:
            raise Conflict(f"{what}: {_explain(e)}") from None
        raise RuntimeFailure(f"{what}: {_explain(e)}") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
        raise Unavailable(f"{what}: Docker Engine unreachable: {type(e).__name__}") from None
    except docker.errors.DockerException as e:
        raise Unavailable(f"{what}: {e}") from None


def _explain(e: docker.errors.APIError) -> str:
    explanation = e.explanation
    if isinstance(explanation, bytes):
        explanation = explanation.decode(errors="replace")
    return str(explanation or e)


def parse_time(text: str) -> float:
    """Docker's RFC 3339 timestamps (nanoseconds, Z) as epoch seconds; 0 for the zero time."""
    if not text or text.startswith("0001-"):
        return 0.0
    text = _FRACTION.sub(lambda m: "." + m.group(1), text.replace("Z", "+00:00"), count=1)
    return datetime.fromisoformat(text).timestamp()


class Runtime:
    """The Docker Engine, seen through the labels of one SWS instance."""

    def __init__(
        self, instance: str, network: str, base_url: str | None = None, timeout: float = 60
    ) -> None:
        self.instance = instance
        self.network = network
        with _translated("connect"):
            if base_url:
                self._client = docker.client.DockerClient(base_url=base_url, timeout=int(timeout))
            else:
                self._client = docker.client.DockerClient.from_env(timeout=int(timeout))
        self._api = self._client.api

    def close(self) -> None:
        self._client.close()

    def labels(self, **extra: str) -> dict[str, str]:
        return {LABEL_MANAGED: "true", LABEL_INSTANCE: self.instance, **extra}

    def _filters(self) -> dict[str, Any]:
        return {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_INSTANCE}={self.instance}"]}

    def ping(self) -> None:
        with _translated("ping"):
            self._api.ping()

    # -- network ------------------------------------------------------------------------------

    def ensure_network(self) -> str:
        """Create the services network if missing (a labelled bridge); return its id."""
        with _translated(f"network {self.network}"):
            found = self._api.networks(names=[self.network])
            for net in found:
                if net.get("Name") == self.network:
                    return str(net["Id"])
            try:
                created = self._api.create_network(
                    self.network, driver="bridge", labels=self.labels(), check_duplicate=True
                )
            except docker.errors.APIError as e:
                if e.status_code != 409:
                    raise
                return self.ensure_network()
            return str(created["Id"])

    def remove_network(self) -> None:
        with _translated(f"network {self.network}"), contextlib.suppress(docker.errors.NotFound):
            self._api.remove_network(self.network)

    # -- containers ---------------------------------------------------------------------------

    def list_containers(self) -> list[ContainerInfo]:
        """Every container of this instance, in any state, from one list call."""
        with _translated("list containers"):
            rows = self._api.containers(all=True, filters=self._filters())
        out: list[ContainerInfo] = []
        for row in rows:
            names = row.get("Names") or ["/"]
            networks = (row.get("NetworkSettings") or {}).get("Networks") or {}
            ip = (networks.get(self.network) or {}).get("IPAddress") or ""
            out.append(
                ContainerInfo(
                    id=str(row["Id"]),
                    name=str(names[0]).lstrip("/"),
                    labels=dict(row.get("Labels") or {}),
                    state=str(row.get("State", "")),
                    ip=str(ip),
                    created=float(row.get("Created", 0)),
                )
            )
        return out

    def inspect_state(self, container_id: str) -> tuple[float, int | None]:
        """When the container last started, and its exit code if it is not running."""
        with _translated(f"inspect {container_id[:12]}"):
            state = self._api.inspect_container(container_id)["State"]
        started = parse_time(str(state.get("StartedAt", "")))
        running = bool(state.get("Running")) or bool(state.get("Restarting"))
        code = None if running else state.get("ExitCode")
        return started, (int(code) if code is not None else None)

    def create(self, request: ContainerRequest) -> str:
        """Create (not start) a container on the services network; Conflict if the name exists."""
        binds: dict[str, dict[str, str]] = {}
        if request.volume and request.mount:
            binds[request.volume] = {"bind": request.mount, "mode": "rw"}
        with _translated(f"create {request.name}"):
            host_config = self._api.create_host_config(
                binds=binds or None,
                restart_policy=RESTART_POLICY,
                log_config=LOG_CONFIG,
                # A tiny init as PID 1 forwards SIGTERM, so stops are graceful and quick.
                init=True,
            )
            networking = self._api.create_networking_config(
                {self.network: self._api.create_endpoint_config()}
            )
            created = self._api.create_container(
                image=request.image,
                name=request.name,
                environment=dict(request.env),
                labels=dict(request.labels),
                host_config=host_config,
                networking_config=networking,
                detach=True,
            )
        return str(created["Id"])

    def start(self, container_id: str) -> None:
        with _translated(f"start {container_id[:12]}"):
            self._api.start(container_id)

    def stop(self, container_id: str, timeout: float) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds; a missing container is fine."""
        with _translated(f"stop {container_id[:12]}"), contextlib.suppress(docker.errors.NotFound):
            self._api.stop(container_id, timeout=max(round(timeout), 0))

    def remove(self, container_id: str, force: bool = False) -> None:
        """Remove a container; one already gone (or going) is fine."""
        with _translated(f"remove {container_id[:12]}"):
            try:
                self._api.remove_container(container_id, force=force)
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as e:
                # "removal already in progress"
                if e.status_code == 409 and "in progress" in _explain(e):
                    return
                raise

    def container_id_by_name(self, name: str) -> str | None:
        with _translated(f"inspect {name}"):
            try:
                return str(self._api.inspect_container(name)["Id"])
            except docker.errors.NotFound:
                return None

    def logs_tail(self, container_id: str, lines: int = 10, max_line: int = 200) -> str:
        """The last lines of a container's output, each cut to `max_line` characters."""
        with _translated(f"logs {container_id[:12]}"):
            raw = self._api.logs(container_id, stdout=True, stderr=True, tail=lines)
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        cut = [ln if len(ln) <= max_line else ln[:max_line] + "..." for ln in text.splitlines()]
        return "\n".join(cut[-lines:])

    # -- images and volumes -------------------------------------------------------------------

    def has_image(self, ref: str) -> bool:
        with _translated(f"image {ref}"):
            try:
                self._api.inspect_image(ref)
            except docker.errors.ImageNotFound:
                return False
            except docker.errors.NotFound:
                return False
        return True

    def pull(self, ref: str) -> None:
        """Pull an image; NotFound when no registry has it (or none is reachable)."""
        repository, tag = _split_ref(ref)
        try:
            with _translated(f"pull {ref}"):
                self._api.pull(repository, tag=tag)
        except (RuntimeFailure, NotFound) as e:
            raise NotFound(f"image not found: {ref}") from e

    def ensure_volume(self, name: str, service: str) -> None:
        """Create the named volume if it does not exist; an existing one is used as it is.

        Unless another SWS instance on this engine made it: volume names carry no instance
        (`<service>-volume`), and two platforms must not share, or purge, each other's data.
        """
        with _translated(f"volume {name}"):
            try:
                attrs = self._api.inspect_volume(name)
            except docker.errors.NotFound:
                self._api.create_volume(name, labels=self.labels(**{LABEL_SERVICE: service}))
                # Two instances creating one name at once both succeed; look who won.
                attrs = self._api.inspect_volume(name)
        owner = self._other_owner(attrs)
        if owner is not None:
            raise ForeignVolume(
                f'volume {name} belongs to the SWS instance "{owner}" on this Docker Engine; '
                "service volumes are named <service>-volume, so two platforms on one engine "
                "cannot both have this service with a volume (rename the service, or remove "
                "the volume on the other platform)"
            )

    def remove_volume(self, name: str) -> bool:
        """Remove the named volume; False, leaving it, if another SWS instance made it."""
        with _translated(f"remove volume {name}"):
            try:
                attrs = self._api.inspect_volume(name)
            except docker.errors.NotFound:
                return True
            if self._other_owner(attrs) is not None:
                return False
            with contextlib.suppress(docker.errors.NotFound):
                self._api.remove_volume(name)
        return True

    def _other_owner(self, attrs: Mapping[str, Any]) -> str | None:
        """The other SWS instance whose labels a volume carries, if any."""
        labels = attrs.get("Labels") or {}
        owner = labels.get(LABEL_INSTANCE)
        if labels.get(LABEL_MANAGED) == "true" and owner is not None and owner != self.instance:
            return str(owner)
        return None

    def volume_exists(self, name: str) -> bool:
        with _translated(f"volume {name}"):
            try:
                self._api.inspect_volume(name)
            except docker.errors.NotFound:
                return False
        return True


def _split_ref(ref: str) -> tuple[str, str | None]:
    """Split `repo[:tag][@digest]` for the pull API (a registry port is not a tag)."""
    if "@" in ref:
        return ref, None
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, "latest"
