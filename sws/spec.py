"""The service spec, v1: one frozen type shared by swsctl, the apiserver and the agent.

A document looks like::

    apiVersion: v1
    spec:
      name: web
      port: 8081
      domain: web.example.com
      image: repo/image:tag
      volumeMount: /data        # optional
      env:                      # optional
        - name: KEY_1
          value: foo
      replicas: 1               # optional, 0..MAX_REPLICAS

Validation collects every broken rule with its field path instead of stopping at the first,
so a user fixes a file in one round. Unknown keys are errors everywhere: a typo never passes
silently. The spec is normalised when built (domain lowercased, env sorted by name), so two
documents that mean the same thing have the same canonical JSON and the same hash.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import yaml

from sws.errors import FieldError, SpecError

SUPPORTED_API_VERSIONS = ("v1",)
MAX_REPLICAS = 100
MAX_ENV_VARS = 1000
MAX_ENV_VALUE_BYTES = 32 * 1024
MAX_PATH_LENGTH = 4096

_DOCUMENT_KEYS = ("apiVersion", "spec")
_SPEC_KEYS = ("name", "port", "domain", "image", "volumeMount", "env", "replicas")
_ENV_KEYS = ("name", "value")

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DOMAIN_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Docker's reference grammar (distribution/reference), anchored.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_REGISTRY = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?)"
_IMAGE_NAME = rf"(?:{_REGISTRY}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_IMAGE_REFERENCE = re.compile(rf"^(?P<name>{_IMAGE_NAME})(?::{_TAG})?(?:@{_DIGEST})?$")


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str


@dataclass(frozen=True)
class ServiceSpec:
    """A validated, normalised service spec. Build it with `ServiceSpec.from_document`."""

    name: str
    port: int
    domain: str
    image: str
    volume_mount: str | None = None
    env: tuple[EnvVar, ...] = ()
    replicas: int = 1
    api_version: str = "v1"
    # Cached canonical form; not part of equality.
    _canonical: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        # Building the type directly must not bypass the rules: re-check through the parser.
        errors = _check_spec_values(self)
        if errors:
            raise SpecError(errors)
        object.__setattr__(self, "env", tuple(sorted(self.env, key=lambda e: e.name)))
        object.__setattr__(
            self,
            "_canonical",
            json.dumps(self.to_document(), sort_keys=True, separators=(",", ":")),
        )

    @classmethod
    def from_document(cls, document: object, path: str = "") -> ServiceSpec:
        """Validate a parsed document (dict) and build the spec, or raise SpecError."""
        errors: list[FieldError] = []
        spec = _build(document, path, errors)
        if errors or spec is None:
            raise SpecError(errors or [FieldError(path, "invalid document")])
        return spec

    def to_document(self) -> dict[str, Any]:
        """The document form: what a user writes and what the apiserver returns."""
        spec: dict[str, Any] = {
            "name": self.name,
            "port": self.port,
            "domain": self.domain,
            "image": self.image,
            "replicas": self.replicas,
        }
        if self.volume_mount is not None:
            spec["volumeMount"] = self.volume_mount
        if self.env:
            spec["env"] = [{"name": e.name, "value": e.value} for e in self.env]
        return {"apiVersion": self.api_version, "spec": spec}

    def canonical_json(self) -> str:
        """Sorted, compact JSON: equal specs give equal strings."""
        return self._canonical

    def spec_hash(self) -> str:
        """A stable hash of the whole spec."""
        return hashlib.sha256(self._canonical.encode()).hexdigest()[:16]

    def template_hash(self) -> str:
        """A stable hash of what shapes a container (image, port, env, volumeMount).

        Replicas and domain are left out: scaling or re-routing a service must not replace its
        running containers.
        """
        template = {
            "image": self.image,
            "port": self.port,
            "volumeMount": self.volume_mount,
            "env": [[e.name, e.value] for e in self.env],
        }
        text = json.dumps(template, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def volume_name(self) -> str | None:
        """The persistent volume's name, `<name>-volume`, when volumeMount is set."""
        return f"{self.name}-volume" if self.volume_mount is not None else None

    def with_replicas(self, replicas: int) -> ServiceSpec:
        return ServiceSpec(
            name=self.name,
            port=self.port,
            domain=self.domain,
            image=self.image,
            volume_mount=self.volume_mount,
            env=self.env,
            replicas=replicas,
            api_version=self.api_version,
        )


# -- parsing text ------------------------------------------------------------------------------


