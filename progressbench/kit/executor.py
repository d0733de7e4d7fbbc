"""Runs jobs: claim the lease, do each step, checkpoint it, finish.

Shutdown story (Cloud Run sends SIGTERM, then SIGKILL 10 s later): when the
``shutdown`` event is set, a job that is between steps releases its lease at
once; a job inside a step finishes that step if what is left of it fits in
the grace budget (60 % of the scaled grace period, leaving time to commit and
exit), otherwise it abandons the step. Either way the job is marked
``interrupted`` so another instance resumes it from the last committed step
without waiting for the lease to expire. After a SIGKILL nothing runs: the
lease simply goes stale and a watchdog takes the job over.

Every step is committed with the instance's lease checked in the same
transaction; an instance that lost its lease stops without writing.

Unfenced executions (``fenced=False``) reproduce a worker with no lease at all,
as the story's ``await runAudit(id)`` push handler: it takes the job from its
checkpoint even while another execution runs it, and neither stops for the
other (events converge by seq; the repeated work shows in ``step_runs``).

Upstream failures (the ``flaky-upstream`` server fault): each step's external
call fails with ``upstream_failure_rate``, after the step's work was spent
(the model API answered 503 at the end). The execution releases the job
(``interrupted``, error recorded) and returns ``"retryable"``: whether anything
retries it is the pattern's business (a queue's retry, a cron, nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from progressbench.core.config import Timing
from progressbench.core.job import EventKind, JobSpec, Step, plan, terminal_message
from progressbench.core.throttle import Cpu, RequestCpu
from progressbench.kit.meters import Meters
from progressbench.kit.store import Store

log = logging.getLogger(__name__)

Outcome = Literal["done", "failed", "released", "lost", "busy", "missing", "retryable", "reaped"]
ContextKind = Literal["request", "worker-background", "job-runner", "instance-background"]
#: Whether the instance gives the job CPU right now, and how soon to ask again (seconds).
CpuGate = Callable[[], tuple[Cpu, float]]

#: What started an execution (recorded as ``trigger`` in its context): the first dispatch, a
#: queue's retry, a pattern's watchdog cron, the workers' lease watchdog.
DISPATCH, QUEUE_RETRY, CRON, LEASE_WATCHDOG = "dispatch", "queue-retry", "cron", "lease-watchdog"
TRIGGERS = (DISPATCH, QUEUE_RETRY, CRON, LEASE_WATCHDOG)

#: Fraction of the grace period a job may spend finishing its current step.
GRACE_BUDGET = 0.6


@dataclass(frozen=True)
class ExecutionContext:
    """Where a job actually ran; stored with the job and every step run."""

    kind: ContextKind
    service: str
    instance: str
    pid: int = field(default_factory=os.getpid)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "service": self.service,
            "instance": self.instance,
            "pid": self.pid,
            **self.extra,
        }


@dataclass(frozen=True, slots=True)
class Committed:
    """An event the store just committed for a job, handed to the job's transport hook."""

    job_id: uuid.UUID
    owner: str
    transport: str
    seq: int
    kind: EventKind
    message: str
    payload: dict[str, Any]


OnCommit = Callable[[Committed], Awaitable[None]]
#: Given a job's transport (as stored with the job), its commit hook or None.
HookResolver = Callable[[str], OnCommit | None]


async def _announce(on_commit: OnCommit | None, event: Committed) -> None:
    """Run the transport's hook; its failure is logged, never the job's failure.

    The store already holds the event: a notification channel that drops it
    is exactly what the testbed measures, not a reason to stop the work.
    """
    if on_commit is None:
        return
    try:
        await on_commit(event)
    except Exception:
        log.exception("commit hook failed for job %s seq %d", event.job_id, event.seq)


