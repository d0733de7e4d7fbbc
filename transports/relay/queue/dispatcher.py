"""The queue's push dispatcher: due tasks -> signed HTTP pushes, Cloud Tasks semantics.

One loop claims due tasks (a lease per attempt, so several queue instances
or a crashed one never lose a task), waits for the rate limiter
(``max_dispatches_per_second`` / ``max_burst_size``), takes a concurrency slot
(``max_concurrent_dispatches``) and POSTs the task's body to its URL with an
OIDC token and the ``X-CloudTasks-*`` headers. 2xx deletes (here:
finishes) the task; anything else, no response, or the dispatch deadline
schedules the next attempt with :func:`progressbench.transports.relay.queue.retry.next_delay`
until :func:`~progressbench.transports.relay.queue.retry.gives_up`. The target is never told to
stop: a deadline only ends the queue's wait.

Hot-path costs, each paid per batch rather than per task: the loop claims
only what the rate limiter will let out within about one burst
(:meth:`TokenBucket.headroom`), in claims of at least half a batch while
tasks wait on the limiter; the ID token for an audience is reused until near
its expiry (:class:`~progressbench.transports.relay.queue.oidc.TokenCache`);
outcomes are written by :class:`AttemptLog`, one statement for every
attempt that finished while the previous write was in flight.

Shutdown story: :meth:`Dispatcher.stop` ends the loop and cancels the
attempts in flight; their leases lapse and the next queue instance
re-sends them (a possible duplicate push, which at-least-once allows).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass

from progressbench.transports.relay.queue.oidc import SigningKey, TokenCache
from progressbench.transports.relay.queue.push import PushError, PushTransport
from progressbench.transports.relay.queue.retry import (
    SUCCESS,
    QueueConfig,
    TokenBucket,
    counts_as_execution,
    gives_up,
    next_delay,
    parse_retry_after,
    task_headers,
)
from progressbench.transports.relay.queue.tasks import AttemptOutcome, TaskRow, TaskTable
from prometheus_client import CollectorRegistry, Counter, Gauge

from progressbench.core.config import Timing

log = logging.getLogger(__name__)

#: Tasks claimed per query, at most.
BATCH = 100
#: While claimed tasks wait on the rate limiter, claim again only once this many more fit.
MIN_CLAIM = BATCH // 2
#: Extra lease beyond the dispatch deadline before an attempt counts as lost.
LEASE_MARGIN_S = 5.0
#: A push's connect timeout, real seconds (scaled where used).
PUSH_CONNECT_S = 10.0


class QueueMeters:
    """The queue's counters, registered on the service's registry."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.service = service
        self.operations = Counter(
            "pb_queue_operations",
            "Billable Cloud Tasks operations: creates and every delivery attempt",
            ["service", "op"],
            registry=registry,
        )
        self.retries = Counter(
            "pb_queue_retries", "Attempts scheduled after a failure", ["service"], registry=registry
        )
        self.attempts = Counter(
            "pb_queue_attempts", "Delivery attempts by outcome", ["service", "outcome"], registry=registry
        )
        self.gave_up = Counter(
            "pb_queue_tasks_failed", "Tasks that ran out of attempts", ["service"], registry=registry
        )
        self.depth = Gauge("pb_queue_depth", "Tasks not yet delivered", ["service"], registry=registry)
        self.in_flight = Gauge(
            "pb_queue_dispatches_in_flight", "Pushes awaiting a response", ["service"], registry=registry
        )


