"""Log lines as an event word followed by key=value fields."""

from __future__ import annotations

import logging

LOGGER_NAME = "sws.loadbalancer"


def _value(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\\\n\t'):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    return text


def line(event: str, **fields: object) -> str:
    return " ".join([event, *(f"{key}={_value(value)}" for key, value in fields.items())])


def emit(logger: logging.Logger, level: int, event: str, **fields: object) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, line(event, **fields))


def configure(level: str) -> None:
    """Send the balancer's log lines to stderr at ``level``."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z")
    )
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