async def run_job(
    store: Store,
    job_id: uuid.UUID,
    ctx: ExecutionContext,
    timing: Timing,
    shutdown: asyncio.Event,
    *,
    from_pending: bool = True,
    hooks: HookResolver | None = None,
    upstream_failure_rate: float = 0.0,
    fenced: bool = True,
    on_wait: Callable[[float], None] | None = None,
    cpu: CpuGate | None = None,
    renewer: LeaseRenewer | None = None,
) -> Outcome:
    """Run (or resume) one job to its end, or until shutdown or a lost lease.

    ``renewer``: the instance renews the leases of all its jobs together
    (:class:`LeaseRenewer`); without one the job renews its own (:class:`Pulse`).

    ``on_wait`` is told the seconds each step spent in its planned duration
    (the part of the job the time scale compresses); the rest of the job's
    time (claims, commits, hooks) is processing, real at any scale, and the
    cost model must not stretch it by the scale (``kit/meters.py``).

    ``cpu`` (an instance with request-based billing): the work advances only
    while it says ``run``; when it says ``reaped`` the instance is gone and the
    job is abandoned where it stands (``failed``, no terminal event).

    After each committed step and after the terminal event, the hook of the
    job's transport (``hooks(job.transport)``) is awaited, e.g. to publish
    the step to a room; it runs for resumed jobs too, whoever resumes them.
    """
    lease_s = timing.scaled(timing.job_lease_s)
    row = await store.claim(
        job_id, ctx.instance, ctx.as_json(), lease_s, from_pending=from_pending, steal=not fenced
    )
    if row is None:
        existing = await store.get_job(job_id)
        return "missing" if existing is None else "busy"
    on_commit = hooks(row.transport) if hooks is not None else None
    spec = JobSpec.model_validate(row.spec)
    job_plan = plan(spec)
    heartbeat_s = timing.scaled(timing.job_heartbeat_s)
    grace_budget = timing.scaled(timing.shutdown_grace_s) * GRACE_BUDGET
    context = ctx.as_json()
    log.info("job %s attempt %d from step %d on %s", job_id, row.attempt, row.current_step, ctx.instance)
    pulse = Pulse(store, job_id, ctx.instance, renewer)

    async def finish(status: EventKind, message: str, payload: dict[str, Any], **outcome: Any) -> bool:
        """Write the terminal event (fenced by the lease) and, once written, announce it."""
        ok = await store.finish(
            job_id,
            row.owner,
            ctx.instance,
            job_plan.terminal_seq,
            status,
            message,
            payload,
            fenced=fenced,
            **outcome,
        )
        if ok:
            event = Committed(
                job_id, row.owner, row.transport, job_plan.terminal_seq, status, message, payload
            )
            await _announce(on_commit, event)
        return ok

    if renewer is not None:
        renewer.hold(job_id)
    try:
        for step in job_plan.remaining(row.current_step):
            if shutdown.is_set():
                return await _let_go(store, job_id, ctx.instance, cpu is not None, step.seq)
            if job_plan.fail_at_step == step.seq:
                ok = await finish(
                    "failed",
                    terminal_message("failed", step),
                    {"failed_step": step.seq},
                    error=f"injected failure at step {step.seq}",
                )
                return "failed" if ok else "lost"
            began = time.monotonic()
            verdict = await _work(
                store, job_id, ctx.instance, step, heartbeat_s, grace_budget, shutdown, fenced, cpu, pulse
            )
            if on_wait is not None:
                on_wait(time.monotonic() - began)
            if verdict == "lost":
                return "lost"
            if verdict == "reaped":
                log.info("job %s: its instance got no request for its idle period and was reaped", job_id)
                await store.abandon(job_id, ctx.instance, f"instance reaped while idle at step {step.seq}")
                return "reaped"
            if verdict == "abandon":
                return await _let_go(store, job_id, ctx.instance, cpu is not None, step.seq)
            if upstream_fails(job_id, step.seq, row.attempt, upstream_failure_rate):
                log.info("job %s step %d: upstream call failed (retryable)", job_id, step.seq)
                await store.release(job_id, ctx.instance, error=f"upstream call failed at step {step.seq}")
                return "retryable"
            if not await store.commit_step(
                job_id,
                row.owner,
                step,
                job_plan.total_steps,
                row.attempt,
                ctx.instance,
                context,
                fenced=fenced,
                worked_s=time.monotonic() - began,
            ):
                return "lost"
            await _announce(
                on_commit,
                Committed(
                    job_id,
                    row.owner,
                    row.transport,
                    step.seq,
                    "step",
                    step.message,
                    step.payload(job_plan.total_steps),
                ),
            )
        ok = await finish(
            "done",
            terminal_message("done"),
            {"steps": job_plan.total_steps},
            result={"images": job_plan.total_steps},
        )
        return "done" if ok else "lost"
    finally:
        if renewer is not None:
            renewer.drop(job_id)


