"""Server face of ``polling``: create with ``202 {href}``, read the job's state with a conditional GET.

``GET href`` returns the job's *current* state: status, the step it is at
(the last event it committed: seq, kind, message), the result once done.
Nothing else: a step that starts and ends between two polls is never seen
(the pattern's design, scored as ``coalesced``). ``GET href?after=N`` is the
cursor form (variant ``polling:log``): the state plus every event with
``seq > N``, so a poller misses nothing.

``POST /polling/in-instance/jobs`` (variant ``polling:in-instance``, the
Cloud Run article, seeds/003) runs the job as a background task of the API
instance that accepted it, not on a worker. That instance has request-based
billing: the job advances only while the instance is serving a request
(:mod:`progressbench.core.throttle`), and an instance that gets no request for
its idle period is reaped with the job. The status stays in the shared store,
so any instance answers the polls.

The ``ETag`` covers exactly what the body would say (status, step, attempt,
and for the cursor form the cursor and the last event in it), so an
unchanged job answers ``304`` and costs the phone a few bytes. A status
poll's 304 is answered from memory when the process's notify feed says the
job has not changed since it was last read (:mod:`.etags`): the token is
checked, the database is not touched. While the job
runs, ``Retry-After`` carries the poll interval the server wants; at time
scales below 1 it is fractional (RFC 9110 only allows integers — the scaled
testbed needs sub-second values).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from progressbench.transports.polling.etags import EtagCache

from progressbench.core.throttle import RequestCpu
from progressbench.kit.context import CreateJob, ServiceContext
from progressbench.kit.meters import retry_after_header
from progressbench.kit.notify import NotifyHub, hub_for
from progressbench.kit.store import EventRow, JobRow

PREFIX = "/polling"
log = logging.getLogger(__name__)


def _etag(*parts: object) -> str:
    digest = hashlib.blake2s("|".join(str(p) for p in parts).encode(), digest_size=8).hexdigest()
    return f'"{digest}"'


def state_body(job: JobRow, latest: EventRow | None) -> dict[str, Any]:
    """What a status poll says: the job as it is now, the last step it reached, its result."""
    return {
        "job_id": str(job.id),
        "status": job.status,
        "current_step": job.current_step,
        "total_steps": job.total_steps,
        "attempt": job.attempt,
        "terminal": job.terminal,
        "step": None
        if latest is None
        else {"seq": latest.seq, "kind": latest.kind, "message": latest.message},
        "result": job.result if job.status == "done" else None,
    }


class PollingServer:
    """Routes of ``polling``; one ETag cache per service process, fed by the process's notify hub."""

    def __init__(self) -> None:
        self._caches: dict[int, tuple[NotifyHub, EtagCache]] = {}

    def _etags(self, ctx: ServiceContext) -> EtagCache:
        """This process's cache, told by the hub whether it is listening right now."""
        hub = hub_for(ctx)
        found = self._caches.get(id(hub))
        if found is None or found[0] is not hub:
            found = (hub, EtagCache())
            self._caches[id(hub)] = found
            hub.watch_all(found[1])
        cache = found[1]
        cache.live(hub.ready.is_set())
        return cache

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

        @router.post("/in-instance/jobs", status_code=202)
        async def create_in_instance(
            body: CreateJob, response: Response, owner: str = Depends(ctx.current_user)
        ) -> dict[str, object]:
            created = await ctx.create_job(body, "polling:in-instance", owner)
            job_id = created.job.id
            throttle = RequestCpu(
                grant_s=timing.scaled(timing.request_cpu_grant_s),
                idle_s=timing.scaled(timing.scale_down_idle_s),
            )
            if not ctx.jobs.start(job_id, "instance-background", throttle=throttle):
                log.warning("job %s: this instance is shutting down, it stays pending", job_id)
            href = f"{PREFIX}/jobs/{job_id}"
            response.headers["Location"] = href
            return {"job_id": str(job_id), "href": href, "token": created.token, "status": "pending"}

        @router.get("/jobs/{job_id}", response_model=None)
        async def status(
            job_id: str, request: Request, after: int | None = Query(default=None, ge=0)
        ) -> Response:
            headers = {"Cache-Control": "no-cache"}
            retry_after = retry_after_header(timing.scaled(timing.poll_interval_s))
            ticket = None
            if after is None:
                owner, uid = ctx.reader(request, job_id)
                etags = self._etags(ctx)
                if hit := etags.match(uid, owner, request.headers.get("if-none-match")):
                    # unchanged since this process last read it, and the feed says nothing moved
                    if not hit.terminal:
                        headers["Retry-After"] = retry_after
                    return Response(status_code=304, headers={**headers, "ETag": hit.etag})
                ticket = etags.ticket(uid)
            job = await ctx.readable_job(request, job_id)
            if not job.terminal:
                headers["Retry-After"] = retry_after
            if after is None:
                # The state: the last event the job committed is where it is now.
                recent = await ctx.store.events_after(job.id, max(job.current_step - 1, 0))
                latest = recent[-1] if recent else None
                headers["ETag"] = _etag(job.status, job.attempt, latest.seq if latest else 0)
                if ticket is not None:
                    self._etags(ctx).put(ticket, job.owner, headers["ETag"], job.terminal)
                if request.headers.get("if-none-match") == headers["ETag"]:
                    return Response(status_code=304, headers=headers)
                if latest is not None:
                    ctx.meters.messages.labels(ctx.meters.service, "polling").inc()
                return JSONResponse(state_body(job, latest), headers=headers)
            events = await ctx.store.events_after(job.id, after)
            last = events[-1].seq if events else after
            headers["ETag"] = _etag(job.status, job.current_step, job.attempt, after, last)
            if request.headers.get("if-none-match") == headers["ETag"]:
                return Response(status_code=304, headers=headers)
            body = {
                **state_body(job, events[-1] if events else None),
                "events": [e.as_json() for e in events],
                "next_after": last,
            }
            if events:
                ctx.meters.messages.labels(ctx.meters.service, "polling").inc(len(events))
            return JSONResponse(body, headers=headers)

        return router
