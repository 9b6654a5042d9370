"""Log lines as an event word followed by key=value fields, e.g.

    service.applied name=web user=alice generation=3 result=updated

Callers pass only names, numbers and states: never a token, a request body or an env value.
"""

from __future__ import annotations

import logging

LOGGER_NAME = "sws.apiserver"


def logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def _value(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\\\n\r\t'):
        escaped = (
            text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
        )
        return f'"{escaped}"'
    return text


def line(event: str, **fields: object) -> str:
    return " ".join([event, *(f"{key}={_value(value)}" for key, value in fields.items())])


def emit(level: int, event: str, **fields: object) -> None:
    log = logger()
    if log.isEnabledFor(level):
        log.log(level, line(event, **fields))


def info(event: str, **fields: object) -> None:
    emit(logging.INFO, event, **fields)


def warning(event: str, **fields: object) -> None:
    emit(logging.WARNING, event, **fields)


def configure(level: str) -> None:
    """Send the apiserver's log lines to stderr at `level`."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z")
    )
    log = logger()
    log.handlers[:] = [handler]
    log.setLevel(level.upper())
    log.propagate = False
    # The pool's own warnings name the server it cannot reach; keep them, in the same shape.
    pool_log = logging.getLogger("psycopg.pool")
    pool_log.handlers[:] = [handler]
    pool_log.setLevel(logging.WARNING)
    pool_log.propagate = False
