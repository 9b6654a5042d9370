"""/v1/platform: the admins' view of the route table version each proxy runs."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from apiserver import render
from apiserver.auth import authenticate, require_admin
from apiserver.store import Store
from confdb.services import platform_view

bp = Blueprint("platform", __name__, url_prefix="/v1/platform")


@bp.get("")
def get_platform() -> Response:
    user = authenticate()
    require_admin(user, "the platform view")
    store: Store = current_app.extensions["sws.store"]
    with store.transaction() as conn:
        view = platform_view(conn)
    return jsonify(render.platform(view))
