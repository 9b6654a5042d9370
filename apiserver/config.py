"""The apiserver's settings: plain values, filled from flags or the environment by the CLI."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True)
class Config:
    database_url: str
    listen: str = "0.0.0.0:8080"
    workers: int = 2
    threads: int = 4
    log_level: str = "info"
    # How long a request waits for a confdb connection before it is answered 503.
    db_timeout: float = 5.0
    max_body_bytes: int = 1 * MiB
    # How long start-up waits for confdb to accept connections; None waits for ever.
    startup_timeout: float | None = None
    access_log: bool = True
    # Domains the platform routes to itself (the API domain): no service may take them.
    reserved_domains: tuple[str, ...] = ()

    @property
    def pool_size(self) -> int:
        # One connection per request thread, plus one so /healthz is not starved by them.
        return self.threads + 1
