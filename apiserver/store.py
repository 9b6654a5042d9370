"""The apiserver's one way into confdb: a lazily opened pool and a transaction per use."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import psycopg

from confdb.db import create_pool, translate_errors


class Store:
    """Pooled confdb connections; lost connections and timeouts surface as Unavailable.

    The pool opens on first use, not when the app is built, so building an app touches no
    network, and a pool opened inside a gunicorn worker belongs to that worker alone. It keeps
    reconnecting in the background while confdb is down, so requests recover by themselves.
    """

    def __init__(self, url: str, *, max_size: int, timeout: float) -> None:
        self._url = url
        self._timeout = timeout
        self._pool = create_pool(url, min_size=1, max_size=max_size, name="confdb")
        self._lock = threading.Lock()
        self._opened = False

    def _open(self) -> None:
        if self._opened:
            return
        with self._lock:
            if not self._opened:
                self._pool.open(wait=False)
                self._opened = True

    @contextlib.contextmanager
    def transaction(self, timeout: float | None = None) -> Iterator[psycopg.Connection[Any]]:
        """A connection inside one transaction, committed when the block ends without error."""
        self._open()
        with (
            translate_errors(self._url),
            self._pool.connection(timeout=self._timeout if timeout is None else timeout) as conn,
            conn.transaction(),
        ):
            yield conn

    def close(self) -> None:
        with self._lock:
            if self._opened:
                self._pool.close()
                self._opened = False
