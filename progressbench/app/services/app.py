"""The service processes: the API (the phone-facing route) and worker instances.

Both are FastAPI apps built from one :class:`ServiceConfig`. Each transport
mounts its routes through the :mod:`progressbench.transports.types` Protocols, so this
module never knows a transport by name.

Shutdown story: SIGTERM sets the job pool's shutdown event immediately
(see ``__main__``), so background jobs start letting go while uvicorn drains
requests; the lifespan exit then waits for the jobs within the grace budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from progressbench.app.services.auth import auth_router
from progressbench.core.config import ServiceConfig
from progressbench.kit.context import RUN_HERE_PATH, ServiceContext
from progressbench.kit.executor import LEASE_WATCHDOG, ExecutionContext, JobPool, run_job
from progressbench.kit.limits import BodyLimit, JobCreationLimit
from progressbench.kit.meters import MeteringMiddleware, Meters
from progressbench.kit.rawroutes import RawRoute, RawRoutes
from progressbench.kit.store import Store, parse_job_id
from progressbench.transports.registry import REGISTRY
from progressbench.transports.types import ApiRoutes, CommitHooks, Cron, Crons, RawApiRoutes, WorkerRoutes

log = logging.getLogger(__name__)


class RunRequest(BaseModel):
    job_id: str
    #: What started this execution (``dispatch``, ``cron``...), recorded with it.
    trigger: str = "dispatch"


def build_context(config: ServiceConfig) -> ServiceContext:
    meters = Meters(config.role, config.concurrency, config.timing)
    store = Store(
        config.database_url,
        min_size=1,
        max_size=20,
        on_write=meters.count_write,
        on_read=meters.count_read,
    )
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=200, max_keepalive_connections=50))
    jobs = JobPool(store, config.timing, config.role, config.instance)
    jobs.upstream_failure_rate = config.conditions.upstream_failure_rate
    jobs.meters = meters
    return ServiceContext(config=config, store=store, meters=meters, http=http, jobs=jobs)


def watched() -> list[str]:
    """The transports and variants (exact names) whose pattern includes the workers' lease watchdog.

    A transport opts in for itself and its variants, except a variant whose work is not the
    workers' to begin with (``polling:in-instance`` runs on the API instance that accepted it and
    dies with it: a worker adopting it would be a fallback its pattern does not have).
    """
    return [
        f"{t.name}:{variant}" if variant else t.name
        for t in REGISTRY.values()
        if t.lease_watchdog
        for variant in (None, *sorted(t.variants))
        if t.context_for(variant).startswith("worker/")
    ]


async def _watchdog(ctx: ServiceContext, transports: list[str]) -> None:
    """Take over jobs whose instance died or let go of them (stale lease), for opted-in transports.

    Not every pattern has one: the patterns of ``realtime``, ``relay`` and ``sse-naive`` do not
    (their stuck jobs wait for a cron, or for nobody), so they are not in ``transports``.
    """
    timing = ctx.config.timing
    lease = timing.scaled(timing.job_lease_s)
    while not ctx.jobs.shutdown.is_set():
        try:
            for job_id in await ctx.store.orphaned_jobs(lease, transports):
                if ctx.jobs.start(job_id, "worker-background", from_pending=False, trigger=LEASE_WATCHDOG):
                    log.info("watchdog: took over job %s", job_id)
        except Exception:  # keep the watchdog alive through a DB hiccup; it is logged
            log.exception("watchdog pass failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ctx.jobs.shutdown.wait(), timeout=max(lease / 2, 0.05))


async def _cron(ctx: ServiceContext, cron: Cron) -> None:
    """Call ``cron.run`` every scaled period until shutdown; a failed pass is logged, not fatal."""
    period = max(ctx.config.timing.scaled(cron.period_s), 0.05)
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ctx.jobs.shutdown.wait(), timeout=period)
        if ctx.jobs.shutdown.is_set():
            return
        try:
            await cron.run()
        except Exception:
            log.exception("cron %s failed", cron.name)


def _run_here_route(app: FastAPI, ctx: ServiceContext) -> None:
    """``POST /jobs/run`` on the API: the target of the misdeployed fallback (seeds/004).

    The job runs inside this request (context ``request`` on the ``api``), and
    the platform cuts the request at its timeout: the work is cancelled where it
    stands, the job keeps its ``running`` row and a lease nobody renews, and no
    failure is written (the catch block ran inside a terminated request).
    """
    timing = ctx.config.timing

    @app.post(RUN_HERE_PATH)
    async def run_here(body: RunRequest, request: Request) -> JSONResponse:
        ctx.check_service_token(request)
        job_id = parse_job_id(body.job_id)
        if job_id is None:
            raise HTTPException(404, "job not found")
        execution = ExecutionContext(
            kind="request",
            service=ctx.config.role,
            instance=ctx.config.instance,
            extra={"trigger": body.trigger},
        )
        try:
            async with asyncio.timeout(timing.scaled(timing.request_timeout_s)):
                outcome = await run_job(
                    ctx.store,
                    job_id,
                    execution,
                    timing,
                    ctx.jobs.shutdown,
                    hooks=ctx.jobs.hooks,
                    upstream_failure_rate=ctx.jobs.upstream_failure_rate,
                )
        except TimeoutError:
            log.warning("job %s: request timeout while running in the API's request", job_id)
            return JSONResponse({"detail": "request timeout"}, status_code=504)
        return JSONResponse({"job_id": str(job_id), "outcome": outcome})


#: Headers a page may send cross-origin: auth, JSON bodies, SSE resume, retries, supabase-js's own.
CORS_REQUEST_HEADERS = [
    "authorization",
    "content-type",
    "last-event-id",
    "idempotency-key",
    "apikey",
    "x-client-info",
]


def build_app(config: ServiceConfig) -> FastAPI:
    ctx = build_context(config)
    crons = [c for t in REGISTRY.values() if isinstance(t.server, Crons) for c in t.server.crons(ctx)]

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.loop = asyncio.get_running_loop()
        await ctx.store.open()
        loops: list[asyncio.Task[None]] = []
        names = watched()
        if config.role == "worker" and config.watchdog and names:
            loops.append(asyncio.create_task(_watchdog(ctx, names), name="watchdog"))
        if config.role == "api":
            loops += [asyncio.create_task(_cron(ctx, c), name=f"cron-{c.name}") for c in crons]
        try:
            yield
        finally:
            await ctx.jobs.close()
            for loop in loops:
                loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop
            await ctx.http.aclose()
            await ctx.store.close()

    app = FastAPI(title=f"progressbench {config.role}", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.ctx = ctx
    _install_error_handlers(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "role": config.role, "instance": config.instance}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(ctx.meters.exposition(), media_type="text/plain; version=0.0.4")

    if config.role == "worker":

        @app.post("/run", status_code=202)
        async def run(body: RunRequest, request: Request) -> dict[str, object]:
            """Cloud-Run-service style: ACK at once, run the job in the background."""
            ctx.check_service_token(request, "worker")
            job_id = parse_job_id(body.job_id)
            if job_id is None or await ctx.store.get_job(job_id) is None:
                raise HTTPException(404, "job not found")
            if ctx.jobs.shutdown.is_set():
                raise HTTPException(503, "instance is shutting down")
            started = ctx.jobs.start(job_id, "worker-background", trigger=body.trigger)
            return {"job_id": str(job_id), "accepted": started, "instance": config.instance}

    if config.role == "api":
        app.include_router(auth_router(ctx))

    hooks = {t.name: t.server.on_commit(ctx) for t in REGISTRY.values() if isinstance(t.server, CommitHooks)}
    ctx.jobs.hooks = lambda transport: hooks.get(transport.partition(":")[0])
    if config.role == "api":
        _run_here_route(app, ctx)

    raw: list[RawRoute] = []
    for transport in REGISTRY.values():
        server = transport.server
        if config.role == "api" and isinstance(server, ApiRoutes):
            app.include_router(server.api_router(ctx))
        if config.role == "api" and isinstance(server, RawApiRoutes):
            raw += server.raw_api_routes(ctx)
        if config.role == "worker" and isinstance(server, WorkerRoutes):
            app.include_router(server.worker_router(ctx))

    # Innermost: a raw route (a long-lived stream) passes the meters, limits and CORS, not the router.
    app.add_middleware(RawRoutes, routes=raw)
    app.add_middleware(JobCreationLimit, limits=config.limits, secret=config.token_secret)
    app.add_middleware(BodyLimit, max_body_bytes=config.limits.max_body_bytes)
    app.add_middleware(MeteringMiddleware, meters=ctx.meters)
    if config.cors_origins:
        # Outermost, so a preflight is answered before limits and meters see a request.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_credentials=True,  # the session cookie rides along (EventSource withCredentials)
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=["Location", "Retry-After"],
            max_age=600,
        )
    return app


def _install_error_handlers(app: FastAPI) -> None:
    """Every error is a JSON body with a status; no traceback ever reaches a client."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append(f"{loc}: {err.get('msg', 'invalid')}")
        return JSONResponse({"detail": "invalid request", "problems": problems}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        ref = uuid.uuid4().hex[:8]
        log.exception("unhandled error %s on %s %s", ref, request.method, request.url.path)
        return JSONResponse({"detail": f"internal error (ref {ref})"}, status_code=500)
