"""Server face of ``sse-naive``: the streaming request *is* the job.

``POST /sse-naive/jobs`` (body: the usual job fields; bearer access token:
the owner) creates a job with a server-made id and starts it inside the
request (execution context ``request``, via
:func:`progressbench.kit.executor.run_job`) and streams each event the moment
the job commits it. The first message (``event: created``) carries the job
id and a read token. Nothing else gives the phone progress.

Faithfully bad on purpose:

* When the client goes away (sse-starlette sees ``http.disconnect``) or the
  platform's request timeout hits, the handler is cancelled and the job with
  it. It is put back to ``pending`` with no lease, so no worker watchdog
  adopts it: nobody runs it until the phone POSTs again.
* A re-POST is a *new* job (ids are the server's, never the client's: a
  client-chosen id let anyone rewind anyone's job): the work runs again from
  step 1, and whatever was committed while the phone was away is never sent
  to it — there is no cursor and no replay.
* Each request leases its job under its own name (``<instance>#<n>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator

import anyio
from fastapi import APIRouter, Depends, Response
from progressbench.transports.sse import stream
from progressbench.transports.sse.wire import event_data
from sse_starlette.event import ServerSentEvent

from progressbench.kit.context import CreateJob, ServiceContext
from progressbench.kit.executor import ExecutionContext, Outcome, run_job

PREFIX = "/sse-naive"
NAME = "sse-naive"


class NaiveSseServer:
    """``heartbeat_s`` / ``fallback_s`` are unscaled seconds."""

    def __init__(
        self, heartbeat_s: float = stream.HEARTBEAT_S, fallback_s: float = stream.FALLBACK_RECHECK_S
    ) -> None:
        self.heartbeat_s = heartbeat_s
        self.fallback_s = fallback_s

    def api_router(self, ctx: ServiceContext) -> APIRouter:
        router = APIRouter(prefix=PREFIX)
        timing = ctx.config.timing
        requests = itertools.count(1)

        async def _abandon(task: asyncio.Task[Outcome], job_id: uuid.UUID, lease: str) -> None:
            """The request is over: the job stops with it and is left for nobody."""
            with anyio.CancelScope(shield=True):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                await ctx.store.abandon(job_id, lease)

        @router.post("/jobs", response_model=None)
        async def create(body: CreateJob, owner: str = Depends(ctx.current_user)) -> Response:
            created = await ctx.create_job(body, NAME, owner)
            job_id, token = created.job.id, created.token
            lease = f"{ctx.config.instance}#{next(requests)}"
            execution = ExecutionContext(
                kind="request",
                service=ctx.config.role,
                instance=lease,
                extra={"api_instance": ctx.config.instance},
            )
            hub = stream.hub_for(ctx)
            deadline = asyncio.get_running_loop().time() + timing.scaled(timing.request_timeout_s)

            async def content() -> AsyncIterator[ServerSentEvent]:
                with hub.subscribe(job_id) as sub:
                    # Only what this request's job commits from now on reaches the phone.
                    latest = await ctx.store.events_after(job_id, 0)
                    after = latest[-1].seq if latest else 0
                    yield ServerSentEvent(
                        event="created", data=event_data({"job_id": str(job_id), "token": token})
                    )
                    task = asyncio.create_task(
                        run_job(ctx.store, job_id, execution, timing, ctx.jobs.shutdown),
                        name=f"naive-{job_id}",
                    )
                    task.add_done_callback(lambda _t: sub.wake())
                    try:
                        async for event in stream.tail(
                            ctx,
                            sub,
                            after,
                            deadline,
                            transport=NAME,
                            fallback_s=timing.scaled(self.fallback_s),
                            stop=task.done,
                        ):
                            yield event
                    finally:
                        await _abandon(task, job_id, lease)

            return stream.response(content(), timing.scaled(self.heartbeat_s))

        return router