def parse_specs(text: str, source: str = "") -> list[ServiceSpec]:
    """Parse YAML or JSON text holding one or more spec documents.

    Several YAML documents (`---`) or a JSON (or YAML) list yield several specs. Every error
    in every document is collected; with more than one document, field paths start with
    `documents[i].`. Names and domains must be unique within the text.
    """
    try:
        documents = load_documents(text)
    except SpecError as e:
        raise SpecError(e.errors, source) from None
    if not documents:
        raise SpecError([FieldError("", "no service spec found")], source)
    many = len(documents) > 1
    errors: list[FieldError] = []
    specs: list[ServiceSpec] = []
    seen_names: dict[str, int] = {}
    seen_domains: dict[str, int] = {}
    for i, document in enumerate(documents):
        prefix = f"documents[{i}]." if many else ""
        before = len(errors)
        spec = _build(document, prefix.rstrip("."), errors)
        if spec is None or len(errors) != before:
            continue
        if spec.name in seen_names:
            errors.append(
                FieldError(
                    f"{prefix}spec.name",
                    f'"{spec.name}" is also declared in documents[{seen_names[spec.name]}]',
                )
            )
        elif spec.domain in seen_domains:
            errors.append(
                FieldError(
                    f"{prefix}spec.domain",
                    f'"{spec.domain}" is also declared in documents[{seen_domains[spec.domain]}]',
                )
            )
        else:
            seen_names[spec.name] = i
            seen_domains[spec.domain] = i
            specs.append(spec)
    if errors:
        raise SpecError(errors, source)
    return specs


def load_documents(text: str) -> list[object]:
    """Turn YAML or JSON text into a list of documents (empty YAML documents are skipped)."""
    try:
        return _load_documents(text)
    except ValueError as e:
        # Python refuses to read integers of more than a few thousand digits.
        if "integer string conversion" in str(e):
            raise SpecError([FieldError("", "a number in the document is too large")]) from None
        raise


def _load_documents(text: str) -> list[object]:
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            loaded = json.loads(text, parse_float=Decimal)
        except json.JSONDecodeError as e:
            # Flow-style YAML also starts with a bracket; give YAML a chance before failing.
            try:
                return _flatten(_load_yaml(text))
            except SpecError:
                raise SpecError(
                    [FieldError("", f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}")]
                ) from None
        return _flatten([loaded])
    return _flatten(_load_yaml(text))


def _flatten(documents: list[object]) -> list[object]:
    out: list[object] = []
    for document in documents:
        if document is None:
            continue
        if isinstance(document, list):
            out.extend(document)
        else:
            out.append(document)
    return out


def _load_yaml(text: str) -> list[object]:
    loader = yaml.SafeLoader(text)
    documents: list[object] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            _keep_env_values_verbatim(node)
            documents.append(loader.construct_document(node))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise SpecError([FieldError("", f"invalid YAML{where}: {e.problem}")]) from None
    except yaml.YAMLError as e:
        raise SpecError([FieldError("", f"invalid YAML: {e}")]) from None
    finally:
        loader.dispose()
    return documents


_YAML_STR_TAG = "tag:yaml.org,2002:str"
_YAML_SCALAR_TAGS = {
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
}


def _keep_env_values_verbatim(node: yaml.Node) -> None:
    """Read unquoted env values as the text the user wrote.

    YAML 1.1 would turn `0755` into 493, `1.10` into 1.1 and `yes` into true; an environment
    variable is a string, so the written text is what the user meant.
    """
    for spec_node in _mapping_values(node, "spec"):
        for env_node in _mapping_values(spec_node, "env"):
            if not isinstance(env_node, yaml.SequenceNode):
                continue
            for item in env_node.value:
                for value_node in _mapping_values(item, "value"):
                    if isinstance(value_node, yaml.ScalarNode) and value_node.tag in (
                        _YAML_SCALAR_TAGS
                    ):
                        value_node.tag = _YAML_STR_TAG


def _mapping_values(node: yaml.Node, key: str) -> Iterator[yaml.Node]:
    nodes = node.value if isinstance(node, yaml.SequenceNode) else [node]
    for n in nodes:
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                if isinstance(k, yaml.ScalarNode) and k.value == key:
                    yield v


# -- validating documents ----------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | Decimal | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _check_keys(
    obj: Mapping[object, object], allowed: tuple[str, ...], path: str, errors: list[FieldError]
) -> None:
    for key in obj:
        if key not in allowed:
            errors.append(FieldError(path, f"unknown key {key!r} (allowed: {', '.join(allowed)})"))


