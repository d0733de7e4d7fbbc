"""Server face of ``sse`` (resumable): the DB owns the job, the stream is a view of it.

``POST /sse/jobs`` (bearer access token: the owner) creates the job, dispatches it to a worker and answers
``202 {job_id, token, events_href}``. ``GET events_href`` checks the
credential *before* any stream starts (401/404, or 400 for a malformed
``Last-Event-ID``), then streams every event after ``Last-Event-ID``
(``id:`` = seq), tails new ones with LISTEN/NOTIFY wake-ups, sends the
terminal event and closes.

Browsers: ``EventSource`` cannot send headers, so the stream also takes the
job's read token as ``?token=`` (as the relay rooms do), or the session
cookie sign-in sets, and the resume cursor as ``?last_event_id=`` for a page
that was reloaded (see :func:`_stream_reader`, :func:`resume_point`). CORS
for the pages' origins is the API's (``ServiceConfig.cors_origins``).

The stream route is served as a plain ASGI app ahead of FastAPI's routing
(:class:`_Events`, :mod:`progressbench.kit.rawroutes`): same checks, same
status codes and error bodies, none of the framework's per-request layers
held for a stream's life.

Fan-out: the streams of one job in this process share one channel
(:mod:`.fanout`): one store read per change, each event encoded once, the
same bytes written to every stream; heartbeats are the channel's too.

Cancellation story: a client that goes away ends its stream (its
``http.disconnect``); nothing but the stream's place in the job's channel is
released, because the job does not depend on the stream. The platform's
request timeout (``Timing.request_timeout_s``) ends the stream cleanly at
its limit, and so does the service's shutdown; the client reconnects with
``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import re
import uuid

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from progressbench.transports.sse import stream
from progressbench.transports.sse.fanout import Fanout
from progressbench.transports.sse.wire import BadLastEventId, parse_last_event_id
from starlette.types import Scope

from progressbench.core import identity, tokens
from progressbench.core.events import TERMINAL
from progressbench.kit.context import CreateJob, ServiceContext
from progressbench.kit.notify import hub_for
from progressbench.kit.rawroutes import RawRoute
from progressbench.kit.store import JobRow

PREFIX = "/sse"
NAME = "sse"
#: Query parameters a browser page can set where an ``EventSource`` cannot send headers.
TOKEN_PARAM = "token"
LAST_EVENT_ID_PARAM = "last_event_id"
#: ``events_href``: the path parameter as FastAPI would match it (one segment).
EVENTS_PATH = re.compile(PREFIX + r"/jobs/([^/]+)/events")


def resume_point(request: Request) -> str | None:
    """The raw resume cursor: the ``Last-Event-ID`` header, else ``?last_event_id=``.

    The header wins: a page opens ``...?last_event_id=7`` after a reload, and
    on its own reconnects the browser keeps that URL but sends the header with
    the newer id it has seen since.
    """
    header = request.headers.get("last-event-id")
    return header if header is not None else request.query_params.get(LAST_EVENT_ID_PARAM)


async def _stream_reader(ctx: ServiceContext, request: Request, job_id: str) -> JobRow:
    """The job, read with the first credential the request presents (the one it is judged by).

    1. ``Authorization: Bearer`` (job read token or the owner's access token);
    2. ``?token=`` — only the job's read token (one job, read-only): never an
       access token in a URL;
    3. the session cookie sign-in set (``identity.SESSION_COOKIE``, an access
       token): the owner's, for any of their jobs.

    A bad credential is 401 with its reason even when another would have
    passed: nothing falls through to a weaker check.
    """
    if request.headers.get("authorization") is not None:
        return await ctx.readable_job(request, job_id)
    query = request.query_params.get(TOKEN_PARAM)
    if query is not None:
        return await ctx.job_readable_with(query, job_id, job_token_only=True)
    cookie = request.cookies.get(identity.SESSION_COOKIE)
    if cookie is not None:
        try:
            identity.verify_access(ctx.secret, cookie)  # an access token, nothing else
        except tokens.TokenRejected as exc:
            raise HTTPException(401, f"session cookie: {exc.reason}") from None
        return await ctx.job_readable_with(cookie, job_id)
    raise HTTPException(
        401,
        "no credentials: send Authorization: Bearer <token>, ?token=<job token> or the session cookie",
        headers={"WWW-Authenticate": "Bearer"},
    )


class _Events:
    """``GET /sse/jobs/{job_id}/events`` as a raw ASGI route (:mod:`progressbench.kit.rawroutes`).

    Served ahead of FastAPI's routing so an open stream holds none of the
    framework's routing layers for its life, only the meters' and its own
    (a third less memory per stream); the admission (this object's call)
    ends before the stream starts, and only the :class:`~.stream.JobStream`
    it returns is held. The checks are the
    route's as before, all made before the first byte is sent: the credential
    (:func:`_stream_reader`: 401 with its reason, 404 for an unknown or
    another owner's job), then the cursor (400 for a malformed
    ``Last-Event-ID``); a refusal is the API's JSON error, never a stream.
    """

    def __init__(self, server: ResumableSseServer, ctx: ServiceContext) -> None:
        self._server = server
        self._ctx = ctx
        self._prelude = stream.retry_hint(ctx.config.timing.scaled(server.retry_s))
        self._fanout: Fanout | None = None

    def fanout(self) -> Fanout:
        """This process's channels (made at the first stream: the hub needs the running loop)."""
        if self._fanout is None:
            ctx, timing = self._ctx, self._ctx.config.timing
            self._fanout = Fanout(
                hub_for(ctx),
                ctx.jobs.shutdown,
                ctx.meters.messages.labels(ctx.meters.service, NAME),
                heartbeat_s=timing.scaled(self._server.heartbeat_s),
                fallback_s=timing.scaled(self._server.fallback_s),
            )
        return self._fanout

    async def admit(self, scope: Scope, job_id: str) -> tuple[uuid.UUID, int, bool]:
        """The job's id, the cursor to replay after and whether the job had ended; or the refusal.

        The request object lives only here: the stream keeps none of it.
        """
        request = Request(scope)
        job = await _stream_reader(self._ctx, request, job_id)
        try:
            after = parse_last_event_id(resume_point(request))
        except BadLastEventId as exc:
            raise HTTPException(400, str(exc)) from None
        return job.id, after, job.status in TERMINAL

    async def __call__(self, scope: Scope, groups: tuple[str, ...]) -> stream.JobStream:
        """The admitted request's stream (:data:`~progressbench.kit.rawroutes.RawAdmit`); the deadline
        runs from here."""
        job_id, after, finished = await self.admit(scope, groups[0])
        timing = self._ctx.config.timing
        deadline = asyncio.get_running_loop().time() + timing.scaled(timing.request_timeout_s)
        return stream.JobStream(self.fanout(), job_id, after, deadline, self._prelude, finished)


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
        """Job creation; the event stream is a raw route (:meth:`raw_api_routes`)."""
        router = APIRouter(prefix=PREFIX)

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

        return router

    def raw_api_routes(self, ctx: ServiceContext) -> list[RawRoute]:
        """``GET events_href``: the stream, ahead of FastAPI's routing (see :class:`_Events`)."""
        return [RawRoute("GET", EVENTS_PATH, _Events(self, ctx))]