async def _let_go(store: Store, job_id: uuid.UUID, instance: str, in_instance: bool, seq: int) -> Outcome:
    """On shutdown: release the job for another instance, unless it was a task of this instance.

    A background task of a request-billed instance (seeds/003) has nobody to
    hand it to: it dies with its instance, unfinished.
    """
    if in_instance:
        await store.abandon(job_id, instance, f"its instance shut down at step {seq}")
        return "reaped"
    await store.release(job_id, instance)
    return "released"


def upstream_fails(job_id: uuid.UUID, seq: int, attempt: int, rate: float) -> bool:
    """Whether this step's external call fails on this attempt (deterministic per job, step, attempt).

    Seeded rather than drawn from the process's RNG, so a replayed run fails the
    same calls and a retry of the same step is a fresh draw.
    """
    if rate <= 0:
        return False
    digest = hashlib.blake2b(f"{job_id}:{seq}:{attempt}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big")).random() < rate


#: Lease renewals still in flight (asyncio keeps only weak references to tasks).
_BEATS: set[asyncio.Task[bool]] = set()


def _beat_done(task: asyncio.Task[bool]) -> None:
    _BEATS.discard(task)
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("lease renewal failed: %r", exc)


class LeaseRenewer:
    """An instance's lease renewals for all the jobs it runs: one ``UPDATE`` per heartbeat interval.

    A worker holding many jobs renews their leases together, the way it
    would batch any periodic bookkeeping; one statement per job per
    interval made the renewals the bulk of the database traffic (a job at
    time scale 0.1 renews every 0.2 s: 1,000 jobs, 5,000 statements a
    second, ahead of the steps' own commits in the connection pool's queue).
    A job whose lease the statement no longer finds (another instance took
    it over, or it ended) is reported lost to its :class:`Pulse`. A failed
    statement is logged and tried again at the next interval: the leases
    then age as they would under a slow database.
    """

    def __init__(self, store: Store, instance: str, heartbeat_s: float) -> None:
        self.store = store
        self.instance = instance
        self.heartbeat_s = heartbeat_s
        self._held: set[uuid.UUID] = set()
        self._lost: set[uuid.UUID] = set()
        self._task: asyncio.Task[None] | None = None

    def hold(self, job_id: uuid.UUID) -> None:
        """Renew ``job_id``'s lease from now on (its claim just took it)."""
        self._lost.discard(job_id)
        self._held.add(job_id)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"lease-renewer-{self.instance}")

    def drop(self, job_id: uuid.UUID) -> None:
        self._held.discard(job_id)
        self._lost.discard(job_id)

    def lost(self, job_id: uuid.UUID) -> bool:
        return job_id in self._lost

    async def _run(self) -> None:
        while self._held:
            await asyncio.sleep(self.heartbeat_s)
            asked = list(self._held)
            try:
                kept = await self.store.heartbeat_many(asked, self.instance)
            except Exception as exc:  # the database is unreachable: the leases age, the jobs go on
                log.warning("renewing %d leases failed: %r", len(asked), exc)
                continue
            self._lost.update(j for j in asked if j not in kept and j in self._held)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class Pulse:
    """A job's lease renewal beside its work: at most one heartbeat in flight, never waited for.

    A worker renews its lease on a timer while the work (a model call, an
    upload) runs; the work does not wait for the database. Awaited inline,
    every heartbeat's latency was added to the step: a step of 0.3 s with one
    renewal took 0.3 s plus a round trip, and the 30-90 s model call (scaled)
    one round trip per heartbeat interval. Under load (hundreds of jobs on one
    instance, their heartbeats denser by the time scale) the round trips grew,
    steps took several times their plan, more jobs ran at once, and every
    query got slower still. Here the work keeps its planned duration; a
    renewal that has not answered yet is not sent twice, so a slow database
    sees one pending heartbeat per job, not a queue of them. A renewal that
    found the lease taken is seen at the next interval (and the step's
    commit checks the lease in its own transaction anyway).
    """

    def __init__(
        self, store: Store, job_id: uuid.UUID, instance: str, renewer: LeaseRenewer | None = None
    ) -> None:
        self._store = store
        self._job_id = job_id
        self._instance = instance
        self._beat: asyncio.Task[bool] | None = None
        #: The instance's batched renewals (:class:`LeaseRenewer`), if it has them: then this pulse
        #: sends nothing itself and only asks whether the lease was found gone.
        self._renewer = renewer

    def lost(self) -> bool:
        """Whether the last answered renewal found another holder (re-raises its failure)."""
        if self._renewer is not None:
            return self._renewer.lost(self._job_id)
        beat = self._beat
        if beat is None or not beat.done():
            return False
        self._beat = None
        return not beat.result()

    def renew(self) -> None:
        """Send a renewal unless one is still in flight (or the instance's renewer sends them)."""
        if self._beat is not None or self._renewer is not None:
            return
        beat = asyncio.create_task(self._store.heartbeat(self._job_id, self._instance))
        _BEATS.add(beat)
        beat.add_done_callback(_beat_done)
        self._beat = beat