def _build(document: object, path: str, errors: list[FieldError]) -> ServiceSpec | None:
    if not isinstance(document, dict):
        errors.append(
            FieldError(
                path, f"must be a mapping with apiVersion and spec, not {_describe(document)}"
            )
        )
        return None
    before = len(errors)
    _check_keys(document, _DOCUMENT_KEYS, path, errors)

    version = document.get("apiVersion")
    supported = ", ".join(SUPPORTED_API_VERSIONS)
    if "apiVersion" not in document:
        errors.append(FieldError(path, f"missing 'apiVersion' (supported: {supported})"))
    elif version not in SUPPORTED_API_VERSIONS:
        shown = json.dumps(version) if isinstance(version, str) else _describe(version)
        errors.append(
            FieldError(
                _join(path, "apiVersion"), f"{shown} is not supported (supported: {supported})"
            )
        )

    spec_path = _join(path, "spec")
    if "spec" not in document:
        errors.append(FieldError(path, "missing 'spec'"))
        return None
    spec = document["spec"]
    if not isinstance(spec, dict):
        errors.append(FieldError(spec_path, f"must be a mapping, not {_describe(spec)}"))
        return None
    _check_keys(spec, _SPEC_KEYS, spec_path, errors)
    for key in ("name", "port", "domain", "image"):
        if spec.get(key) is None:
            errors.append(FieldError(spec_path, f"missing '{key}'"))

    name = _string(spec, "name", spec_path, errors)
    if name is not None:
        _check_name(name, _join(spec_path, "name"), errors)
    port = _integer(spec, "port", spec_path, errors)
    if port is not None and not 1 <= port <= 65535:
        errors.append(FieldError(_join(spec_path, "port"), f"{port} is not a port (1-65535)"))
    domain = _string(spec, "domain", spec_path, errors)
    if domain is not None:
        domain = normalize_domain(domain)
        _check_domain(domain, _join(spec_path, "domain"), errors)
    image = _string(spec, "image", spec_path, errors)
    if image is not None:
        _check_image(image, _join(spec_path, "image"), errors)
    volume_mount = _string(spec, "volumeMount", spec_path, errors)
    if volume_mount is not None:
        volume_mount = _check_mount(volume_mount, _join(spec_path, "volumeMount"), errors)
    replicas = _integer(spec, "replicas", spec_path, errors)
    if replicas is not None and not 0 <= replicas <= MAX_REPLICAS:
        errors.append(
            FieldError(
                _join(spec_path, "replicas"), f"{replicas} is out of range (0-{MAX_REPLICAS})"
            )
        )
    env = _env(spec.get("env"), _join(spec_path, "env"), errors)

    if len(errors) != before or None in (name, port, domain, image):
        return None
    assert name is not None and port is not None and domain is not None and image is not None
    return ServiceSpec(
        name=name,
        port=port,
        domain=domain,
        image=image,
        volume_mount=volume_mount,
        env=env,
        replicas=1 if replicas is None else replicas,
        api_version=str(version),
    )


def _string(
    spec: Mapping[str, object], key: str, path: str, errors: list[FieldError]
) -> str | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        errors.append(FieldError(_join(path, key), f"must be a string, not {_describe(value)}"))
        return None
    return value


def _integer(
    spec: Mapping[str, object], key: str, path: str, errors: list[FieldError]
) -> int | None:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, Decimal):
        # A JSON number like 1e999999999 would become an int of a billion digits: bound the
        # magnitude before converting. Every integer field here is far below 10**18.
        if not value.is_finite() or value.adjusted() > 18:
            errors.append(FieldError(_join(path, key), "is not a number in range"))
            return None
        if value == value.to_integral_value():
            return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        errors.append(FieldError(_join(path, key), f"must be an integer, not {_describe(value)}"))
        return None
    return value


def _check_name(name: str, path: str, errors: list[FieldError]) -> None:
    if not _DNS_LABEL.match(name):
        errors.append(
            FieldError(
                path,
                f"{json.dumps(name)} is not a DNS label (lowercase letters, digits and '-', "
                "starting and ending with a letter or digit, at most 63 characters)",
            )
        )


def normalize_domain(domain: str) -> str:
    """Domains are matched case-insensitively and a trailing dot is ignored."""
    return domain.strip().lower().removesuffix(".")


def _check_domain(domain: str, path: str, errors: list[FieldError]) -> None:
    shown = json.dumps(domain)
    labels = domain.split(".")
    if not domain or len(domain) > 253 or not all(_DOMAIN_LABEL.match(label) for label in labels):
        errors.append(
            FieldError(
                path,
                f"{shown} is not a valid DNS name (labels of letters, digits and '-', "
                "each at most 63 characters, at most 253 in all)",
            )
        )
    elif labels[-1].isdigit():
        errors.append(FieldError(path, f"{shown} is an IP address, not a DNS name"))


def _check_image(image: str, path: str, errors: list[FieldError]) -> None:
    match = _IMAGE_REFERENCE.match(image)
    if not match or len(match.group("name")) > 255:
        errors.append(
            FieldError(
                path,
                f"{json.dumps(image)} is not a valid Docker image reference "
                "([registry/]repository[:tag][@digest], repository in lowercase)",
            )
        )


