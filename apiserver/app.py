"""The Flask app factory: `create_app(config)` wires the store, blueprints and error handlers."""

from __future__ import annotations

from importlib import resources

from flask import Flask, Response, jsonify

from apiserver import errors, platform, services
from apiserver.config import Config
from apiserver.store import Store
from confdb.services import ping
from sws.errors import Unavailable

# /healthz answers quickly: a load balancer probing it must not queue behind a dead confdb.
HEALTH_TIMEOUT_S = 2.0


def create_app(config: Config) -> Flask:
    app = Flask("apiserver")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    # Keys in the order render.py builds them: name first, details last, as people read.
    app.json.sort_keys = False  # type: ignore[attr-defined]
    store = Store(config.database_url, max_size=config.pool_size, timeout=config.db_timeout)
    app.extensions["sws.store"] = store
    app.extensions["sws.config"] = config

    errors.register(app)
    app.register_blueprint(services.bp)
    app.register_blueprint(platform.bp)

    @app.get("/healthz")
    def healthz() -> Response:
        try:
            with store.transaction(timeout=HEALTH_TIMEOUT_S) as conn:
                ping(conn)
        except Unavailable as e:
            errors.log_unavailable(e)
            response = jsonify({"status": "unavailable", "error": errors.UNAVAILABLE_MESSAGE})
            response.status_code = 503
            response.headers["Retry-After"] = str(errors.RETRY_AFTER_S)
            return response
        return jsonify({"status": "ok"})

    openapi = resources.files("apiserver").joinpath("openapi.json").read_bytes()

    @app.get("/openapi.json")
    def openapi_document() -> Response:
        return Response(openapi, mimetype="application/json")

    return app