class AttemptLog:
    """Writes attempts' outcomes to the task table, many per round trip (a group commit).

    :meth:`record` returns once its outcome is written. Outcomes that arrive
    while a write is in flight go together in the next one, so a busy queue
    pays one statement per batch of attempts, an idle one no added wait.
    A write that fails fails every attempt in it: their leases lapse and the
    tasks are pushed again (at-least-once allows the duplicate).
    """

    def __init__(self, table: TaskTable) -> None:
        self._table = table
        self._pending: list[tuple[AttemptOutcome, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        #: Statements' worth of writes so far (round trips), for the tests and the curious.
        self.writes = 0

    async def record(self, outcome: AttemptOutcome) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((outcome, done))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="attempt-log")
        await done

    async def _write(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._table.record_attempts([outcome for outcome, _ in batch])
                except Exception as exc:  # the DB hiccup is each attempt's: their leases lapse
                    log.warning("writing %d attempts failed: %s", len(batch), exc)
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                else:
                    self.writes += 1
                    for _, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._writer = None

    async def close(self) -> None:
        """Let the write in flight finish (bounded by the pool's timeouts), then stop."""
        writer = self._writer
        if writer is not None:
            await asyncio.wait([writer], timeout=5)


@dataclass
class Dispatcher:
    table: TaskTable
    config: QueueConfig
    timing: Timing
    pusher: PushTransport
    key: SigningKey
    issuer: str
    meters: QueueMeters

    def __post_init__(self) -> None:
        self.retry = self.config.scaled(self.timing)
        self.deadline_s = self.timing.scaled(self.config.dispatch_deadline_s)
        #: The push's connect timeout (10 s real), scaled like the deadline it sits inside.
        self.connect_s = self.timing.scaled(PUSH_CONNECT_S)
        self.bucket = TokenBucket(self.config.max_dispatches_per_second, self.config.max_burst_size)
        self.slots = asyncio.Semaphore(self.config.max_concurrent_dispatches)
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.attempts: set[asyncio.Task[None]] = set()
        self.poll_s = min(max(self.timing.scaled(2.0), 0.02), 1.0)
        self.tokens = TokenCache(self.key, self.issuer, self.config.oidc_ttl_s)
        self.log = AttemptLog(self.table)
        #: The loop waits for a slot (the concurrency cap): a finished attempt wakes it.
        self.at_cap = False

    def poke(self) -> None:
        """A task was created: look for due work now rather than at the next poll."""
        self.wake.set()

    def _finished(self, job: asyncio.Task[None]) -> None:
        self.attempts.discard(job)
        if self.at_cap:
            self.wake.set()

    async def run(self) -> None:
        svc = self.meters.service
        cap = self.config.max_concurrent_dispatches
        min_claim = max(1, min(MIN_CLAIM, self.config.max_burst_size // 2))
        lease_s = self.deadline_s + LEASE_MARGIN_S
        #: A claimed task waits for its token at most half its lease (never outlasting it).
        ahead_s = lease_s / 2
        while not self.stopping.is_set():
            self.wake.clear()
            now = time.monotonic()
            free = cap - len(self.attempts)
            headroom = self.bucket.headroom(now, ahead_s)
            if headroom < min_claim and free > 0 and self.bucket.available(now) < 1:
                # Claimed tasks still wait on the rate limiter: let the headroom grow into a batch
                # (or a token come free), rather than claim a task or two per pass.
                wait = min(
                    self.bucket.until_headroom(now, min_claim, ahead_s),
                    self.bucket.until_headroom(now, 1, 0.0),
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), max(wait, 0.001))
                continue
            limit = min(free, BATCH, headroom)
            claimed: list[TaskRow] = []
            try:
                claimed = await self.table.claim_due(limit, lease_s)
                now = time.monotonic()
                for task in claimed:
                    wait = self.bucket.take(now)
                    job = asyncio.create_task(self._attempt(task, wait), name=f"push-{task.name}")
                    self.attempts.add(job)
                    job.add_done_callback(self._finished)
                if limit > 0 and len(claimed) == limit:
                    continue
                depth, due = await self.table.status()
                self.meters.depth.labels(svc).set(depth)
            except Exception:  # a DB hiccup must not end the queue; it is logged and retried
                log.exception("dispatch pass failed")
                due = self.poll_s
            self.at_cap = len(self.attempts) >= cap
            timeout = self.poll_s if due is None or self.at_cap else min(max(due, 0.005), self.poll_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)
            self.at_cap = False

    async def _attempt(self, task: TaskRow, wait_s: float) -> None:
        svc = self.meters.service
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        async with self.slots:
            self.meters.in_flight.labels(svc).inc()
            try:
                await self._push(task)
            finally:
                self.meters.in_flight.labels(svc).dec()

    async def _push(self, task: TaskRow) -> None:
        svc = self.meters.service
        token = self.tokens.token(task.audience, time.time())
        headers = task_headers(
            self.config.name,
            task.name,
            retry_count=task.dispatch_count,
            execution_count=task.response_count,
            eta_epoch_s=task.schedule_time.timestamp(),
            previous_status=task.last_status,
            retry_reason=None,
        )
        headers["Authorization"] = f"Bearer {token}"
        status: int | None = None
        error: str | None = None
        retry_after: float | None = None
        self.meters.operations.labels(svc, "attempt").inc()
        body = json.dumps(task.body, separators=(",", ":")).encode()
        try:
            async with asyncio.timeout(self.deadline_s):
                answer = await self.pusher.post(
                    task.url, body, headers, connect_timeout_s=min(self.deadline_s, self.connect_s)
                )
            status = answer.status
            retry_after = parse_retry_after(answer.retry_after)
        except TimeoutError:
            error = "DEADLINE_EXCEEDED"
        except PushError as exc:
            error = exc.reason
        outcome = str(status) if status is not None else error or "error"
        self.meters.attempts.labels(svc, outcome).inc()
        executed = counts_as_execution(status)
        if status is not None and status in SUCCESS:
            await self.log.record(AttemptOutcome(task.name, status, None, executed, "succeeded", 0))
            return
        attempts_made = task.dispatch_count + 1
        age = time.time() - task.created_at.timestamp()
        if gives_up(self.retry, attempts_made, age):
            self.meters.gave_up.labels(svc).inc()
            log.warning("task %s failed for good after %d attempts (%s)", task.name, attempts_made, outcome)
            await self.log.record(AttemptOutcome(task.name, status, error, executed, "failed", 0))
            return
        delay = next_delay(self.retry, attempts_made, status, retry_after)
        self.meters.retries.labels(svc).inc()
        log.info("task %s attempt %d: %s; retry in %.3fs", task.name, attempts_made, outcome, delay)
        await self.log.record(AttemptOutcome(task.name, status, error, executed, None, delay))
        self.wake.set()  # the loop's next wake-up may be later than this retry is due

    async def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        for job in list(self.attempts):
            job.cancel()
        if self.attempts:
            await asyncio.wait(list(self.attempts), timeout=5)
        await self.log.close()
