"""Versioned schema migrations, applied at start-up by every component that uses confdb.

Migrations are the files `migrations/NNN_name.sql`, applied in order, each once. The whole run
holds a transaction-scoped advisory lock, so two processes starting at once serialise: the
first applies, the second then finds everything applied and does nothing. A migration that
fails rolls back with the run, leaving the schema as it was. An applied migration whose file
has since changed is refused: the schema in the database would no longer match the code.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from sws.errors import SwsError

# An arbitrary, fixed key for pg_advisory_xact_lock: "sws-migrate".
MIGRATION_LOCK_KEY = 0x5357_5300_0001

_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


class MigrationError(SwsError):
    status = 500


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    """The migrations shipped with this package, in order."""
    found: list[Migration] = []
    for entry in resources.files("confdb").joinpath("migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version: {versions}")
    return found


def migrate(conn: psycopg.Connection[object]) -> list[str]:
    """Apply the migrations not yet applied; return the names of those applied now."""
    migrations = available_migrations()
    applied_now: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version     integer PRIMARY KEY,
                name        text NOT NULL,
                checksum    text NOT NULL,
                applied_at  timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        rows = conn.execute("SELECT version, name, checksum FROM schema_migrations").fetchall()
        applied = {int(r[0]): (str(r[1]), str(r[2])) for r in rows}  # type: ignore[index]
        known = {m.version for m in migrations}
        unknown = sorted(set(applied) - known)
        if unknown:
            raise MigrationError(
                f"confdb has migrations {unknown} that this version does not know: "
                "it was upgraded by a newer SWS"
            )
        for m in migrations:
            if m.version in applied:
                if applied[m.version][1] != m.checksum:
                    raise MigrationError(
                        f"migration {m.version:03d}_{m.name} changed after it was applied"
                    )
                continue
            conn.execute(m.sql.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (m.version, m.name, m.checksum),
            )
            applied_now.append(f"{m.version:03d}_{m.name}")
    return applied_now
