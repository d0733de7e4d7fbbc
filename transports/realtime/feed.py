"""The change feed: one logical replication slot, decoded, authorised per subscriber, fanned out.

Like Realtime's Postgres CDC poller: a ``pgoutput`` slot on the publication
``supabase_realtime`` is *consumed* with ``pg_logical_slot_get_binary_changes``
(so a change is delivered at most once and never replayed), woken by the
store's ``NOTIFY job_events`` with a slow fallback poll. Changes are handled
in commit order: one task reads the slot, one delivers the batches it read,
in order, on a session of its own (so a batch is checked while the next one
is read). For every change, every subscription whose
binding covers (schema, table, event) is checked under its own claims —
``set_config('role', ...)`` and ``set_config('request.jwt.claims', ...)``
inside a transaction, then ``SELECT exists(... WHERE <pk> = ...)`` — so
Postgres RLS decides, at poll time, what each subscriber may see (DELETEs
are not RLS-checked, as in Realtime); only then is its filter evaluated on
the row. Subscribers with the very same claims share one check per row; the
checks of one batch go out as one query text, one round trip (``rls.py``).

Lifecycle: :meth:`ChangeFeed.start` drops a stale slot of the same name and
creates a fresh one (changes from before it are never seen);
:meth:`ChangeFeed.stop` drops it. One process per database may own it.

WAL flush: the store commits with ``synchronous_commit=off``, so a NOTIFY can
arrive before the commit's WAL is flushed and decodable. On a wake-up this
session writes a tiny logical message that flushes the WAL up to that point:
on Postgres 17+ a non-transactional one with ``flush => true``, in the same
query text as the slot read; before 17 a transactional one committed with
``synchronous_commit=on``, one round trip earlier.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg
from progressbench.transports.realtime import rls
from progressbench.transports.realtime.auth import Claims
from progressbench.transports.realtime.filters import Condition, matches, norm_text
from progressbench.transports.realtime.pgoutput import Change, Decoder

from progressbench.kit.store import NOTIFY_CHANNEL

log = logging.getLogger(__name__)

SLOT = "pb_realtime"
PUBLICATION = "supabase_realtime"
BATCH = 1000
#: Postgres 17 added ``pg_logical_emit_message(..., flush)``: a flush without a commit.
FLUSH_IN_MESSAGE = 170000
FLUSH_MESSAGE = "SELECT pg_logical_emit_message(false, 'pb-realtime', '', true)"
#: Every this many flushing passes, a running-transactions record goes first (see ``_poll``).
SNAPSHOT_EVERY = 16
SNAPSHOT = "SELECT pg_log_standby_snapshot()"


def _eq_key(binding: Binding) -> tuple[tuple[str, str], str] | None:
    if binding.table == "*":
        return None
    for cond in binding.conditions:
        if cond.op == "eq" and not cond.negate and isinstance(cond.value, str):
            return (binding.table, cond.column), norm_text(cond.value)
    return None


class Sink(Protocol):
    """Where a subscriber's changes go (a joined channel on a socket, framed by its serializer)."""

    @property
    def topic(self) -> str: ...

    def push_change(self, ids: list[int], data_json: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Binding:
    id: int
    schema: str
    table: str
    event: str
    conditions: tuple[Condition, ...] = ()

    def covers(self, change: Change) -> bool:
        """Schema, table and event only: what may be asked of RLS before any filter runs."""
        rel = change.relation
        if self.schema not in ("*", rel.schema) or self.table not in ("*", rel.table):
            return False
        return self.event in ("*", change.kind)

    def matches(self, change: Change) -> bool:
        if not self.covers(change):
            return False
        record = change.record if change.record is not None else (change.old_record or {})
        return matches(self.conditions, record)


@dataclass(eq=False)
class Subscriber:
    sink: Sink
    bindings: tuple[Binding, ...]
    claims: Claims
    claims_json: str = field(init=False)

    def __post_init__(self) -> None:
        self.set_claims(self.claims)

    def set_claims(self, claims: Claims) -> None:
        self.claims = claims
        self.claims_json = json.dumps(claims.raw)


@dataclass
class _TableInfo:
    rls: bool
    key_types: dict[str, str]


async def _quiet_decoding(conn: psycopg.AsyncConnection[Any]) -> None:
    """Keep this session's "starting logical decoding" LOG lines out of the server log.

    Postgres logs one LOG line (with DETAIL and STATEMENT) per slot read, i.e. per
    poll: 1.3 MB in 26 min (issue #13, probe 14). LOG ranks above ERROR in
    ``log_min_messages``, so only ``fatal`` silences it, for this session alone
    (its errors still reach this process). Needs superuser, which the embedded
    server gives; elsewhere the server's own setting stands.
    """
    try:
        await conn.execute("SET log_min_messages = fatal")
    except psycopg.errors.InsufficientPrivilege:
        log.info("cannot quieten logical decoding LOG lines (not a superuser)")


class ChangeFeed:
    def __init__(
        self,
        database_url: str,
        *,
        slot: str = SLOT,
        publication: str = PUBLICATION,
        fallback_s: float = 1.0,
        on_message: Callable[[int], None] | None = None,
    ) -> None:
        self._url = database_url
        self.slot = slot
        self.publication = publication
        self.fallback_s = fallback_s
        self._on_message = on_message or (lambda n: None)
        self.subscribers: set[Subscriber] = set()
        # Subscribers whose every binding has an ``eq`` condition on a named table, by
        # (table, column) then value: the phone pattern (``job_id=eq.<id>``) then costs
        # O(matching) per change instead of O(all subscribers). The rest are scanned.
        self._index: dict[tuple[str, str], dict[str, set[Subscriber]]] = {}
        self._scan: set[Subscriber] = set()
        self._decoder = Decoder()
        self._tables: dict[int, _TableInfo] = {}
        self._wake = asyncio.Event()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        #: The RLS checks' own session, so a batch is checked while the next one is read.
        self._check_conn: psycopg.AsyncConnection[Any] | None = None
        #: Batches read and not yet delivered, in commit order (one consumer: order kept).
        self._outbox: asyncio.Queue[list[Change]] = asyncio.Queue(2)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.changes = 0
        self.checks = 0
        #: False once ``pg_log_standby_snapshot()`` turned out missing or not granted.
        self.snapshots = True
        self._passes = 0

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        self._conn = conn
        await conn.execute("SET synchronous_commit = on")
        await _quiet_decoding(conn)
        cur = await conn.execute(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (self.slot,)
        )
        stale = await cur.fetchone()
        if stale is not None:
            log.warning("dropping stale replication slot %s", self.slot)
            if stale[0] is not None:
                await conn.execute("SELECT pg_terminate_backend(%s)", (stale[0],))
                await asyncio.sleep(0.2)
            await conn.execute("SELECT pg_drop_replication_slot(%s)", (self.slot,))
        await conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (self.slot,))
        self._check_conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        self._tasks = [
            asyncio.create_task(self._listen(), name="realtime-listen"),
            asyncio.create_task(self._poll(), name="realtime-poll"),
            asyncio.create_task(self._deliveries(), name="realtime-deliver"),
        ]

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        check, self._check_conn = self._check_conn, None
        if check is not None:
            await check.close()
        conn = self._conn
        self._conn = None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.execute("SELECT pg_drop_replication_slot(%s)", (self.slot,))
            await conn.close()

    def add(self, sub: Subscriber) -> None:
        self.subscribers.add(sub)
        keys = [_eq_key(b) for b in sub.bindings]
        if not keys or any(k is None for k in keys):
            self._scan.add(sub)
            return
        for key in keys:
            assert key is not None
            table_col, value = key
            self._index.setdefault(table_col, {}).setdefault(value, set()).add(sub)

    def remove(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        self._scan.discard(sub)
        for key in {_eq_key(b) for b in sub.bindings}:
            if key is None:
                continue
            table_col, value = key
            by_value = self._index.get(table_col, {})
            subs = by_value.get(value)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del by_value[value]
            if not by_value:
                self._index.pop(table_col, None)

    def candidates(self, change: Change) -> list[Subscriber]:
        """Subscribers that may match: every unindexed one, plus the indexed ones whose
        ``eq`` value equals the change's column (all of them when that column is not text)."""
        found: set[Subscriber] = set(self._scan)
        record = change.record if change.record is not None else (change.old_record or {})
        table = change.relation.table
        for (t, column), by_value in self._index.items():
            if t != table:
                continue
            value = record.get(column)
            if isinstance(value, str):
                found.update(by_value.get(norm_text(value), ()))
            else:
                for subs in by_value.values():
                    found.update(subs)
        return list(found)

    def wake(self) -> None:
        self._wake.set()

    # ----------------------------------------------------------------- tasks

    async def _listen(self) -> None:
        while not self._stopping:
            try:
                conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
                try:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._wake.set()
                    async for _ in conn.notifies():
                        self._wake.set()
                finally:
                    await conn.close()
            except (psycopg.Error, OSError) as exc:
                log.warning("realtime LISTEN connection lost: %r", exc)
                self._wake.set()
                await asyncio.sleep(0.5)

    async def _poll(self) -> None:
        """One decode pass per wake-up, another at once only while a pass comes back full.

        Each ``pg_logical_slot_get_binary_changes`` call re-reads the WAL from the
        slot's ``restart_lsn``, which Postgres advances only every few seconds (at
        its running-transactions records), so a pass costs in proportion to the
        WAL written lately, not to the changes it returns. A pass that came back
        short has emptied the slot up to the flushed WAL: commits made meanwhile
        NOTIFY and wake the next pass (with a flush), so an immediate second,
        empty pass would cost a full re-read for nothing.

        To keep that re-read short, every :data:`SNAPSHOT_EVERY` flushing passes
        start with ``pg_log_standby_snapshot()`` (Postgres 16+, granted in
        ``grants.toml``): it writes the running-transactions record the bgwriter
        otherwise writes every 15 s, the pass decodes it, and the slot's
        ``restart_lsn`` moves up to it when the pass confirms. Same query text, no
        extra round trip. Measured on a 3,000-transaction probe: a pass read 12.4 ms
        after 300 passes without it, 3.4 ms with it (restart lag 3.4 MB vs 160 kB).
        Without the grant or the function the feed goes on without it.
        """
        while not self._stopping:
            woken = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.fallback_s)
                woken = True
            self._wake.clear()
            try:
                flush = woken
                while True:
                    rows, changes = await self._read_once(flush=flush)
                    if changes:
                        await self._outbox.put(changes)
                    if rows < BATCH:
                        break
                    flush = False
            except psycopg.Error as exc:
                log.error("realtime poll failed: %r", exc)
                await asyncio.sleep(0.5)

    async def _deliveries(self) -> None:
        """Deliver the batches the poller read, in order, while it reads the next one.

        The slot read and a batch's RLS checks each take a round trip; on two
        sessions they overlap, so a change committed during a pass waits for the
        read in progress, not for the read and the checks of the batch before it.
        """
        while True:
            changes = await self._outbox.get()
            try:
                if self._check_conn is not None and self._check_conn.closed:
                    # A lost session would otherwise refuse every later check (nothing delivered).
                    self._check_conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
                await self._deliver(changes)
            except (psycopg.Error, OSError) as exc:
                log.error("realtime delivery failed, batch dropped: %r", exc)

    async def drain_once(self, *, flush: bool = False) -> int:
        """Consume one batch from the slot and deliver it; the number of slot rows read."""
        rows, changes = await self._read_once(flush=flush)
        if changes:
            await self._deliver(changes)
        return rows

    async def _read_once(self, *, flush: bool = False) -> tuple[int, list[Change]]:
        """Consume one batch from the slot: the number of slot rows read and the changes.

        ``flush`` first flushes the WAL (see the module docstring). On Postgres 17+ the
        flush is a non-transactional logical message with ``flush => true`` sent in the
        same query text as the slot read: one round trip per pass instead of two. Older
        servers get a transactional message committed with ``synchronous_commit=on``.
        """
        conn = self._conn
        assert conn is not None
        read = (
            f"SELECT data FROM pg_logical_slot_get_binary_changes({rls.quote_literal(self.slot)}, NULL, "
            f"{BATCH}, 'proto_version', '1', 'publication_names', {rls.quote_literal(self.publication)})"
        )
        if flush and conn.info.server_version >= FLUSH_IN_MESSAGE:
            self._passes += 1
            snapshot = self.snapshots and self._passes % SNAPSHOT_EVERY == 1
            try:
                cur = await conn.execute(
                    f"{SNAPSHOT + '; ' if snapshot else ''}{FLUSH_MESSAGE}; {read}", prepare=False
                )
            except (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedFunction) as exc:
                if not snapshot:
                    raise
                # The snapshot came first and failed: nothing was read, so read again without it.
                log.info("no running-transactions snapshots for the slot (%s)", exc.diag.message_primary)
                self.snapshots = False
                cur = await conn.execute(f"{FLUSH_MESSAGE}; {read}", prepare=False)
            if snapshot and self.snapshots:
                cur.nextset()
            cur.nextset()
        else:
            if flush:
                await conn.execute("SELECT pg_logical_emit_message(true, 'pb-realtime', '')")
            cur = await conn.execute(read)
        rows = await cur.fetchall()
        changes = [c for row in rows if (c := self._decoder.feed(bytes(row[0]))) is not None]
        self.changes += len(changes)
        return len(rows), changes

    # ----------------------------------------------------------------- delivery

    async def _table(self, change: Change) -> _TableInfo:
        rel = change.relation
        info = self._tables.get(rel.oid)
        if info is None:
            conn = self._check_conn or self._conn
            assert conn is not None
            cur = await conn.execute("SELECT relrowsecurity FROM pg_class WHERE oid = %s", (rel.oid,))
            row = await cur.fetchone()
            keys = [c.name for c in rel.columns if c.key]
            cur = await conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = %s AND attname = ANY(%s)",
                (rel.oid, keys),
            )
            key_types = {str(name): str(typ) for name, typ in await cur.fetchall()}
            info = _TableInfo(rls=bool(row[0]) if row else False, key_types=key_types)
            self._tables[rel.oid] = info
        return info

    async def _deliver(self, changes: list[Change]) -> None:
        """RLS first, filters after: a subscriber's filter runs only on rows it may read.

        Realtime applies filters and RLS in one SQL statement; here the
        authorisation comes first so that a socket with no right to a row
        (the anon key) cannot make the server evaluate its filter on that row
        (issue #13, probe 4). The ``eq`` index still narrows the candidates.
        """
        plan: list[list[tuple[Subscriber, bool]]] = []
        checks: list[tuple[Change, Subscriber]] = []
        for change in changes:
            info = await self._table(change)
            needs_rls = info.rls and change.kind != "DELETE"
            covered = []
            for sub in self.candidates(change):
                if any(b.covers(change) for b in sub.bindings):
                    covered.append((sub, needs_rls))
                    if needs_rls:
                        checks.append((change, sub))
            plan.append(covered)
        verdicts = iter(await self._authorize(checks)) if checks else iter(())
        for change, covered in zip(changes, plan, strict=True):
            allowed = [sub for sub, needs_rls in covered if not needs_rls or next(verdicts)]
            data_json: str | None = None
            sent = 0
            for sub in allowed:
                ids = [b.id for b in sub.bindings if b.matches(change)]
                if not ids:
                    continue
                if data_json is None:
                    data_json = json.dumps(change.data(), separators=(",", ":"))
                sub.sink.push_change(ids, data_json)
                sent += 1
            if sent:
                self._on_message(sent)

    async def _authorize(self, checks: list[tuple[Change, Subscriber]]) -> list[bool]:
        """Each (change, subscriber): may this subscriber SELECT the changed row right now?

        Asked once per (row, identity) and sent as one query text (``rls.py``): one round
        trip and one await per batch, whatever its size.
        """
        conn = self._check_conn or self._conn
        assert conn is not None
        requests = []
        for change, sub in checks:
            info = await self._table(change)
            key = tuple(
                (name, info.key_types[name], None if value is None else str(value))
                for name, value in change.key.items()
            )
            ref = rls.RowRef(change.relation.schema, change.relation.table, key)
            requests.append((rls.Identity(sub.claims.role, sub.claims_json), ref))
        plan = rls.plan_checks(requests)
        self.checks += plan.distinct
        query, results = rls.batch_sql(plan)
        try:
            cur = await conn.execute(query, prepare=False)
            sets: list[object] = []
            while True:
                row = await cur.fetchone()
                sets.append(row[-1] if row else None)
                if not cur.nextset():
                    break
            return plan.verdicts(rls.collect(plan, results, sets))
        except (psycopg.Error, ValueError) as exc:
            log.error("RLS check failed, delivering nothing for this batch: %r", exc)
            return [False] * len(checks)
