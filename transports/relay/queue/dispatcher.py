"""The queue's push dispatcher: due tasks -> signed HTTP pushes, Cloud Tasks semantics.

One loop claims due tasks (a lease per attempt, so several queue instances
or a crashed one never lose a task), waits for the rate limiter
(``max_dispatches_per_second`` / ``max_burst_size``), takes a concurrency slot
(``max_concurrent_dispatches``) and POSTs the task's body to its URL with a
fresh OIDC token and the ``X-CloudTasks-*`` headers. 2xx deletes (here:
finishes) the task; anything else, no response, or the dispatch deadline
schedules the next attempt with :func:`progressbench.transports.relay.queue.retry.next_delay`
until :func:`~progressbench.transports.relay.queue.retry.gives_up`. The target is never told to
stop: a deadline only ends the queue's wait.

Shutdown story: :meth:`Dispatcher.stop` ends the loop and cancels the
attempts in flight; their leases lapse and the next queue instance
re-sends them (a possible duplicate push, which at-least-once allows).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import httpx
from progressbench.transports.relay.queue.oidc import SigningKey, id_token_claims
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
from progressbench.transports.relay.queue.tasks import TaskRow, TaskTable
from prometheus_client import CollectorRegistry, Counter, Gauge

from progressbench.core.config import Timing

log = logging.getLogger(__name__)

#: Tasks claimed per query.
BATCH = 100
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


@dataclass
class Dispatcher:
    table: TaskTable
    config: QueueConfig
    timing: Timing
    http: httpx.AsyncClient
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

    def poke(self) -> None:
        """A task was created: look for due work now rather than at the next poll."""
        self.wake.set()

    async def run(self) -> None:
        svc = self.meters.service
        while not self.stopping.is_set():
            free = self.config.max_concurrent_dispatches - len(self.attempts)
            self.wake.clear()
            claimed: list[TaskRow] = []
            try:
                claimed = await self.table.claim_due(min(free, BATCH), self.deadline_s + LEASE_MARGIN_S)
                for task in claimed:
                    wait = self.bucket.take(time.monotonic())
                    job = asyncio.create_task(self._attempt(task, wait), name=f"push-{task.name}")
                    self.attempts.add(job)
                    job.add_done_callback(self.attempts.discard)
                if len(claimed) == BATCH:
                    continue
                depth, due = await self.table.status()
                self.meters.depth.labels(svc).set(depth)
            except Exception:  # a DB hiccup must not end the queue; it is logged and retried
                log.exception("dispatch pass failed")
                due = self.poll_s
            timeout = self.poll_s if due is None or free <= 0 else min(max(due, 0.005), self.poll_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)

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
                self.wake.set()

    async def _push(self, task: TaskRow) -> None:
        svc = self.meters.service
        token = self.key.sign(
            id_token_claims(self.issuer, task.audience, time.time(), self.config.oidc_ttl_s)
        )
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
        try:
            async with asyncio.timeout(self.deadline_s):
                response = await self.http.post(
                    task.url,
                    json=task.body,
                    headers=headers,
                    timeout=httpx.Timeout(self.deadline_s, connect=min(self.deadline_s, self.connect_s)),
                )
            status = response.status_code
            retry_after = parse_retry_after(response.headers.get("retry-after"))
        except TimeoutError:
            error = "DEADLINE_EXCEEDED"
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        outcome = str(status) if status is not None else error or "error"
        self.meters.attempts.labels(svc, outcome).inc()
        executed = counts_as_execution(status)
        if status is not None and status in SUCCESS:
            await self.table.record_attempt(task.name, status, None, executed, done="succeeded", retry_in_s=0)
            return
        attempts_made = task.dispatch_count + 1
        age = time.time() - task.created_at.timestamp()
        if gives_up(self.retry, attempts_made, age):
            self.meters.gave_up.labels(svc).inc()
            log.warning("task %s failed for good after %d attempts (%s)", task.name, attempts_made, outcome)
            await self.table.record_attempt(task.name, status, error, executed, done="failed", retry_in_s=0)
            return
        delay = next_delay(self.retry, attempts_made, status, retry_after)
        self.meters.retries.labels(svc).inc()
        log.info("task %s attempt %d: %s; retry in %.3fs", task.name, attempts_made, outcome, delay)
        await self.table.record_attempt(task.name, status, error, executed, done=None, retry_in_s=delay)

    async def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        for job in list(self.attempts):
            job.cancel()
        if self.attempts:
            await asyncio.wait(list(self.attempts), timeout=5)
