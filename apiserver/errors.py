"""One place that turns every failure into a JSON error response.

SwsError subclasses carry their own status; werkzeug's HTTP errors (404, 405, 413) keep
theirs; anything else is a bug, answered 500 and logged with its traceback.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from apiserver import logfmt
from apiserver.auth import InvalidToken
from sws.errors import SwsError, Unauthorized, Unavailable

UNAVAILABLE_MESSAGE = "confdb is unavailable; try again shortly"
RETRY_AFTER_S = 5


def register(app: Flask) -> None:
    app.register_error_handler(SwsError, _sws_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)


def _sws_error(e: SwsError) -> Response:
    if isinstance(e, Unavailable):
        log_unavailable(e)
        response = jsonify({"error": UNAVAILABLE_MESSAGE})
        response.status_code = 503
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response
    if e.status >= 500:
        logfmt.logger().error(
            logfmt.line("request.failed", method=request.method, path=request.path),
            exc_info=e,
        )
    else:
        logfmt.info(
            "request.rejected",
            method=request.method,
            path=request.path,
            status=e.status,
            error=e.message,
        )
    response = jsonify(e.to_json())
    response.status_code = e.status
    if isinstance(e, Unauthorized):
        challenge = 'Bearer realm="sws"'
        if isinstance(e, InvalidToken):
            challenge += ', error="invalid_token"'
        response.headers["WWW-Authenticate"] = challenge
    return response


def log_unavailable(e: Unavailable) -> None:
    # The detail names confdb's address: for the operator's log, not for API callers.
    logfmt.warning("confdb.unavailable", path=request.path, error=e.message)


def _http_error(e: HTTPException) -> Response:
    status = e.code or 500
    if isinstance(e, RequestEntityTooLarge):
        message = f"request body is larger than {_limit_text()}"
    else:
        message = e.description or e.name
    response = jsonify({"error": message})
    response.status_code = status
    # Keep what the HTTP error says beyond its body, e.g. 405's Allow.
    for name, value in e.get_headers():
        if name.lower() not in ("content-type", "content-length"):
            response.headers[name] = value
    return response


def _limit_text() -> str:
    limit = current_app.config.get("MAX_CONTENT_LENGTH") or 0
    if limit and limit % (1024 * 1024) == 0:
        return f"{limit // (1024 * 1024)} MiB"
    return f"{limit} bytes" if limit else "the limit"


def _unexpected(e: Exception) -> Response:
    # The traceback is for us; the caller learns only that it was not their fault.
    logfmt.logger().log(
        logging.ERROR,
        logfmt.line("request.failed", method=request.method, path=request.path),
        exc_info=e,
    )
    response = jsonify({"error": "internal error"})
    response.status_code = 500
    return response
