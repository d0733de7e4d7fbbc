"""Server face of ``sse`` (resumable): the DB owns the job, the stream is a view of it.

``POST /sse/jobs`` (bearer access token: the owner) creates the job, dispatches it to a worker and answers
``202 {job_id, token, events_href}``. ``GET events_href`` (bearer token)
checks the token *before* any stream starts (401/404, or 400 for a
malformed ``Last-Event-ID``), then streams every event after
``Last-Event-ID`` (``id:`` = seq), tails new ones with LISTEN/NOTIFY
wake-ups, sends the terminal event and closes.

Cancellation story: a client that goes away cancels the generator (sse-
starlette watches for ``http.disconnect``); nothing but the stream's hub
subscription is released, because the job does not depend on the stream.
The platform's request timeout (``Timing.request_timeout_s``) ends the
stream cleanly at its limit; the client reconnects with ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from progressbench.transports.sse import stream
from progressbench.transports.sse.wire import BadLastEventId, parse_last_event_id
from sse_starlette.event import ServerSentEvent

from progressbench.core.events import TERMINAL
from progressbench.kit.context import CreateJob, ServiceContext
from progressbench.kit.notify import hub_for

PREFIX = "/sse"
NAME = "sse"


class ResumableSseServer:
    """``heartbeat_s`` / ``retry_s`` / ``fallback_s`` are unscaled seconds."""

    def __init__(
        self,
        heartbeat_s: float = stream.HEARTBEAT_S,
        retry_s: float = stream.RETRY_HINT_S,
        fallback_s: float = stream.FALLBACK_RECHECK_S,
    ) -> None:
        self.heartbeat_s = heartbeat_s
        self.retry_s = retry_s
        self.fallback_s = fallback_s

    def api_router(self, ctx: ServiceContext) -> APIRouter:
        router = APIRouter(prefix=PREFIX)
        timing = ctx.config.timing

        @router.post("/jobs", status_code=202)
        async def create(
            body: CreateJob, response: Response, owner: str = Depends(ctx.current_user)
        ) -> dict[str, object]:
            created = await ctx.create_job(body, NAME, owner)
            job_id = created.job.id
            ctx.spawn(ctx.dispatch(job_id), name=f"dispatch-{job_id}")
            href = f"{PREFIX}/jobs/{job_id}/events"
            response.headers["Location"] = href
            return {"job_id": str(job_id), "token": created.token, "events_href": href}

        @router.get("/jobs/{job_id}/events", response_model=None)
        async def events(job_id: str, request: Request) -> Response:
            job = await ctx.readable_job(request, job_id)
            try:
                after = parse_last_event_id(request.headers.get("last-event-id"))
            except BadLastEventId as exc:
                raise HTTPException(400, str(exc)) from None
            hub = hub_for(ctx)
            deadline = asyncio.get_running_loop().time() + timing.scaled(timing.request_timeout_s)

            async def content() -> AsyncIterator[ServerSentEvent]:
                with hub.subscribe(job.id) as sub:
                    yield stream.retry_event(timing.scaled(self.retry_s))
                    async for event in stream.tail(
                        ctx,
                        sub,
                        after,
                        deadline,
                        transport=NAME,
                        fallback_s=timing.scaled(self.fallback_s),
                        finished=job.status in TERMINAL,
                    ):
                        yield event

            return stream.response(content(), timing.scaled(self.heartbeat_s))

        return router