def _check_mount(mount: str, path: str, errors: list[FieldError]) -> str | None:
    shown = json.dumps(mount)
    if not mount.startswith("/"):
        errors.append(FieldError(path, f"{shown} is not an absolute path"))
        return None
    if "\x00" in mount or len(mount) > MAX_PATH_LENGTH:
        errors.append(FieldError(path, f"{shown} is not a valid path"))
        return None
    parts = [p for p in mount.split("/") if p]
    if any(p in (".", "..") for p in parts):
        errors.append(FieldError(path, f"{shown} must not contain '.' or '..' components"))
        return None
    if not parts:
        errors.append(FieldError(path, "cannot mount a volume over '/'"))
        return None
    return "/" + "/".join(parts)


def _env(value: object, path: str, errors: list[FieldError]) -> tuple[EnvVar, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        errors.append(
            FieldError(path, f"must be a list of {{name, value}}, not {_describe(value)}")
        )
        return ()
    if len(value) > MAX_ENV_VARS:
        errors.append(FieldError(path, f"has {len(value)} entries (at most {MAX_ENV_VARS})"))
        return ()
    out: list[EnvVar] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(value):
        item_path = f"{path}[{i}]"
        if not isinstance(item, dict):
            errors.append(
                FieldError(
                    item_path, f"must be a mapping with name and value, not {_describe(item)}"
                )
            )
            continue
        ok = True
        for key in item:
            if key not in _ENV_KEYS:
                errors.append(FieldError(item_path, f"unknown key {key!r}"))
                ok = False
        for key in _ENV_KEYS:
            if key not in item:
                errors.append(FieldError(item_path, f"missing '{key}'"))
                ok = False
        name = item.get("name")
        if "name" in item:
            if not isinstance(name, str):
                errors.append(
                    FieldError(f"{item_path}.name", f"must be a string, not {_describe(name)}")
                )
                ok = False
            elif not _ENV_NAME.match(name):
                errors.append(
                    FieldError(
                        f"{item_path}.name",
                        f"{json.dumps(name)} is not a valid variable name "
                        "(letters, digits and '_', not starting with a digit)",
                    )
                )
                ok = False
            elif name in seen:
                errors.append(
                    FieldError(
                        f"{item_path}.name",
                        f"{json.dumps(name)} is already set by {path}[{seen[name]}]",
                    )
                )
                ok = False
            else:
                seen[name] = i
        text = (
            _env_value(item.get("value"), f"{item_path}.value", errors) if "value" in item else None
        )
        if ok and text is not None and isinstance(name, str):
            out.append(EnvVar(name, text))
    return tuple(out)


def _env_value(value: object, path: str, errors: list[FieldError]) -> str | None:
    # Never echo the value itself: env values are where secrets live.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value
    elif isinstance(value, int | Decimal):
        text = str(value)
    elif isinstance(value, float):
        text = repr(value)
    else:
        errors.append(
            FieldError(path, f"must be a string, number or boolean, not {_describe(value)}")
        )
        return None
    if "\x00" in text:
        errors.append(FieldError(path, "must not contain a NUL character"))
        return None
    if len(text.encode()) > MAX_ENV_VALUE_BYTES:
        errors.append(FieldError(path, f"is longer than {MAX_ENV_VALUE_BYTES} bytes"))
        return None
    return text


def _check_spec_values(spec: ServiceSpec) -> list[FieldError]:
    """Rules re-checked when the type is built directly (not through a document).

    The same checks as a document's, so a spec built in code cannot hold what a file may not.
    """
    errors: list[FieldError] = []
    for key, value in (("name", spec.name), ("domain", spec.domain), ("image", spec.image)):
        if not isinstance(value, str):
            errors.append(FieldError(f"spec.{key}", f"must be a string, not {_describe(value)}"))
    if isinstance(spec.name, str):
        _check_name(spec.name, "spec.name", errors)
    if isinstance(spec.domain, str):
        if spec.domain != normalize_domain(spec.domain):
            errors.append(FieldError("spec.domain", f"{spec.domain!r} is not normalised"))
        else:
            _check_domain(spec.domain, "spec.domain", errors)
    if isinstance(spec.image, str):
        _check_image(spec.image, "spec.image", errors)
    if isinstance(spec.port, bool) or not isinstance(spec.port, int) or not 1 <= spec.port <= 65535:
        errors.append(FieldError("spec.port", f"{spec.port!r} is not a port (1-65535)"))
    if (
        isinstance(spec.replicas, bool)
        or not isinstance(spec.replicas, int)
        or not 0 <= spec.replicas <= MAX_REPLICAS
    ):
        errors.append(
            FieldError("spec.replicas", f"{spec.replicas!r} is out of range (0-{MAX_REPLICAS})")
        )
    if spec.api_version not in SUPPORTED_API_VERSIONS:
        errors.append(FieldError("apiVersion", f"{spec.api_version!r} is not supported"))
    return errors
