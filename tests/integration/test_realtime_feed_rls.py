"""The change feed's batched RLS checks against real Postgres: who gets which row, asked how often.

The feed sends a batch's checks as one query text that switches role and claims
per identity (``rls.py``). These tests drive a real slot on a migrated database
with several identities in one batch, so a switch that leaked from one identity
to the next, or a shared answer between different claims, would deliver a row
to someone its policy hides it from.
"""

from __future__ import annotations

import json
import time
import uuid

import psycopg
import pytest
from progressbench.transports.realtime import rls
from progressbench.transports.realtime.auth import Claims
from progressbench.transports.realtime.feed import SNAPSHOT_EVERY, Binding, ChangeFeed, Subscriber

from tests.helpers import wait_until


class Inbox:
    """A sink that keeps the (job_id, seq) of every change pushed to it."""

    def __init__(self, topic: str) -> None:
        self._topic = topic
        self.rows: list[tuple[str, int]] = []

    @property
    def topic(self) -> str:
        return self._topic

    def push_change(self, ids: list[int], data_json: str) -> None:
        record = json.loads(data_json)["record"]
        self.rows.append((record["job_id"], record["seq"]))


def claims(role: str, sub: str | None = None, **extra: str) -> Claims:
    raw: dict[str, object] = {"role": role, "exp": time.time() + 600, **extra}
    if sub is not None:
        raw["sub"] = sub
    return Claims(raw)


def listen(feed: ChangeFeed, name: str, who: Claims) -> Inbox:
    inbox = Inbox(f"realtime:{name}")
    feed.add(Subscriber(inbox, (Binding(1, "public", "job_events", "INSERT"),), who))
    return inbox


def insert_events(url: str, counts: dict[str, int]) -> dict[str, str]:
    """One job per owner with ``count`` events each, all in one transaction (so in one slot pass)."""
    jobs = {owner: str(uuid.uuid4()) for owner in counts}
    with psycopg.connect(url) as conn, conn.transaction():
        for owner, count in counts.items():
            conn.execute(
                "INSERT INTO jobs (id, owner, transport, total_steps, spec) "
                "VALUES (%s, %s, 'realtime', %s, '{}')",
                (jobs[owner], owner, count),
            )
            for seq in range(1, count + 1):
                conn.execute(
                    "INSERT INTO job_events (job_id, seq, owner, kind, message) "
                    "VALUES (%s, %s, %s, 'step', 'x')",
                    (jobs[owner], seq, owner),
                )
    return jobs


async def test_one_batch_of_many_identities_delivers_each_row_only_where_rls_allows(
    database_url: str,
) -> None:
    feed = ChangeFeed(database_url, slot=f"pb_rls_{uuid.uuid4().hex[:8]}")
    await feed.start()
    try:
        alice = claims("authenticated", "alice")
        alice_tab1, alice_tab2 = listen(feed, "a1", alice), listen(feed, "a2", alice)
        alice_again = listen(feed, "a3", claims("authenticated", "alice", session_id="other"))
        bob = listen(feed, "b", claims("authenticated", "bob"))
        anon = listen(feed, "anon", claims("anon"))
        hostile = listen(feed, "h", claims("authenticated", "alice'); SELECT true; --\\"))
        jobs = insert_events(database_url, {"alice": 3, "bob": 2})

        async def delivered() -> bool:
            await feed.drain_once(flush=True)
            return len(alice_tab1.rows) == 3 and len(bob.rows) == 2

        await wait_until(delivered, 10, "alice's 3 rows and bob's 2")
        mine = [(jobs["alice"], s) for s in (1, 2, 3)]
        assert alice_tab1.rows == alice_tab2.rows == alice_again.rows == mine
        assert bob.rows == [(jobs["bob"], 1), (jobs["bob"], 2)]
        assert anon.rows == [] and hostile.rows == []
        # 5 rows x 5 identities (alice's two tabs share their claims), not 5 x 6 subscribers.
        assert feed.checks == 25
    finally:
        await feed.stop()


@pytest.mark.parametrize(
    "value", ["it's", "back\\slash", "\\'); SELECT 1; --", "E'x'", "ünïcødé ☃", "$$dollar$$"]
)
async def test_quoted_literals_reach_postgres_unchanged(database_url: str, value: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for conforming in ("on", "off"):
            await conn.execute(f"SET standard_conforming_strings = {conforming}")
            cur = await conn.execute(
                f"SELECT {rls.quote_literal(value)}, {rls.quote_literal(value)}::text = %s", (value,)
            )
            assert await cur.fetchone() == (value, True)


async def test_the_slots_restart_point_follows_the_feed(database_url: str) -> None:
    """The feed's running-transactions snapshots let ``restart_lsn`` pass the rows it consumed,
    so a slot read does not re-decode the WAL back to the bgwriter's last one (every 15 s)."""
    slot = f"pb_rls_{uuid.uuid4().hex[:8]}"
    feed = ChangeFeed(database_url, slot=slot)
    await feed.start()
    try:
        insert_events(database_url, {"alice": 2})
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            cur = await conn.execute("SELECT pg_current_wal_lsn()::text")
            row = await cur.fetchone()
            assert row is not None
            after_rows = row[0]

            async def passed() -> bool:
                for _ in range(SNAPSHOT_EVERY):
                    await feed.drain_once(flush=True)
                cur = await conn.execute(
                    "SELECT restart_lsn > %s::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
                    (after_rows, slot),
                )
                found = await cur.fetchone()
                return bool(found and found[0])

            await wait_until(passed, 10, "restart_lsn to pass the consumed rows")
        assert feed.snapshots
    finally:
        await feed.stop()