async def _work(
    store: Store,
    job_id: uuid.UUID,
    instance: str,
    step: Step,
    heartbeat_s: float,
    grace_budget_s: float,
    shutdown: asyncio.Event,
    fenced: bool = True,
    cpu: CpuGate | None = None,
    pulse: Pulse | None = None,
) -> Literal["finished", "abandon", "lost", "reaped"]:
    """Spend the step's duration, renewing the lease beside it (:class:`Pulse`); react to shutdown.

    With ``cpu``, time the instance spends throttled does not count: the
    deadline moves on by every slice spent waiting for CPU.
    """
    if cpu is not None:
        return await _throttled_work(store, job_id, instance, step, heartbeat_s, shutdown, fenced, cpu)
    pulse = pulse or Pulse(store, job_id, instance)
    deadline = time.monotonic() + step.duration_s
    finishing = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return "finished"
        if not finishing and shutdown.is_set():
            if left > grace_budget_s:
                return "abandon"
            finishing = True  # it fits in the grace period: finish, then release
        wait = min(left, heartbeat_s)
        if finishing or shutdown.is_set():
            await asyncio.sleep(wait)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(shutdown.wait(), timeout=wait)
            if shutdown.is_set():
                continue
        if pulse.lost() and fenced:
            return "lost"
        if time.monotonic() < deadline:
            pulse.renew()


async def _throttled_work(
    store: Store,
    job_id: uuid.UUID,
    instance: str,
    step: Step,
    heartbeat_s: float,
    shutdown: asyncio.Event,
    fenced: bool,
    cpu: CpuGate,
) -> Literal["finished", "abandon", "lost", "reaped"]:
    """The step's work on a request-billed instance: it advances only in slices the instance has CPU.

    The lease is still renewed while throttled (the instance is alive, only
    slow), so no watchdog takes the job elsewhere; a reaped instance stops.
    """
    left = step.duration_s
    last_beat = time.monotonic()
    while left > 0:
        if shutdown.is_set():
            return "abandon"
        verdict, tick = cpu()
        tick = min(tick, heartbeat_s)
        if verdict == "reaped":
            return "reaped"
        began = time.monotonic()
        await asyncio.sleep(min(left, tick) if verdict == "run" else tick)
        if verdict == "run":
            left -= time.monotonic() - began
        if time.monotonic() - last_beat >= heartbeat_s:
            last_beat = time.monotonic()
            if not await store.heartbeat(job_id, instance) and fenced:
                return "lost"
    return "finished"


