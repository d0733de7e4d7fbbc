"""One embedded PostgreSQL per test session, and a fresh database cloned for each user of it.

``initdb`` plus a server start plus the migrations cost seconds; ``CREATE
DATABASE ... TEMPLATE`` of an already migrated database costs tens of
milliseconds. So a session (each pytest-xdist worker is its own session)
starts one server, migrates one template database once, and every test or
module that needs a store gets its own clone and hands it to the stack as an
external database (``StackSettings.database_url`` / ``--database-url``).
Clones are as isolated as separate servers for everything the testbed
keeps per database: tables, the ``supabase_realtime`` publication, RLS.

Two things are cluster-wide and need care. Roles (``anon``,
``authenticated``) are created by the template's migration and shared,
which is fine. Replication slots are named per cluster: the realtime
service's slot is ``pb_realtime`` in whichever database it serves, so at
most one realtime service per server may run at a time (tests in one
session run one after another) — and a logical slot left in a database
blocks ``DROP DATABASE``, so :meth:`Databases.drop` removes the clone's
slots first.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from progressbench.app.schema import migrate
from progressbench.kit.database import EmbeddedPostgres
from tests.helpers import UNIT, wait_for

TEMPLATE = "pb_template"


@dataclass
class Databases:
    """The session's server; :meth:`clone` hands out migrated databases."""

    server: EmbeddedPostgres
    _numbers: Iterator[int] = field(default_factory=itertools.count)

    @classmethod
    def start(cls, log_path: Path) -> Databases:
        server = EmbeddedPostgres(log_path)
        server.start(timeout_s=60 * UNIT)
        databases = cls(server)
        try:
            with psycopg.connect(server.url, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
            migrate(databases.url(TEMPLATE))
        except BaseException:
            server.stop()
            raise
        return databases

    def stop(self) -> None:
        self.server.stop()

    def url(self, name: str) -> str:
        return self.server.url_for(name)

    def create(self, label: str = "t", *, migrated: bool = True) -> str:
        """A new database, with every migration applied unless ``migrated`` is false; its URL."""
        name = f"{label[:40]}_{next(self._numbers)}"
        source = TEMPLATE if migrated else "template1"
        with psycopg.connect(self.server.url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(source))
            )
        return self.url(name)

    def drop(self, url: str) -> None:
        """Drop a clone, whoever is still connected; first end the holders of its replication
        slots (DROP DATABASE refuses while a slot is in use, even WITH (FORCE))."""
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.server.url, autocommit=True) as conn:

            def slots_gone() -> bool:
                slots = conn.execute(
                    "SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = %s", (name,)
                ).fetchall()
                for slot, pid in slots:
                    if pid is not None:  # the slot goes on a later pass, once its holder has
                        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                        continue
                    with contextlib.suppress(psycopg.errors.ObjectInUse, psycopg.errors.UndefinedObject):
                        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                return not slots

            wait_for(slots_gone, 10, f"the replication slots of {name} to go")
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))

    @contextlib.contextmanager
    def clone(self, label: str = "t", *, migrated: bool = True) -> Iterator[str]:
        """A fresh database for the ``with`` block (see :meth:`create`), dropped afterwards."""
        url = self.create(label, migrated=migrated)
        try:
            yield url
        finally:
            self.drop(url)
