"""The test suite's own store plumbing: clones of the migrated template, and dropping them."""

from __future__ import annotations

import psycopg
import pytest

from tests.databases import Databases


def _one(url: str, query: str) -> object:
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def test_clones_arrive_migrated_and_do_not_share_rows(databases: Databases) -> None:
    """Each clone has every migration and the realtime publication; a row in one is not in another."""
    with databases.clone("a") as first, databases.clone("b") as second:
        assert _one(first, "SELECT count(*) FROM schema_migrations") == _one(
            second, "SELECT count(*) FROM schema_migrations"
        )
        assert _one(first, "SELECT count(*) FROM pg_publication WHERE pubname = 'supabase_realtime'") == 1
        with psycopg.connect(first) as conn:
            conn.execute(
                "INSERT INTO jobs (id, owner, transport, total_steps, spec) "
                "VALUES (gen_random_uuid(), 'alice', 'polling', 1, '{}')"
            )
        assert _one(first, "SELECT count(*) FROM jobs") == 1
        assert _one(second, "SELECT count(*) FROM jobs") == 0


def test_unmigrated_clone_has_no_schema(databases: Databases) -> None:
    """``migrated=False`` hands out an empty database, for code that must migrate it itself."""
    with databases.clone("empty", migrated=False) as url:
        assert _one(url, "SELECT to_regclass('public.jobs') IS NULL") is True


def test_dropping_a_clone_ends_whoever_holds_its_replication_slot(databases: Databases) -> None:
    """A slot in active use (a realtime service still consuming it) blocks DROP DATABASE even
    WITH (FORCE); drop ends the slot's holder first, and the slot goes with the database."""
    url = databases.create("slot")
    name = url.rsplit("/", 1)[1]
    holder = psycopg.connect(url, autocommit=True)
    try:
        holder.execute("SELECT pg_create_logical_replication_slot('pb_in_use', 'pgoutput', true)")
        with psycopg.connect(databases.server.url, autocommit=True) as admin:
            with pytest.raises(psycopg.errors.ObjectInUse):
                admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')  # what a plain drop meets
            databases.drop(url)
            gone = admin.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone()
            slots = admin.execute("SELECT slot_name FROM pg_replication_slots").fetchall()
    finally:
        holder.close()
    assert gone == (0,)
    assert ("pb_in_use",) not in slots
