"""Server face of ``realtime``: insert the job, answer at once, dispatch fire-and-forget.

Pattern A of seeds/000: ``POST /realtime/jobs[?variant=V]`` inserts the job
row (``pending``, transport ``realtime`` or ``realtime:V``; bearer access token: the owner) and answers
``202 {job_id, token, anon_key}`` at once; then, ``after()``-style, it POSTs
the worker's ``/realtime/run`` with an 8 s (scaled) abort and **no retry**.

The worker runs the job **inside that request** ("Cloud Run keeps running long
after Vercel disconnects"): the abort ends only the caller's wait. A dispatch
that never reaches a live handler within the 8 s (a cold start, a slow accept,
a partition) is lost silently: the job stays ``pending``, stuck. SIGTERM
mid-job releases the job and nothing retries it: stuck, visibly. There is no
lease watchdog in this pattern.

``realtime:watchdog`` adds what a team adds next: a watchdog *cron* on the API
(every ``Timing.watchdog_cron_s``, 60 s real) that re-dispatches the stale
jobs of that variant (interrupted, heartbeat older than the lease, or pending
for longer than the lease) the same fire-and-forget way.

The owner is the verified user of the bearer token: the stack's sign-in, or a
real project's Auth (:func:`~progressbench.transports.realtime.auth.project_user`),
whose session the phone's supabase client holds. ``GET /realtime/config`` is the
app's public configuration (the anon key). ``/rest/v1`` (:mod:`.rest`) is mounted here too.

``token`` is the per-job user JWT (a Supabase-shaped JWT RLS accepts);
``anon_key`` is the project's public key. ``GET
/realtime/jobs/{id}/events?after=N`` (bearer token; 401/404 like every
transport) stands in for the PostgREST select a supabase-js app runs to
refetch rows after (re)subscribing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from progressbench.transports.realtime.auth import AuthError, issue_anon_key, project_user
from progressbench.transports.realtime.config import VARIANTS
from progressbench.transports.realtime.rest import rest_router
from progressbench.transports.types import Cron

from progressbench.kit.context import CreateJob, ServiceContext
from progressbench.kit.executor import CRON, DISPATCH, JobPool
from progressbench.kit.meters import request_waits_on_job
from progressbench.kit.store import parse_job_id

log = logging.getLogger(__name__)

PREFIX = "/realtime"
NAME = "realtime"
RUN_PATH = "/realtime/run"
WATCHDOG = "watchdog"


def transport_name(variant: str | None) -> str:
    return NAME if not variant else f"{NAME}:{variant}"


class RealtimeServer:
    def api_router(self, ctx: ServiceContext) -> APIRouter:
        """The job routes under ``/realtime`` and the PostgREST subset the phone refetches with."""
        outer = APIRouter()
        outer.include_router(self._jobs_router(ctx))
        outer.include_router(rest_router(ctx))
        return outer

    def _jobs_router(self, ctx: ServiceContext) -> APIRouter:
        router = APIRouter(prefix=PREFIX)
        anon_key = issue_anon_key(ctx.secret)

        def owner_of(request: Request) -> str:
            """The stack's signed-in user, or (against a real project) the project's Auth user."""
            try:
                return ctx.current_user(request)
            except HTTPException:
                header = request.headers.get("authorization", "")
                scheme, _, token = header.partition(" ")
                if scheme.lower() == "bearer" and token.count(".") == 2:
                    with contextlib.suppress(AuthError):
                        return project_user(ctx.secret, token.strip())
                raise

        @router.get("/config")
        async def config() -> dict[str, str]:
            """The app's public configuration: the project's anon key (every app bundle ships it)."""
            return {"anon_key": anon_key}

        @router.post("/jobs", status_code=202)
        async def create(
            body: CreateJob,
            variant: str | None = Query(default=None),
            owner: str = Depends(owner_of),
        ) -> dict[str, object]:
            if variant is not None and variant not in VARIANTS:
                raise HTTPException(422, f"unknown variant {variant!r}")
            created = await ctx.create_job(body, transport_name(variant), owner)
            job_id = created.job.id
            ctx.spawn(ctx.dispatch(job_id, attempts=1, path=RUN_PATH), name=f"dispatch-{job_id}")
            return {"job_id": str(job_id), "token": created.token, "anon_key": anon_key}

        @router.get("/jobs/{job_id}/events")
        async def events(
            job_id: str, request: Request, after: int = Query(default=0, ge=0)
        ) -> dict[str, object]:
            job = await ctx.readable_job(request, job_id)
            rows = await ctx.store.events_after(job.id, after)
            return {
                "job_id": str(job.id),
                "status": job.status,
                "terminal": job.terminal,
                "events": [e.as_json() for e in rows],
            }

        return router

    def worker_router(self, ctx: ServiceContext) -> APIRouter:
        router = APIRouter()

        @router.post(RUN_PATH, response_model=None)
        async def run(request: Request) -> JSONResponse:
            """Run the job inside this request; answer when it ends (nobody is listening by then)."""
            ctx.check_service_token(request)
            try:
                body = await request.json()
                job_id = parse_job_id(str(body["job_id"]))
                trigger = str(body.get("trigger", DISPATCH))
                abort_at = float(body.get("abort_at", "inf"))
            except (ValueError, KeyError, TypeError, AttributeError):
                raise HTTPException(400, "body must be {job_id}") from None
            if job_id is None:
                raise HTTPException(404, "job not found")
            if time.time() > abort_at or await request.is_disconnected():
                # Cloud Run's front end drops a request whose caller already aborted (the cold
                # start outlasted the 8 s): the dispatch is lost and nobody is told.
                log.info("dispatch of %s arrived after its caller aborted: dropped", job_id)
                return JSONResponse({"detail": "caller gone"}, status_code=499)
            if ctx.jobs.shutdown.is_set():
                raise HTTPException(503, "instance is shutting down")
            request_waits_on_job()  # held open for the job: its time follows the time scale
            outcome = await _hold(ctx.jobs, job_id, trigger)
            return JSONResponse({"job_id": str(job_id), "outcome": outcome, "instance": ctx.config.instance})

        return router

    def crons(self, ctx: ServiceContext) -> list[Cron]:
        timing = ctx.config.timing
        names = [transport_name(WATCHDOG)]

        async def watchdog() -> None:
            """Re-dispatch the stale jobs of ``realtime:watchdog`` (the cron route of the app)."""
            for job_id in await ctx.store.stale_jobs(names, timing.scaled(timing.job_lease_s)):
                log.info("watchdog cron: re-dispatching job %s", job_id)
                await ctx.store.touch(job_id)
                ctx.spawn(
                    ctx.dispatch(job_id, attempts=1, path=RUN_PATH, trigger=CRON), name=f"redispatch-{job_id}"
                )

        return [Cron(name="realtime-watchdog", period_s=timing.watchdog_cron_s, run=watchdog)]


async def _hold(jobs: JobPool, job_id: uuid.UUID, trigger: str) -> str:
    """Start (or join) the job in this instance's pool and wait for its outcome.

    The pool owns the task, so the caller's abort does not cancel the work.
    """
    task = jobs.tasks.get(job_id)
    if task is None:
        if not jobs.start(job_id, "request", trigger=trigger):
            return "released"
        task = jobs.tasks[job_id]
    return str(await asyncio.shield(task))
