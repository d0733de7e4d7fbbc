"""Read the store's ground truth for a set of jobs (harness side, synchronous)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import psycopg

from progressbench.core.ledger import CommittedEvent, JobTruth, StepRun

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ns(ts: datetime) -> int:
    """Exact nanoseconds since the epoch (float timestamps would round)."""
    return (ts - _EPOCH) // timedelta(microseconds=1) * 1000


#: One row per execution of a job (an attempt on an instance): where it ran, ``"<service>/<kind>"``,
#: and what started it; from the steps it completed, and from the job's last claim (an execution
#: that completed no step).
CONTEXTS = """
SELECT job_id, label, trigger FROM (
    SELECT job_id, attempt, instance, (context->>'service') || '/' || (context->>'kind') AS label,
           coalesce(context->>'trigger', 'dispatch') AS trigger
      FROM step_runs WHERE job_id = ANY(%(ids)s)
    UNION
    SELECT id, attempt, execution_context->>'instance',
           (execution_context->>'service') || '/' || (execution_context->>'kind'),
           coalesce(execution_context->>'trigger', 'dispatch')
      FROM jobs WHERE id = ANY(%(ids)s) AND execution_context IS NOT NULL
) AS executions ORDER BY job_id, attempt
"""


def _ns_or_none(ts: datetime | None) -> int | None:
    return None if ts is None else _ns(ts)


def read_truth(database_url: str, job_ids: Iterable[str]) -> dict[str, JobTruth]:
    ids = sorted({i for i in job_ids if i})
    if not ids:
        return {}
    uuids = [uuid.UUID(i) for i in ids]
    events: dict[str, list[CommittedEvent]] = defaultdict(list)
    runs: dict[str, dict[int, int]] = defaultdict(dict)
    step_spans: dict[str, list[StepRun]] = defaultdict(list)
    status: dict[str, str] = {}
    contexts: dict[str, list[str]] = defaultdict(list)
    triggers: dict[str, list[str]] = defaultdict(list)
    spans: dict[str, tuple[int | None, int | None]] = {}
    with psycopg.connect(database_url) as conn:
        for job_id, st, started, finished in conn.execute(
            "SELECT id, status, started_at, finished_at FROM jobs WHERE id = ANY(%s)", (uuids,)
        ):
            status[str(job_id)] = st
            spans[str(job_id)] = (_ns_or_none(started), _ns_or_none(finished))
        for job_id, seq, kind, committed in conn.execute(
            "SELECT job_id, seq, kind, committed_at FROM job_events WHERE job_id = ANY(%s) "
            "ORDER BY job_id, seq",
            (uuids,),
        ):
            events[str(job_id)].append(CommittedEvent(seq, kind, _ns(committed)))
        for job_id, seq, started, finished in conn.execute(
            "SELECT job_id, seq, started_at, finished_at FROM step_runs WHERE job_id = ANY(%s) ORDER BY id",
            (uuids,),
        ):
            runs[str(job_id)][seq] = runs[str(job_id)].get(seq, 0) + 1
            step_spans[str(job_id)].append(
                StepRun(seq, None if started is None else _ns(started), _ns(finished))
            )
        for job_id, label, trigger in conn.execute(CONTEXTS, {"ids": uuids}):
            contexts[str(job_id)].append(label)
            triggers[str(job_id)].append(trigger)
    return {
        i: JobTruth(
            job_id=i,
            status=status.get(i, "missing"),
            events=tuple(events[i]),
            step_runs=dict(runs[i]),
            contexts=tuple(contexts[i]),
            triggers=tuple(triggers[i]),
            runs=tuple(step_spans[i]),
            started_wall_ns=spans.get(i, (None, None))[0],
            finished_wall_ns=spans.get(i, (None, None))[1],
        )
        for i in ids
    }


class ProgressProbe:
    """How far the jobs created since ``since`` have got (for faults timed on job progress)."""

    def __init__(self, database_url: str, since_wall_s: float) -> None:
        self._conn = psycopg.connect(database_url, autocommit=True)
        self._since = datetime.fromtimestamp(since_wall_s, UTC)

    def __call__(self) -> int:
        """The highest committed step of those jobs; -1 while none exists yet."""
        row = self._conn.execute(
            "SELECT coalesce(max(current_step), -1) FROM jobs WHERE created_at >= %s", (self._since,)
        ).fetchone()
        return int(row[0]) if row else -1

    def jobs(self) -> int:
        """How many jobs have been created since ``since`` (the phones' taps)."""
        row = self._conn.execute(
            "SELECT count(*) FROM jobs WHERE created_at >= %s", (self._since,)
        ).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._conn.close()