class JobPool:
    """The jobs one service instance is running in the background.

    Keeps a strong reference to each task (asyncio holds only weak ones),
    refuses duplicates of a job already running here, and on shutdown waits
    for jobs to release or finish within the grace budget before cancelling.
    """

    def __init__(self, store: Store, timing: Timing, service: str, instance: str) -> None:
        self.store = store
        self.timing = timing
        self.service = service
        self.instance = instance
        self.shutdown = asyncio.Event()
        self.tasks: dict[uuid.UUID, asyncio.Task[Outcome]] = {}
        #: Set by the service once its transports' hooks exist.
        self.hooks: HookResolver | None = None
        #: The ``flaky-upstream`` condition of the deployment (0: upstream never fails).
        self.upstream_failure_rate = 0.0
        self.outcomes: dict[Outcome, int] = {}
        #: Set by the service: told when a job starts and ends here (its work-seconds).
        self.meters: Meters | None = None
        #: The leases of every job running here, renewed together.
        self.renewer = LeaseRenewer(store, instance, timing.scaled(timing.job_heartbeat_s))

    def running(self, job_id: uuid.UUID) -> bool:
        return job_id in self.tasks

    def start(
        self,
        job_id: uuid.UUID,
        kind: ContextKind,
        *,
        from_pending: bool = True,
        trigger: str = DISPATCH,
        throttle: RequestCpu | None = None,
    ) -> bool:
        """Run the job here in the background; ``trigger`` says what started this execution.

        ``throttle``: this instance has request-based billing, so the job gets
        CPU only as the policy says from this process's requests (its meters).
        """
        if job_id in self.tasks or self.shutdown.is_set():
            return False
        cpu: CpuGate | None = None
        if throttle is not None:
            if self.meters is None:
                raise RuntimeError("a throttled job needs the instance's meters")
            cpu = _gate(throttle, self.meters, time.monotonic())
        ctx = ExecutionContext(
            kind=kind, service=self.service, instance=self.instance, extra={"trigger": trigger}
        )
        task = asyncio.create_task(
            run_job(
                self.store,
                job_id,
                ctx,
                self.timing,
                self.shutdown,
                from_pending=from_pending,
                hooks=self.hooks,
                upstream_failure_rate=self.upstream_failure_rate,
                on_wait=self.meters.work_waited if self.meters is not None else None,
                cpu=cpu,
                renewer=self.renewer,
            ),
            name=f"job-{job_id}",
        )
        self.tasks[job_id] = task
        if self.meters is not None:
            self.meters.work_begin(job_id)
        task.add_done_callback(functools.partial(self._done, job_id))
        return True

    def _done(self, job_id: uuid.UUID, task: asyncio.Task[Outcome]) -> None:
        self.tasks.pop(job_id, None)
        if self.meters is not None:
            self.meters.work_end(job_id)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("job %s crashed: %r", job_id, exc)
            return
        outcome = task.result()
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    async def close(self) -> None:
        """Signal shutdown and give running jobs the grace budget to let go."""
        self.shutdown.set()
        pending = list(self.tasks.values())
        if pending:
            budget = self.timing.scaled(self.timing.shutdown_grace_s) * GRACE_BUDGET + 0.5
            _done, still = await asyncio.wait(pending, timeout=budget)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=2)
        await self.renewer.close()


def _gate(policy: RequestCpu, meters: Meters, started: float) -> CpuGate:
    """The policy, asked with this instance's requests as its metering sees them."""
    clock = meters.clock

    def decide() -> tuple[Cpu, float]:
        return policy.decide(
            clock.in_flight, clock.last_request_end, started, time.monotonic()
        ), policy.tick_s

    return decide
