"""The queue's durable state: ``relay_tasks`` and ``relay_signing_keys`` (migration 003).

The only module that touches those tables. Tasks are claimed with
``FOR UPDATE SKIP LOCKED`` and a lease (the attempt's dispatch deadline plus
a margin), so an attempt in flight when the queue process dies is retried
once its lease lapses: delivery is at-least-once, never at-most-once.
A finished task is kept (state ``succeeded``/``failed``) for the report;
Cloud Tasks deletes it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from progressbench.transports.relay.queue.oidc import SigningKey
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

_COLUMNS = (
    "name, queue, job_id, url, audience, body, state, schedule_time, dispatch_count, "
    "response_count, last_status, created_at"
)


@dataclass(frozen=True, slots=True)
class TaskRow:
    name: str
    queue: str
    job_id: uuid.UUID | None
    url: str
    audience: str
    body: dict[str, Any]
    state: str
    schedule_time: datetime
    dispatch_count: int
    response_count: int
    last_status: int | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """One finished delivery attempt, as :meth:`TaskTable.record_attempts` writes it.

    ``done`` finishes the task (``succeeded``/``failed``); None schedules its
    next attempt ``retry_in_s`` from the moment it is written.
    """

    name: str
    status: int | None
    error: str | None
    executed: bool
    done: str | None
    retry_in_s: float


def write_batches(outcomes: list[AttemptOutcome]) -> list[list[AttemptOutcome]]:
    """Outcomes split into statements that each name a task at most once, sorted by name.

    One ``UPDATE ... FROM unnest(...)`` applies a row's change once even if its
    name appears twice, so a repeated task (two attempts recorded together)
    goes to the next statement, in order; sorting takes row locks in one order,
    so two queue instances writing at once cannot deadlock.
    """
    batches: list[list[AttemptOutcome]] = []
    names: list[set[str]] = []
    for outcome in outcomes:
        # The k-th outcome of a task goes to statement k: the first one not naming it yet.
        index = next((i for i, seen in enumerate(names) if outcome.name not in seen), len(batches))
        if index == len(batches):
            batches.append([])
            names.append(set())
        batches[index].append(outcome)
        names[index].add(outcome.name)
    return [sorted(batch, key=lambda o: o.name) for batch in batches]


class TaskTable:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def create(
        self,
        name: str,
        queue: str,
        job_id: uuid.UUID | None,
        url: str,
        audience: str,
        body: dict[str, Any],
        schedule_time: datetime | None = None,
    ) -> bool:
        """Insert a task (due at ``schedule_time``, default now); False when the name exists."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO relay_tasks (name, queue, job_id, url, audience, body, schedule_time) "
                "VALUES (%s, %s, %s, %s, %s, %s, COALESCE(%s, clock_timestamp())) "
                "ON CONFLICT (name) DO NOTHING",
                (name, queue, job_id, url, audience, Jsonb(body), schedule_time),
            )
        return cur.rowcount == 1

    async def claim_due(self, limit: int, lease_s: float) -> list[TaskRow]:
        """Take up to ``limit`` tasks whose ETA has come (or whose attempt's lease lapsed)."""
        if limit <= 0:
            return []
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"""
                UPDATE relay_tasks SET state = 'dispatching',
                       lease_until = clock_timestamp() + make_interval(secs => %(lease)s),
                       first_attempt_at = COALESCE(first_attempt_at, clock_timestamp())
                 WHERE name IN (
                       SELECT name FROM relay_tasks
                        WHERE (state = 'queued' AND schedule_time <= clock_timestamp())
                           OR (state = 'dispatching' AND lease_until < clock_timestamp())
                        ORDER BY schedule_time
                        LIMIT %(limit)s
                        FOR UPDATE SKIP LOCKED)
                RETURNING {_COLUMNS}
                """,
                {"lease": lease_s, "limit": limit},
            )
            rows = await cur.fetchall()
        return [TaskRow(**cast(dict[str, Any], r)) for r in rows]

    async def record_attempts(self, outcomes: list[AttemptOutcome]) -> None:
        """Count each attempt; finish its task (``done``) or schedule the task's next attempt.

        Many attempts in one round trip (the dispatcher writes whatever
        finished while its previous write was in flight).
        """
        if not outcomes:
            return
        async with self._pool.connection() as conn:
            for batch in write_batches(outcomes):
                await conn.execute(
                    """
                    UPDATE relay_tasks t SET dispatch_count = t.dispatch_count + 1,
                           response_count = t.response_count + v.executed,
                           last_status = v.status, last_error = v.error, lease_until = NULL,
                           state = COALESCE(v.done, 'queued'),
                           finished_at = CASE WHEN v.done IS NULL THEN NULL ELSE clock_timestamp() END,
                           schedule_time = CASE WHEN v.done IS NULL
                               THEN clock_timestamp() + make_interval(secs => v.retry)
                               ELSE t.schedule_time END
                      FROM unnest(%s::text[], %s::int[], %s::text[], %s::int[], %s::text[], %s::float8[])
                           AS v(name, status, error, executed, done, retry)
                     WHERE t.name = v.name
                    """,
                    (
                        [o.name for o in batch],
                        [o.status for o in batch],
                        [o.error for o in batch],
                        [1 if o.executed else 0 for o in batch],
                        [o.done for o in batch],
                        [float(o.retry_in_s) for o in batch],
                    ),
                )

    async def status(self) -> tuple[int, float | None]:
        """(tasks not finished, seconds until the earliest is due or its attempt lapses; None if none)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) AS n, EXTRACT(EPOCH FROM min(CASE WHEN state = 'queued' "
                "THEN schedule_time ELSE lease_until END) - clock_timestamp()) AS s "
                "FROM relay_tasks WHERE state IN ('queued', 'dispatching')"
            )
            found = await cur.fetchone()
        if found is None:
            return 0, None
        row = cast(dict[str, Any], found)
        return int(row["n"]), None if row["s"] is None else float(row["s"])

    async def add_key(self, key: SigningKey) -> None:
        """Publish the key's public half; the private half never leaves the queue process.

        Every service shares the database, so a private key stored in it would
        let any of them mint the queue's pushes (seeds' Google keeps its keys too).
        """
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO relay_signing_keys (kid, public_jwk) VALUES (%s, %s) "
                "ON CONFLICT (kid) DO NOTHING",
                (key.kid, Jsonb(key.public_jwk)),
            )

    async def public_keys(self) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT public_jwk FROM relay_signing_keys ORDER BY created_at DESC")
            rows = await cur.fetchall()
        return [dict(cast(dict[str, Any], r)["public_jwk"]) for r in rows]
