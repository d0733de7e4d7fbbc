"""The progress store on PostgreSQL: the only module that writes job state.

Invariants the rest of the testbed relies on:

* ``job_events`` rows are written with ``ON CONFLICT DO NOTHING`` on
  ``(job_id, seq)``: a retried, resumed or duplicated execution converges on
  the same rows and never changes an event's ``committed_at``.
* A step is committed (event + ``current_step`` + ``step_runs``) in one
  transaction, and only by the instance that holds the job's lease. An
  instance that lost its lease learns it from :meth:`Store.commit_step`
  returning ``False`` and must stop.
* Every committed event is announced with ``pg_notify('job_events', ...)`` so
  streaming transports can wake up without polling; so is every change of a
  job's status without an event (claimed, released, abandoned: seq ``0``), so
  a cache of a job's state (the polling server's ETags) is never stale.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from progressbench.core.errors import StoreError, StoreUnavailable
from progressbench.core.events import TERMINAL
from progressbench.core.job import EventKind, Step

NOTIFY_CHANNEL = "job_events"
#: A step's commit in one statement (one round trip, its own transaction): the lease-checked
#: update of the job, the step run, the event, and its notification when the event is new.
#: Spelled as six statements in a transaction it held a pooled connection and the job's row
#: lock across six client round trips; on a loaded host each round trip waits for the worker
#: to be scheduled, and a worker with hundreds of jobs queued for its pool behind them.
COMMIT_STEP = """
WITH job AS (
    UPDATE jobs SET current_step = GREATEST(current_step, %(seq)s),
           heartbeat_at = clock_timestamp(), updated_at = clock_timestamp()
     WHERE id = %(id)s AND (lease_owner = %(instance)s OR NOT %(fenced)s) AND status = ANY(%(statuses)s)
    RETURNING id
), run AS (
    INSERT INTO step_runs (job_id, seq, attempt, instance, context, started_at)
    SELECT id, %(seq)s, %(attempt)s, %(instance)s, %(context)s,
           clock_timestamp() - make_interval(secs => %(worked)s)
      FROM job
), event AS (
    INSERT INTO job_events (job_id, seq, owner, kind, message, payload)
    SELECT id, %(seq)s, %(owner)s, 'step', %(message)s, %(payload)s FROM job
    ON CONFLICT (job_id, seq) DO NOTHING
    RETURNING job_id
)
SELECT (SELECT count(*) FROM job) AS updated,
       (SELECT count(pg_notify(%(channel)s, %(note)s)) FROM event) AS notified
