"""Migrations against a real PostgreSQL: idempotent, and safe with two appliers at once."""

from __future__ import annotations

import threading

import psycopg
import pytest

from confdb.migrate import MigrationError, available_migrations, migrate

pytestmark = pytest.mark.postgres


def schema_snapshot(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            """
            SELECT table_name, column_name, data_type, is_nullable, column_default
            FROM information_schema.columns WHERE table_schema = 'public'
            ORDER BY table_name, column_name
            """
        ).fetchall()


def test_migrations_are_numbered_and_unique() -> None:
    migrations = available_migrations()
    assert migrations and migrations[0].version == 1
    assert [m.version for m in migrations] == sorted({m.version for m in migrations})


def test_applying_twice_changes_nothing(make_database) -> None:  # type: ignore[no-untyped-def]
    url = make_database()
    with psycopg.connect(url) as conn:
        first = migrate(conn)
    before = schema_snapshot(url)
    with psycopg.connect(url) as conn:
        second = migrate(conn)
    assert first == [f"{m.version:03d}_{m.name}" for m in available_migrations()]
    assert second == []
    assert schema_snapshot(url) == before
    tables = {row[0] for row in before}
    assert {
        "users",
        "services",
        "service_status",
        "replica_status",
        "events",
        "route_tables",
        "proxies",
        "schema_migrations",
    } <= tables


def test_two_appliers_at_once_give_one_result(make_database) -> None:  # type: ignore[no-untyped-def]
    url = make_database()
    barrier = threading.Barrier(4)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def apply() -> None:
        try:
            with psycopg.connect(url) as conn:
                barrier.wait()
                results.append(migrate(conn))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=apply) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    applied = [r for r in results if r]
    assert len(applied) == 1, results
    assert sorted(results, key=len) == [[], [], [], applied[0]]
    with psycopg.connect(url) as conn:
        count = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert count is not None and count[0] == len(available_migrations())


def test_a_changed_migration_is_refused(make_database) -> None:  # type: ignore[no-untyped-def]
    url = make_database()
    with psycopg.connect(url) as conn:
        migrate(conn)
        conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
        conn.commit()
        with pytest.raises(MigrationError, match="changed after it was applied"):
            migrate(conn)


def test_a_newer_schema_is_refused(make_database) -> None:  # type: ignore[no-untyped-def]
    url = make_database()
    with psycopg.connect(url) as conn:
        migrate(conn)
        conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'x')")
        conn.commit()
        with pytest.raises(MigrationError, match=r"\[999\]"):
            migrate(conn)


def test_a_services_change_notifies_in_its_transaction(database_url: str) -> None:
    with (
        psycopg.connect(database_url, autocommit=True) as listener,
        psycopg.connect(database_url) as writer,
    ):
        listener.execute("LISTEN sws_desired_state")
        with writer.transaction():
            user = writer.execute(
                "INSERT INTO users (name, token_hash) VALUES ('notify-user', 'h-notify') RETURNING id"
            ).fetchone()
            assert user is not None
            writer.execute(
                "INSERT INTO services (name, owner_id, domain, spec, spec_hash) "
                "VALUES ('notify-svc', %s, 'notify.example.com', '{}', 'h')",
                (user[0],),
            )
        names = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
        assert names == ["notify-svc"]
        with writer.transaction():
            writer.execute("UPDATE services SET generation = 2 WHERE name = 'notify-svc'")
            writer.execute("SELECT 1")
            # Roll back: a write that does not commit must wake nobody.
            raise_rollback = psycopg.Rollback()
            raise raise_rollback
        assert [n.payload for n in listener.notifies(timeout=0.5)] == []
