"""Probe 6 (second half): each service connects as its own Postgres role, with only the grants it uses.

Before, every service connected with the superuser's URL: the rooms could read
every job, any service the sign-in table's password hashes, the API the queue's
tasks. Now the supervisor gives each service a role of its own
(:mod:`progressbench.kit.roles`) and these reads are refused by the server.
"""

from __future__ import annotations

import logging
import uuid

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from progressbench.app.schema import grants
from progressbench.app.supervisor import Stack
from progressbench.core.errors import ConfigError
from progressbench.kit.roles import drop_service_roles, parse_grants, provision, url_user
from tests.databases import Databases


def _url(stack: Stack, role: str) -> str:
    return stack.services[role].config.database_url


def _refused(url: str, query: str) -> None:
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(query)


def _allowed(url: str, query: str) -> None:
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(query)


def test_every_service_has_its_own_unprivileged_role(full_stack: Stack) -> None:
    admin = url_user(full_stack.database_url)
    users = {role: url_user(_url(full_stack, role)) for role in full_stack.services}
    assert {"api", "worker", "queue", "rooms", "realtime"} <= set(users)
    assert admin not in users.values()
    assert len(set(users.values())) == len(users), users
    with psycopg.connect(full_stack.database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication "
            "FROM pg_roles WHERE rolname = ANY(%s)",
            (list(users.values()),),
        ).fetchall()
    found = {name: flags for name, *flags in rows}
    assert set(found) == set(users.values())
    for role, user in users.items():
        superuser, createrole, createdb, bypassrls, replication = found[user]
        assert not (superuser or createrole or createdb), role
        # The store's writers are the backend (Supabase's service_role): job_events has RLS.
        assert bypassrls == (role in ("api", "worker")), role
        # Logical decoding needs REPLICATION; nobody else gets it.
        assert replication == (role == "realtime"), role


def test_only_the_api_reads_password_hashes(full_stack: Stack) -> None:
    for role in full_stack.services:
        query = "SELECT password_hash FROM auth_users"
        if role == "api":
            _allowed(_url(full_stack, role), query)
        else:
            _refused(_url(full_stack, role), query)
            _refused(_url(full_stack, role), "SELECT token_digest FROM auth_refresh_tokens")


def test_the_rooms_read_and_write_nothing(full_stack: Stack) -> None:
    rooms = _url(full_stack, "rooms")
    _refused(rooms, "SELECT * FROM jobs")
    _refused(rooms, "SELECT * FROM job_events")
    _refused(rooms, "SELECT * FROM relay_tasks")
    _refused(rooms, f"UPDATE jobs SET status = 'done' WHERE id = '{uuid.uuid4()}'")


def test_the_queues_tables_are_the_queues_alone(full_stack: Stack) -> None:
    for role in ("api", "worker", "realtime"):
        _refused(_url(full_stack, role), "SELECT * FROM relay_tasks")
        _refused(
            _url(full_stack, role), "INSERT INTO relay_signing_keys (kid, public_jwk) VALUES ('x', '{}')"
        )
    queue = _url(full_stack, "queue")
    _allowed(queue, "SELECT count(*) FROM relay_tasks")
    _refused(queue, "SELECT * FROM jobs")
    _refused(queue, "SELECT * FROM step_runs")


def test_the_worker_cannot_create_jobs_nor_read_users(full_stack: Stack) -> None:
    worker = _url(full_stack, "worker")
    _allowed(worker, "SELECT count(*) FROM jobs")
    _refused(
        worker,
        "INSERT INTO jobs (id, owner, transport, spec, total_steps) "
        f"VALUES ('{uuid.uuid4()}', 'x', 'polling', '{{}}', 1)",
    )
    _refused(worker, "SELECT email FROM auth_users")


def test_the_realtime_server_sees_rows_only_as_a_subscriber(full_stack: Stack) -> None:
    """As itself it reads no table; it may only become anon/authenticated (RLS applies)."""
    realtime = _url(full_stack, "realtime")
    _refused(realtime, "SELECT * FROM job_events")
    _refused(realtime, "SELECT * FROM jobs")
    with psycopg.connect(realtime, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT set_config('role', 'authenticated', true)")
        assert conn.execute("SELECT count(*) FROM job_events").fetchone() == (0,)  # no claims: no rows
    _refused(realtime, "SET ROLE postgres")
    # The one built-in it is granted (the slot's restart point); others stay superuser-only.
    with psycopg.connect(realtime, autocommit=True) as conn:
        assert conn.execute("SELECT pg_log_standby_snapshot() IS NOT NULL").fetchone() == (True,)
    _refused(realtime, "SELECT pg_switch_wal()")


def test_a_user_who_cannot_create_roles_keeps_the_shared_url(
    databases: Databases, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An external DATABASE_URL without CREATEROLE: one clear warning, no failure, the same URL for all."""
    name, password = f"plain_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password))
        )
    plain = make_conninfo(database_url, user=name, password=password)
    try:
        with caplog.at_level(logging.WARNING, logger="progressbench.kit.roles"):
            outcome = provision(plain, ["api", "worker", "rooms"], grants())
        assert outcome.urls == {"api": plain, "worker": plain, "rooms": plain}
        assert outcome.roles == ()
        assert outcome.note is not None and "CREATE ROLE" in outcome.note
        assert [r.getMessage() for r in caplog.records] == [outcome.note]
    finally:
        drop_service_roles(database_url, [name])


def test_roles_are_dropped_with_their_grants(database_url: str) -> None:
    outcome = provision(database_url, ["api", "queue"], grants())
    assert len(outcome.roles) == 2
    drop_service_roles(database_url, outcome.roles)
    with psycopg.connect(database_url, autocommit=True) as conn:
        left = conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)", (list(outcome.roles),))
        assert left.fetchone() == (0,)


def test_a_bad_grants_file_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="unknown privilege"):
        parse_grants('[api.tables]\njobs = ["SELECT", "TRUNCATE"]\n', "x/grants.toml")
    with pytest.raises(ConfigError, match="attributes"):
        parse_grants('[api]\nattributes = ["SUPERUSER"]\n', "x/grants.toml")
    with pytest.raises(ConfigError, match="plain lower-case SQL name"):
        parse_grants('[api.tables]\n"jobs; DROP TABLE jobs" = ["SELECT"]\n', "x/grants.toml")
    with pytest.raises(ConfigError, match="functions must be among"):
        parse_grants('[api]\nfunctions = ["pg_reload_conf"]\n', "x/grants.toml")
