"""Server face of ``polling``: create with ``202 {href}``, read with a conditional GET.

``GET href?after=N`` returns the job's state and its events with ``seq > N``.
The ``ETag`` covers exactly what the body would say (status, step, attempt,
the cursor and the last event in it), so an unchanged job answers ``304`` and
costs the phone a few bytes. While the job runs, ``Retry-After`` carries the
poll interval the server wants; at time scales below 1 it is fractional
(RFC 9110 only allows integers — the scaled testbed needs sub-second values).
"""

from __future__ import annotations

import hashlib

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from progressbench.kit.context import CreateJob, ServiceContext
from progressbench.kit.meters import retry_after_header

PREFIX = "/polling"


class PollingServer:
    def api_router(self, ctx: ServiceContext) -> APIRouter:
        router = APIRouter(prefix=PREFIX)
        timing = ctx.config.timing

        @router.post("/jobs", status_code=202)
        async def create(
            body: CreateJob, response: Response, owner: str = Depends(ctx.current_user)
        ) -> dict[str, object]:
            created = await ctx.create_job(body, "polling", owner)
            job_id = created.job.id
            ctx.spawn(ctx.dispatch(job_id), name=f"dispatch-{job_id}")
            href = f"{PREFIX}/jobs/{job_id}"
            response.headers["Location"] = href
            return {"job_id": str(job_id), "href": href, "token": created.token, "status": "pending"}

        @router.get("/jobs/{job_id}", response_model=None)
        async def status(job_id: str, request: Request, after: int = Query(default=0, ge=0)) -> Response:
            job = await ctx.readable_job(request, job_id)
            events = await ctx.store.events_after(job.id, after)
            last = events[-1].seq if events else after
            digest = hashlib.blake2s(
                f"{job.status}|{job.current_step}|{job.attempt}|{after}|{last}".encode(), digest_size=8
            ).hexdigest()
            etag = f'"{digest}"'
            headers = {"ETag": etag, "Cache-Control": "no-cache"}
            if not job.terminal:
                headers["Retry-After"] = retry_after_header(timing.scaled(timing.poll_interval_s))
            if request.headers.get("if-none-match") == etag:
                return Response(status_code=304, headers=headers)
            body = {
                "job_id": str(job.id),
                "status": job.status,
                "current_step": job.current_step,
                "total_steps": job.total_steps,
                "attempt": job.attempt,
                "terminal": job.terminal,
                "events": [e.as_json() for e in events],
                "next_after": last,
            }
            if events:
                ctx.meters.messages.labels(ctx.meters.service, "polling").inc(len(events))
            return JSONResponse(body, headers=headers)

        return router
