"""/v1/services: apply, read, list and delete the caller's services."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from apiserver import logfmt, render
from apiserver.auth import authenticate
from apiserver.body import read_json
from apiserver.store import Store
from confdb import services as db
from sws.errors import FieldError, Forbidden, InvalidInput, NotFound, SpecError
from sws.spec import ServiceSpec

bp = Blueprint("services", __name__, url_prefix="/v1/services")

# A name outside this shape cannot belong to any service, so it is simply not found.
_SERVICE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_TRUE = ("1", "true", "yes")
_FALSE = ("", "0", "false", "no")


def _store() -> Store:
    store: Store = current_app.extensions["sws.store"]
    return store


def _flag(name: str) -> bool:
    value = request.args.get(name)
    if value is None:
        return False
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise InvalidInput(f"query parameter {name}: {value!r} is not one of 1, true, 0, false")


def _existing_name(name: str) -> str:
    if not _SERVICE_NAME.match(name):
        raise NotFound(f'service "{name}" not found')
    return name


def _json(body: dict[str, Any], status: int = 200) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response


@bp.get("")
def list_services() -> Response:
    want_all = _flag("all")
    user = authenticate()
    if want_all and not user.is_admin:
        raise Forbidden("listing every user's services (?all=1) is for admins only")
    with _store().transaction() as conn:
        views = db.list_services(conn, None if want_all else user)
    return _json({"services": [render.summary(v) for v in views]})


@bp.get("/<name>")
def get_service(name: str) -> Response:
    user = authenticate()
    with _store().transaction() as conn:
        detail = db.service_detail(conn, user, _existing_name(name))
    return _json(render.detail(detail))


@bp.put("/<name>")
def put_service(name: str) -> Response:
    user = authenticate()
    spec = _spec_for(name, read_json(request))
    with _store().transaction() as conn:
        applied = db.apply_service(conn, user, spec)
        detail = db.service_detail(conn, user, spec.name)
    logfmt.info(
        "service.applied",
        name=spec.name,
        user=user.name,
        generation=applied.record.generation,
        result=applied.result,
    )
    body = render.detail(detail)
    body["result"] = applied.result
    return _json(body, 201 if applied.result == "created" else 200)


def _spec_for(name: str, document: object) -> ServiceSpec:
    """The spec in `document`, which must be for the service named in the URL."""
    errors: list[FieldError] = []
    spec: ServiceSpec | None = None
    try:
        spec = ServiceSpec.from_document(document)
    except SpecError as e:
        errors.extend(e.errors)
    inner = document.get("spec") if isinstance(document, dict) else None
    declared = inner.get("name") if isinstance(inner, dict) else None
    if isinstance(declared, str) and declared != name:
        errors.append(
            FieldError("spec.name", f'"{declared}" does not match the URL\'s service "{name}"')
        )
    reserved: tuple[str, ...] = current_app.extensions["sws.config"].reserved_domains
    if spec is not None and spec.domain in reserved:
        errors.append(FieldError("spec.domain", f'"{spec.domain}" is reserved for the platform'))
    if errors or spec is None:
        raise SpecError(errors)
    return spec


@bp.delete("/<name>")
def delete_service(name: str) -> Response:
    purge = _flag("purge")
    user = authenticate()
    with _store().transaction() as conn:
        record = db.mark_deleting(conn, user, _existing_name(name), purge=purge)
    logfmt.info(
        "service.deleting",
        name=record.name,
        user=user.name,
        generation=record.generation,
        purge=record.purge_volume,
    )
    return _json(render.deletion(record), 202)
