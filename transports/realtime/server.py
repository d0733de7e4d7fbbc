"""API face of ``realtime``: insert the job, answer at once, dispatch fire-and-forget.

``POST /realtime/jobs`` (bearer access token: the owner) inserts the job row (``pending``) and answers
``202 {job_id, token, anon_key}`` immediately; the worker is then called in
the background with an 8 s (scaled) abort and **no retry** — Next.js
``after()`` style. A dispatch that fails or times out leaves the job
``pending`` with nobody running it; the report counts it as stuck (the
``dispatch-loss`` profile shows it). ``token`` is the per-job user JWT the
phone hands to ``set_auth``; ``anon_key`` is the project's public key.

``GET /realtime/jobs/{id}/events?after=N`` (bearer token; 401/404 like every
transport) stands in for the PostgREST select a supabase-js app would run to
refetch rows after (re)subscribing.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from progressbench.transports.realtime.auth import issue_anon_key

from progressbench.kit.context import CreateJob, ServiceContext

PREFIX = "/realtime"
NAME = "realtime"


class RealtimeServer:
    def api_router(self, ctx: ServiceContext) -> APIRouter:
        router = APIRouter(prefix=PREFIX)
        anon_key = issue_anon_key(ctx.secret)

        @router.post("/jobs", status_code=202)
        async def create(body: CreateJob, owner: str = Depends(ctx.current_user)) -> dict[str, object]:
            created = await ctx.create_job(body, NAME, owner)
            job_id = created.job.id
            ctx.spawn(ctx.dispatch(job_id, attempts=1), name=f"dispatch-{job_id}")
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
