"""Server face of ``relay``: enqueue on the API, OIDC-checked push on the worker, publish to rooms.

* API ``POST /relay/jobs[?ack=end]`` (body: :class:`CreateJob`; bearer access
  token: the owner) creates the
  job, enqueues its task with CreateTask over HTTP to the queue service
  (``peers["queue"]``, a service token for ``queue``; the queue counts the
  operation and takes the push target only from its allowlist) and
  answers ``202 {job_id, token, room, events_href}``. If the queue cannot be
  reached after a few tries it answers ``503`` and the job stays pending.
* API ``GET /relay/jobs/{id}/events?after=N`` (bearer job token, 401/404 like
  polling) is the snapshot a phone fetches on every (re)connect.
* Worker ``POST /relay/tasks/run`` is the push target. It checks the OIDC
  token (:mod:`progressbench.transports.relay.queue.oidc`; ``aud`` must be ``peers["worker"]``,
  the worker *service* URL the queue pushes to, whichever instance or proxy
  the bytes cross), then, by the task's ``ack``:

  - ``now`` (``relay``): ``202`` at once, the job runs in the background.
    The queue's retry-on-5xx is given up: if the instance dies or an upstream
    call fails, the task is already gone from the queue and the job sits
    ``interrupted`` (or with a stale lease) until the **watchdog cron** on the
    API (every ``Timing.watchdog_cron_s``, 60 s real) re-enqueues it; the
    push then resumes it from its last committed step.
  - ``end`` (``relay:ack-at-end``): the request is held until the job ends
    (``200``), so instance death fails the push and the queue's retry runs
    it again (resuming from the last committed step). A job released on
    SIGTERM answers ``503``, a retryable upstream failure ``500``: the queue
    retries with its backoff. A job another instance is running is waited
    for.

  Duplicate pushes (at-least-once) are idempotent: a finished job answers
  ``200`` at once, a running one is joined, never started twice.
* Commit hook: every committed event is POSTed to the job's room
  (``peers["rooms"]/parties/main/<job_id>``, service token for ``rooms``). A failed
  publish is logged and dropped; the phone recovers it from the snapshot.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from typing import Any, Literal

import httpx
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from progressbench.transports.relay import ACK_AT_END
from progressbench.transports.relay.queue.oidc import JwksCache, verify
from progressbench.transports.types import Cron
from prometheus_client import Counter

from progressbench.core.tokens import TokenRejected, bearer
from progressbench.kit.context import CreateJob, ServiceContext
from progressbench.kit.executor import (
    CRON,
    DISPATCH,
    QUEUE_RETRY,
    Committed,
    ExecutionContext,
    OnCommit,
    Outcome,
    run_job,
)
from progressbench.kit.meters import REJECT_RETRY_AFTER_S, request_waits_on_job, retry_after_header
from progressbench.kit.store import parse_job_id

log = logging.getLogger(__name__)

NAME = "relay"
PREFIX = "/relay"
RUN_PATH = "/relay/tasks/run"
ROOM_PREFIX = "/parties/main"
Ack = Literal["now", "end"]


def room_path(job_id: uuid.UUID | str) -> str:
    return f"{ROOM_PREFIX}/{job_id}"


def task_name(job_id: uuid.UUID) -> str:
    return f"job-{job_id}"


class RelayServer:
    """``publish_timeout_s`` / ``jwks_refetch_s`` are unscaled seconds."""

    def __init__(self, publish_timeout_s: float = 5.0, jwks_refetch_s: float = 10.0) -> None:
        self.publish_timeout_s = publish_timeout_s
        self.jwks_refetch_s = jwks_refetch_s

    # ------------------------------------------------------------------ API

    def api_router(self, ctx: ServiceContext) -> APIRouter:
        router = APIRouter(prefix=PREFIX)

        @router.post("/jobs", status_code=202)
        async def create(
            body: CreateJob,
            response: Response,
            ack: Ack = Query(default="now"),
            owner: str = Depends(ctx.current_user),
        ) -> dict[str, Any]:
            transport = NAME if ack == "now" else f"{NAME}:{ACK_AT_END}"
            created = await ctx.create_job(body, transport, owner)
            job_id = created.job.id
            if not await _enqueue(ctx, job_id, ack):
                raise HTTPException(
                    503,
                    "the task queue is unavailable",
                    headers={
                        "Retry-After": retry_after_header(ctx.config.timing.scaled(REJECT_RETRY_AFTER_S))
                    },
                )
            href = f"{PREFIX}/jobs/{job_id}/events"
            response.headers["Location"] = href
            return {
                "job_id": str(job_id),
                "token": created.token,
                "room": room_path(job_id),
                "events_href": href,
                "ack": ack,
            }

        @router.get("/jobs/{job_id}/events")
        async def snapshot(job_id: str, request: Request, after: int = Query(default=0, ge=0)) -> Response:
            job = await ctx.readable_job(request, job_id)
            events = await ctx.store.events_after(job.id, after)
            body = {
                "job_id": str(job.id),
                "status": job.status,
                "terminal": job.terminal,
                "events": [e.as_json() for e in events],
            }
            return JSONResponse(body, headers={"Cache-Control": "no-store"})

        return router

    # ------------------------------------------------------------------ worker

    def worker_router(self, ctx: ServiceContext) -> APIRouter:
        router = APIRouter()
        timing = ctx.config.timing
        peers = ctx.config.peers
        issuer = peers.get("queue", "")
        audience = peers.get("worker", ctx.config.worker_url or "")
        pushes = Counter(
            "pb_relay_pushes",
            "Queue pushes received, by result",
            ["service", "result"],
            registry=ctx.meters.registry,
        )

        async def fetch_jwks() -> dict[str, Any]:
            response = await ctx.http.get(f"{issuer}/jwks", timeout=max(timing.scaled(10.0), 2.0))
            response.raise_for_status()
            document: dict[str, Any] = response.json()
            return document

        cache = JwksCache(fetch_jwks, refetch_interval_s=max(timing.scaled(self.jwks_refetch_s), 0.1))

        def answer(status: int, result: str, **extra: Any) -> JSONResponse:
            pushes.labels(ctx.meters.service, result).inc()
            return JSONResponse(
                {"result": result, "instance": ctx.config.instance, **extra}, status_code=status
            )

        @router.post(RUN_PATH, response_model=None)
        async def run(request: Request) -> JSONResponse:
            try:
                token = bearer(request.headers.get("authorization"))
                keys = await cache.keys_for(token)
                verify(token, keys, issuer=issuer, audience=audience)
            except TokenRejected as exc:
                pushes.labels(ctx.meters.service, f"rejected-{exc.status}").inc()
                return JSONResponse(
                    {"detail": exc.reason}, status_code=exc.status, headers={"WWW-Authenticate": "Bearer"}
                )
            except httpx.HTTPError as exc:
                log.warning("cannot fetch the queue's JWKS: %r", exc)
                return answer(503, "jwks-unavailable")
            try:
                body = await request.json()
                job_id = parse_job_id(str(body["job_id"]))
                ack: str = body.get("ack", "now")
                trigger = str(body.get("trigger", DISPATCH))
            except (ValueError, KeyError, TypeError):
                return answer(400, "bad-task")
            if job_id is None:
                return answer(400, "bad-task")
            job = await ctx.store.get_job(job_id)
            if job is None:
                return answer(200, "missing")  # nothing to run; a retry would not help
            if job.terminal:
                return answer(200, "duplicate", job_status=job.status)
            if ctx.jobs.shutdown.is_set():
                return answer(503, "shutting-down")
            if trigger == DISPATCH and request.headers.get("x-cloudtasks-taskretrycount", "0") not in (
                "",
                "0",
            ):
                trigger = QUEUE_RETRY  # a cron's task stays the cron's, however often it is re-pushed
            if ack != "end":
                started = ctx.jobs.start(job_id, "worker-background", trigger=trigger)
                return answer(202, "accepted" if started else "joined")
            outcome = await _run_to_end(ctx, job_id, trigger)
            if outcome in ("lost", "busy"):  # another execution finished it meanwhile
                finished = await ctx.store.get_job(job_id)
                if finished is not None and finished.terminal:
                    return answer(200, "duplicate", job_status=finished.status)
            if outcome in ("done", "failed"):
                return answer(200, outcome)
            if outcome == "missing":
                return answer(200, "missing")
            if outcome == "retryable":
                return answer(500, outcome)  # the upstream failed: 5xx so the queue retries
            return answer(503, outcome)  # released on SIGTERM, or lease lost: let the queue retry

        return router

    # ------------------------------------------------------------------ cron

    def crons(self, ctx: ServiceContext) -> list[Cron]:
        """The watchdog cron of the 202-first pattern ("a watchdog cron picks up stuck audits")."""
        timing = ctx.config.timing
        passes = itertools.count(1)

        async def watchdog() -> None:
            if not ctx.config.peers.get("queue"):
                return  # no relay in this stack
            n = next(passes)
            for job_id in await ctx.store.stale_jobs([NAME], timing.scaled(timing.job_lease_s)):
                log.info("watchdog cron: re-enqueueing job %s", job_id)
                await ctx.store.touch(job_id)
                await _enqueue(ctx, job_id, "now", name=f"{task_name(job_id)}-cron{n}", trigger=CRON)

        return [Cron(name="relay-watchdog", period_s=timing.watchdog_cron_s, run=watchdog)]

    # ------------------------------------------------------------------ commit hook

    def on_commit(self, ctx: ServiceContext) -> OnCommit:
        rooms = ctx.config.peers.get("rooms")
        timeout = max(ctx.config.timing.scaled(self.publish_timeout_s), 1.0)

        async def publish(event: Committed) -> None:
            if rooms is None:
                return
            response = await ctx.http.post(
                f"{rooms}{room_path(event.job_id)}",
                json={
                    "owner": event.owner,
                    "seq": event.seq,
                    "kind": event.kind,
                    "message": event.message,
                    "payload": event.payload,
                },
                headers={"authorization": f"Bearer {ctx.service_token('rooms')}"},
                timeout=timeout,
            )
            if response.status_code != 200:
                log.warning(
                    "publish of %s seq %d: rooms answered %s", event.job_id, event.seq, response.status_code
                )

        return publish


async def _enqueue(
    ctx: ServiceContext,
    job_id: uuid.UUID,
    ack: Ack,
    attempts: int = 3,
    name: str | None = None,
    trigger: str = DISPATCH,
) -> bool:
    """CreateTask on the queue service; True once it holds the task (409: it already did).

    Misdeployed (no queue configured), the API takes the local-development path
    (the story's ``LOCAL_WORKER_DIRECT_FIRE``): it bypasses the queue and fires at
    its own job endpoint, so the work runs inside an API request.
    """
    if ctx.misdeployed:
        return await ctx.run_here(job_id, trigger)
    peers = ctx.config.peers
    queue, worker = peers.get("queue"), peers.get("worker", ctx.config.worker_url or "")
    if not queue or not worker:
        log.error("relay needs peers queue and worker; job %s stays pending", job_id)
        return False
    task = {
        "name": name or task_name(job_id),
        "job_id": str(job_id),
        "url": f"{worker}{RUN_PATH}",
        "audience": worker,
        "body": {"job_id": str(job_id), "ack": ack, "trigger": trigger},
    }
    delay = ctx.config.timing.scaled(0.5)
    for attempt in range(attempts):
        try:
            response = await ctx.http.post(
                f"{queue}/v2/tasks",
                json=task,
                headers={"authorization": f"Bearer {ctx.service_token('queue')}"},
                timeout=max(ctx.config.timing.scaled(10.0), 2.0),
            )
            if response.is_success or response.status_code == 409:
                return True
            log.warning("enqueue of %s: queue answered %s", job_id, response.status_code)
        except httpx.HTTPError as exc:
            log.warning("enqueue of %s failed: %r", job_id, exc)
        if attempt + 1 < attempts:
            await asyncio.sleep(delay * 2**attempt)
    return False


async def _run_to_end(ctx: ServiceContext, job_id: uuid.UUID, trigger: str) -> Outcome:
    """Run the job inside this ``ack-at-end`` push and answer with its outcome.

    The story's handler is ``await runAudit(id)``: it resumes the job from its
    checkpoint and holds no lease. So a push that arrives while an earlier
    execution still runs — the queue's retry after its dispatch deadline — runs
    the job again beside it (unfenced): the events converge by seq, the work is
    done twice and ``step_runs`` shows it (a duplicate execution). The execution
    is this request's, not the instance's pool's: SIGTERM still reaches it
    through the pool's shutdown event.
    """
    request_waits_on_job()  # the push is held open for the job: its time follows the time scale
    execution = ExecutionContext(
        kind="request",
        service=ctx.config.role,
        instance=ctx.config.instance,
        extra={"execution": next(_EXECUTIONS), "trigger": trigger},
    )
    return await run_job(
        ctx.store,
        job_id,
        execution,
        ctx.config.timing,
        ctx.jobs.shutdown,
        hooks=ctx.jobs.hooks,
        upstream_failure_rate=ctx.jobs.upstream_failure_rate,
        fenced=False,
    )


_EXECUTIONS = itertools.count(1)