"""

JobStatus = str  # 'pending' | 'running' | 'interrupted' | 'done' | 'failed'
UNFINISHED = ("pending", "running", "interrupted")


@dataclass(frozen=True, slots=True)
class JobRow:
    id: uuid.UUID
    owner: str
    transport: str
    status: JobStatus
    total_steps: int
    current_step: int
    attempt: int
    spec: dict[str, Any]
    execution_context: dict[str, Any] | None
    result: dict[str, Any] | None
    error: str | None
    lease_owner: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True, slots=True)
class EventRow:
    job_id: uuid.UUID
    seq: int
    kind: EventKind
    message: str
    payload: dict[str, Any]
    committed_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "job_id": str(self.job_id),
            "seq": self.seq,
            "kind": self.kind,
            "message": self.message,
            "payload": self.payload,
            "committed_at": self.committed_at.isoformat(),
        }


_JOB_COLUMNS = (
    "id, owner, transport, status, total_steps, current_step, attempt, spec, "
    "execution_context, result, error, lease_owner, created_at, updated_at"
)
_EVENT_COLUMNS = "job_id, seq, kind, message, payload, committed_at"


Row = dict[str, Any]


def _job(row: Any) -> JobRow:
    return JobRow(**row)


def _event(row: Any) -> EventRow:
    return EventRow(**row)


def parse_job_id(raw: str) -> uuid.UUID | None:
    """A job id from a URL, or None when it is not a UUID (answered as 404)."""
    try:
        return uuid.UUID(raw)
    except (ValueError, AttributeError, TypeError):
        return None


class Store:
    """Async access to the progress store for the services.

    ``on_write`` is called with the number of rows written by each statement
    group, so a service can meter DB writes without the store importing
    metrics.
    """

    def __init__(
        self,
        database_url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        on_write: Callable[[int], None] | None = None,
        on_read: Callable[[int], None] | None = None,
    ) -> None:
        self._pool = AsyncConnectionPool(
            database_url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            kwargs={"autocommit": True, "row_factory": dict_row},
        )
        self._on_write = on_write or (lambda n: None)
        self._on_read = on_read or (lambda n: None)

    async def open(self, timeout_s: float = 10.0) -> None:
        try:
            await self._pool.open(wait=True, timeout=timeout_s)
        except Exception as exc:  # psycopg_pool raises PoolTimeout or OperationalError
            raise StoreUnavailable(f"cannot reach the progress store: {exc}") from exc

    async def close(self) -> None:
        await self._pool.close()

    @property
    def pool(self) -> AsyncConnectionPool:
        return self._pool

    async def create_job(
        self, job_id: uuid.UUID, owner: str, transport: str, spec: dict[str, Any], total_steps: int
    ) -> JobRow:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"INSERT INTO jobs (id, owner, transport, spec, total_steps) "
                f"VALUES (%s, %s, %s, %s, %s) RETURNING {_JOB_COLUMNS}",
                (job_id, owner, transport, Jsonb(spec), total_steps),
            )
            row = await cur.fetchone()
        self._on_write(1)
        assert row is not None
        return _job(row)

    async def get_job(self, job_id: uuid.UUID) -> JobRow | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = %s", (job_id,))
            row = await cur.fetchone()
        self._on_read(1)
        return _job(row) if row else None

    async def events_after(self, job_id: uuid.UUID, after_seq: int, limit: int = 1000) -> list[EventRow]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM job_events WHERE job_id = %s AND seq > %s "
                "ORDER BY seq LIMIT %s",
                (job_id, after_seq, limit),
            )
            rows = await cur.fetchall()
        self._on_read(max(len(rows), 1))
        return [_event(r) for r in rows]

    async def claim(
        self,
        job_id: uuid.UUID,
        instance: str,
        context: dict[str, Any],
        lease_s: float,
        *,
        from_pending: bool = True,
        steal: bool = False,
    ) -> JobRow | None:
        """Take the job's lease if nobody live holds it; None when someone does.

        A job can be claimed when it is ``pending`` (first run, if
        ``from_pending``), ``interrupted`` (released on SIGTERM), or ``running``
        with a heartbeat older than ``lease_s`` (its instance died). ``steal``:
        a worker without leases takes any unfinished job, live holder or not.
        """
        statuses = ["interrupted"] + (["pending"] if from_pending else [])
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"""
                UPDATE jobs SET status = 'running', attempt = attempt + 1,
                       lease_owner = %(instance)s, heartbeat_at = clock_timestamp(),
                       execution_context = %(context)s,
                       started_at = COALESCE(started_at, clock_timestamp()),
                       updated_at = clock_timestamp()
                 WHERE id = %(id)s
                   AND (status = ANY(%(statuses)s)
                        OR (status = 'running' AND (%(steal)s OR lease_owner = %(instance)s
                            OR heartbeat_at IS NULL
                            OR heartbeat_at < clock_timestamp() - make_interval(secs => %(lease)s))))
                RETURNING {_JOB_COLUMNS}
                """,
                {
                    "instance": instance,
                    "context": Jsonb(context),
                    "id": job_id,
                    "statuses": statuses,
                    "lease": lease_s,
                    "steal": steal,
                },
            )
            row = await cur.fetchone()
            if row:
                await _announce(conn, job_id, 0)
        self._on_write(1)
        return _job(row) if row else None

    async def orphaned_jobs(
        self, lease_s: float, transports: Sequence[str] | None = None, limit: int = 50
    ) -> list[uuid.UUID]:
        """Jobs whose instance died (stale heartbeat) or let go of them on SIGTERM.

        ``transports`` limits the answer to jobs of those transports, by exact
        name (``"polling"`` does not cover ``"polling:in-instance"``: each variant
        is listed when its pattern has the watchdog); None: every job.
        """
        names = None if transports is None else list(transports)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                """
                SELECT id FROM jobs
                 WHERE (status = 'interrupted'
                        OR (status = 'running'
                            AND heartbeat_at < clock_timestamp() - make_interval(secs => %(lease)s)))
                   AND (%(names)s::text[] IS NULL OR transport = ANY(%(names)s))
                 ORDER BY updated_at LIMIT %(limit)s
                """,
                {"lease": lease_s, "names": names, "limit": limit},
            )
            rows = await cur.fetchall()
        self._on_read(max(len(rows), 1))
        return [cast(Row, r)["id"] for r in rows]

    async def stale_jobs(
        self, transports: Sequence[str], stale_s: float, limit: int = 100
    ) -> list[uuid.UUID]:
        """What a watchdog cron's query finds: jobs of ``transports`` (exact names) going nowhere.

        Stale: ``interrupted``; ``running`` with no heartbeat for ``stale_s``; or
        still ``pending`` ``stale_s`` after it was last touched (a dispatch that
        never arrived).
        """
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                """
                SELECT id FROM jobs
                 WHERE transport = ANY(%(names)s)
                   AND (status = 'interrupted'
                        OR (status = 'running' AND (heartbeat_at IS NULL OR
                            heartbeat_at < clock_timestamp() - make_interval(secs => %(stale)s)))
                        OR (status = 'pending'
                            AND updated_at < clock_timestamp() - make_interval(secs => %(stale)s)))
                 ORDER BY updated_at LIMIT %(limit)s
                """,
                {"names": list(transports), "stale": stale_s, "limit": limit},
            )
            rows = await cur.fetchall()
        self._on_read(max(len(rows), 1))
        return [cast(Row, r)["id"] for r in rows]

    async def touch(self, job_id: uuid.UUID) -> None:
        """Mark a job as just handled (a cron re-dispatched it), so the next pass waits again."""
        async with self._pool.connection() as conn:
            await conn.execute("UPDATE jobs SET updated_at = clock_timestamp() WHERE id = %s", (job_id,))
        self._on_write(1)

    async def heartbeat(self, job_id: uuid.UUID, instance: str) -> bool:
        """Refresh the lease; False means another instance has taken the job over."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE jobs SET heartbeat_at = clock_timestamp() "
                "WHERE id = %s AND lease_owner = %s AND status = 'running'",
                (job_id, instance),
            )
        self._on_write(1)
        return cur.rowcount == 1

    async def heartbeat_many(self, job_ids: Sequence[uuid.UUID], instance: str) -> set[uuid.UUID]:
        """Refresh the leases ``instance`` holds on ``job_ids`` in one statement; the ids still its own.

        A row locked right now (its step's commit, which refreshes the lease
        itself) is skipped rather than waited for: one renewal of a thousand
        rows must not queue behind one commit while the other commits queue
        behind it. Whose lease each job is comes from the statement's snapshot
        (``renewed`` runs whether or not the outer query reads it, as every
        data-modifying ``WITH`` does).
        """
        if not job_ids:
            return set()
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                """
                WITH free AS (
                    SELECT id FROM jobs
                     WHERE id = ANY(%(ids)s) AND lease_owner = %(instance)s AND status = 'running'
                       FOR UPDATE SKIP LOCKED
                ), renewed AS (
                    UPDATE jobs SET heartbeat_at = clock_timestamp() FROM free WHERE jobs.id = free.id
                    RETURNING jobs.id
                )
                SELECT id FROM jobs
                 WHERE id = ANY(%(ids)s) AND lease_owner = %(instance)s AND status = 'running'
                """,
                {"ids": list(job_ids), "instance": instance},
            )
            rows = await cur.fetchall()
        self._on_write(1)
        return {cast(Row, r)["id"] for r in rows}

    async def commit_step(
        self,
        job_id: uuid.UUID,
        owner: str,
        step: Step,
        total_steps: int,
        attempt: int,
        instance: str,
        context: dict[str, Any],
        *,
        fenced: bool = True,
        worked_s: float | None = None,
    ) -> bool:
        """Record a finished step atomically; False when the lease was lost.

        Unfenced (a worker without leases), any execution of an unfinished job
        commits; False only once the job is finished.

        ``worked_s`` is how long the step's work took (monotonic, measured by the
        executor): ``step_runs.started_at`` is the commit time minus it, so the
        row holds the execution's span on the store's own clock.
        """
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                COMMIT_STEP,
                {
                    "id": job_id,
                    "seq": step.seq,
                    "instance": instance,
                    "fenced": fenced,
                    "statuses": ["running"] if fenced else list(UNFINISHED),
                    "attempt": attempt,
                    "context": Jsonb(context),
                    "worked": worked_s,
                    "owner": owner,
                    "message": step.message,
                    "payload": Jsonb(step.payload(total_steps)),
                    "channel": NOTIFY_CHANNEL,
                    "note": json.dumps([str(job_id), step.seq]),
                },
            )
            row = await cur.fetchone()
        if row is None or not cast(Row, row)["updated"]:
            return False
        self._on_write(3)
        return True

    async def finish(
        self,
        job_id: uuid.UUID,
        owner: str,
        instance: str,
        seq: int,
        kind: EventKind,
        message: str,
        payload: dict[str, Any],
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        fenced: bool = True,
    ) -> bool:
        """Write the terminal event and the final status; False when the lease was lost
        (unfenced: when the job had already finished)."""
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE jobs SET status = %s, result = %s, error = %s, lease_owner = NULL, "
                "finished_at = clock_timestamp(), updated_at = clock_timestamp() "
                "WHERE id = %s AND (lease_owner = %s OR NOT %s) AND status = ANY(%s)",
                (
                    kind,
                    Jsonb(result) if result is not None else None,
                    error,
                    job_id,
                    instance,
                    fenced,
                    ["running"] if fenced else list(UNFINISHED),
                ),
            )
            if cur.rowcount != 1:
                return False
            await self._insert_event(conn, job_id, owner, seq, kind, message, payload)
        self._on_write(2)
        return True

    async def release(self, job_id: uuid.UUID, instance: str, *, error: str | None = None) -> bool:
        """Give the job back (shutdown, a retryable failure) so a retry resumes it from its checkpoint."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE jobs SET status = 'interrupted', lease_owner = NULL, heartbeat_at = NULL, "
                "error = COALESCE(%s, error), updated_at = clock_timestamp() "
                "WHERE id = %s AND lease_owner = %s AND status = 'running'",
                (error, job_id, instance),
            )
            if cur.rowcount == 1:
                await _announce(conn, job_id, 0)
        self._on_write(1)
        return cur.rowcount == 1

    async def abandon(self, job_id: uuid.UUID, instance: str, reason: str) -> None:
        """The execution was dropped with its request: ``failed`` with ``reason``, and no terminal event.

        Nobody is left to tell (the client that went away was the only one
        listening), so no event is committed; the row records what happened.
        """
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE jobs SET status = 'failed', error = %s, lease_owner = NULL, heartbeat_at = NULL, "
                "finished_at = clock_timestamp(), updated_at = clock_timestamp() "
                "WHERE id = %s AND lease_owner = %s AND status = 'running'",
                (reason, job_id, instance),
            )
            if cur.rowcount == 1:
                await _announce(conn, job_id, 0)
        self._on_write(1)

    @staticmethod
    async def _insert_event(
        conn: psycopg.AsyncConnection[Any],
        job_id: uuid.UUID,
        owner: str,
        seq: int,
        kind: str,
        message: str,
        payload: dict[str, Any],
    ) -> None:
        cur = await conn.execute(
            "INSERT INTO job_events (job_id, seq, owner, kind, message, payload) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (job_id, seq) DO NOTHING",
            (job_id, seq, owner, kind, message, Jsonb(payload)),
        )
        if cur.rowcount == 1:
            await _announce(conn, job_id, seq)


async def _announce(conn: psycopg.AsyncConnection[Any], job_id: uuid.UUID, seq: int) -> None:
    """Tell every listener the job changed: its event ``seq`` committed, or (``0``) its status."""
    await conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, json.dumps([str(job_id), seq])))


def check_reachable(database_url: str, timeout_s: float = 5.0) -> None:
    """Fail fast, with one clear line, when ``--database-url`` cannot be used."""
    try:
        with psycopg.connect(database_url, connect_timeout=max(int(timeout_s), 1)) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreUnavailable(f"cannot connect to the database: {first}") from None
    except Exception as exc:
        raise StoreUnavailable(f"cannot use the database URL: {exc}") from None


__all__ = [
    "NOTIFY_CHANNEL",
    "EventRow",
    "JobRow",
    "Store",
    "StoreError",
    "check_reachable",
    "parse_job_id",
]
