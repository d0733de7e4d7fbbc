"""Server face of ``sse-naive``: a worker instance runs the job inside the streaming request.

The first version of the Vercel + Cloud Run story (seeds/000): the phone
POSTs, "the worker streams progress through Server-Sent Events as it runs".

* API ``POST /sse-naive/jobs[?on_disconnect=cancel]`` (body:
  :class:`CreateJob`; bearer access token: the owner) creates a job with a
  server-generated id (the same
  ``ctx.create_job`` every transport uses), opens
  ``POST {worker}/sse-naive/run`` on a worker instance (service token, the
  dispatch path) and relays that stream to the phone after a first
  ``event: created`` (job id + read token). It is the Vercel route in front
  of the Cloud Run worker; 503 if no worker stream could be opened.
* Worker ``POST /sse-naive/run`` runs the job *inside this request*
  (execution context ``request``, lease held by this worker instance, so the
  ``sigterm`` profile picks this instance) and sends each event the moment
  the execution emits it. There is no replay: the stream carries only what
  this execution emits from now on, and no route lets anyone read it again.
  No heartbeat comments either: the handler writes events as they come.

Both ends cut the stream at the platform's request timeout
(``Timing.request_timeout_s``: Cloud Run 300 s default, Vercel 60 s Hobby /
300 s Pro; scaled).

What happens to the work when the phone goes away (or the timeout cuts the
stream) is the variant:

* default — the work runs on to completion with nobody listening, as a Node
  handler that ignores the closed socket on Cloud Run, or a Vercel function
  without cancellation (vercel/next.js issue #77786, 2025). A retry is a new
  job: the work runs twice.
* ``sse-naive:cancel`` (``?on_disconnect=cancel``) — the handler is
  cancelled with the request (Starlette's ``StreamingResponse``, a Vercel
  function with cancellation enabled): the job is abandoned, recorded as
  ``failed`` with no terminal event (nobody is left to tell).

The execution ignores the instance's SIGTERM (a naive handler installs no
shutdown logic): it runs until the stream is drained or the platform's
SIGKILL ends the process. Nothing adopts the job afterwards
(no ``lease_watchdog`` on the registry entry keeps the workers'
watchdog away), so a job killed mid-way stays ``running`` — stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Literal

import anyio
import httpx
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from progressbench.transports.sse.timers import MIN_RELAY_CONNECT_S, RELAY_CONNECT_S
from progressbench.transports.sse.wire import event_data
from pydantic import BaseModel

from progressbench.core.events import TERMINAL
from progressbench.kit.context import CreateJob, ServiceContext
from progressbench.kit.executor import Committed, ExecutionContext, run_job
from progressbench.kit.store import parse_job_id

log = logging.getLogger(__name__)

PREFIX = "/sse-naive"
NAME = "sse-naive"
CANCEL = "cancel"
RUN_PATH = f"{PREFIX}/run"

OnDisconnect = Literal["run-on", "cancel"]


class RunStream(BaseModel):
    """What the API asks a worker for: run this job here and stream it."""

    job_id: str
    on_disconnect: OnDisconnect = "run-on"


def _sse(data: str, event: str, seq: int | None = None) -> bytes:
    """One server-sent event, written by hand as a naive handler does (no heartbeat comments)."""
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n".encode()


def _created(job_id: uuid.UUID, token: str) -> bytes:
    return _sse(event_data({"job_id": str(job_id), "token": token}), "created")


def _event_stream(content: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        content,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


class NaiveSseServer:
    """No knobs: the naive handler sends events as they come and nothing else (no heartbeats)."""

    # ------------------------------------------------------------------ API: the Vercel route

    def api_router(self, ctx: ServiceContext) -> APIRouter:
        router = APIRouter(prefix=PREFIX)
        timing = ctx.config.timing
        # One connection per stream, as a route's fetch() opens it: no pool limit shared with the
        # service's other calls, no kept-alive connection to a worker that may since have died.
        # It lives as long as the process.
        upstreams = httpx.AsyncClient(limits=httpx.Limits(max_connections=None, max_keepalive_connections=0))

        @router.post("/jobs", response_model=None)
        async def create(
            body: CreateJob,
            on_disconnect: OnDisconnect = Query(default="run-on"),
            owner: str = Depends(ctx.current_user),
        ) -> Response:
            transport = NAME if on_disconnect == "run-on" else f"{NAME}:{CANCEL}"
            created = await ctx.create_job(body, transport, owner)
            job_id = created.job.id
            url = ctx.config.worker_url
            if not url:
                raise HTTPException(503, "no worker configured")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timing.scaled(timing.request_timeout_s)
            upstream = upstreams.build_request(
                "POST",
                f"{url}{RUN_PATH}",
                json=RunStream(job_id=str(job_id), on_disconnect=on_disconnect).model_dump(),
                headers={"authorization": f"Bearer {ctx.service_token('worker')}"},
                timeout=httpx.Timeout(None, connect=max(timing.scaled(RELAY_CONNECT_S), MIN_RELAY_CONNECT_S)),
            )
            try:
                response = await asyncio.wait_for(
                    upstreams.send(upstream, stream=True), deadline - loop.time()
                )
            except TimeoutError:
                raise HTTPException(504, "the worker did not answer within the request timeout") from None
            except httpx.HTTPError as exc:
                log.warning("naive stream of %s: no worker stream: %r", job_id, exc)
                raise HTTPException(503, "worker unavailable") from None
            if response.status_code != 200:
                await response.aclose()
                raise HTTPException(503, f"worker answered {response.status_code}")

            async def relay() -> AsyncIterator[bytes]:
                try:
                    yield _created(job_id, created.token)
                    chunks = response.aiter_raw()
                    while True:
                        left = deadline - loop.time()
                        if left <= 0:
                            return  # the platform's request timeout cuts the stream
                        try:
                            chunk = await asyncio.wait_for(anext(chunks), left)
                        except (StopAsyncIteration, TimeoutError, httpx.HTTPError):
                            return
                        yield chunk
                finally:
                    with anyio.CancelScope(shield=True):
                        await response.aclose()

            return _event_stream(relay())

        return router

    # ------------------------------------------------------------------ worker: the Cloud Run handler

    def worker_router(self, ctx: ServiceContext) -> APIRouter:
        router = APIRouter()
        timing = ctx.config.timing
        messages = ctx.meters.messages.labels(ctx.meters.service, NAME)

        @router.post(RUN_PATH, response_model=None)
        async def run(body: RunStream, request: Request) -> Response:
            ctx.check_service_token(request, "worker")
            job_id = parse_job_id(body.job_id)
            if job_id is None or await ctx.store.get_job(job_id) is None:
                raise HTTPException(404, "job not found")
            emitted: asyncio.Queue[Committed | None] = asyncio.Queue()

            async def emit(event: Committed) -> None:
                emitted.put_nowait(event)

            execution = ExecutionContext(
                kind="request", service=ctx.config.role, instance=ctx.config.instance
            )
            # A naive handler has no shutdown logic: SIGTERM never reaches the work, only SIGKILL.
            deaf = asyncio.Event()
            task = ctx.spawn(
                run_job(ctx.store, job_id, execution, timing, deaf, hooks=lambda _t: emit),
                name=f"naive-{job_id}",
            )
            task.add_done_callback(lambda _t: emitted.put_nowait(None))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timing.scaled(timing.request_timeout_s)

            async def content() -> AsyncIterator[bytes]:
                try:
                    while True:
                        left = deadline - loop.time()
                        if left <= 0:
                            return
                        try:
                            event = await asyncio.wait_for(emitted.get(), left)
                        except TimeoutError:
                            return
                        if event is None:
                            return  # the execution ended without a terminal event (lease lost)
                        messages.inc()
                        yield _sse(
                            event_data(
                                {
                                    "job_id": str(event.job_id),
                                    "seq": event.seq,
                                    "kind": event.kind,
                                    "message": event.message,
                                    "payload": event.payload,
                                }
                            ),
                            event.kind,
                            event.seq,
                        )
                        if event.kind in TERMINAL:
                            return
                finally:
                    if body.on_disconnect == "cancel" and not task.done():
                        with anyio.CancelScope(shield=True):
                            await _abandon(ctx, task, job_id, execution.instance)

            return _event_stream(content())

        return router


async def _abandon(ctx: ServiceContext, task: asyncio.Task[object], job_id: uuid.UUID, lease: str) -> None:
    """``:cancel``: the request is gone, the work stops with it and nobody is told."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    await ctx.store.abandon(job_id, lease, reason="abandoned: the client went away")


__all__ = ["CANCEL", "NAME", "NaiveSseServer", "RunStream"]
