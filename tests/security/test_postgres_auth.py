"""Probe 6 (first half): the embedded Postgres wants the superuser's password (SCRAM), fresh per server.

Before the fix ``initdb --auth=trust`` let anyone who could reach the port
connect as the superuser with no password (and the chaos proxy could expose
that port beyond loopback). Per-service roles and grants: ``test_service_roles.py``.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.databases import Databases


def test_the_superuser_needs_the_password(databases: Databases) -> None:
    server = databases.server
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{server.port}/postgres", connect_timeout=5).close()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            f"postgresql://postgres:wrong@127.0.0.1:{server.port}/postgres", connect_timeout=5
        ).close()
    with psycopg.connect(server.url, connect_timeout=5) as conn:
        assert conn.execute("SHOW password_encryption").fetchone() == ("scram-sha-256",)


def test_the_password_is_not_in_the_servers_repr(databases: Databases) -> None:
    assert databases.server.password not in repr(databases.server)
