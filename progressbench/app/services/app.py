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

from progressbench.app.services.auth import auth_router
from progressbench.core.config import ServiceConfig
from progressbench.kit.context import ServiceContext
from progressbench.kit.executor import JobPool
from progressbench.kit.limits import BodyLimit, JobCreationLimit
from progressbench.kit.meters import MeteringMiddleware, Meters
from progressbench.kit.store import Store, parse_job_id
from progressbench.transports import REGISTRY
from progressbench.transports.types import ApiRoutes, CommitHooks, WorkerRoutes

log = logging.getLogger(__name__)


class RunRequest(BaseModel):
    job_id: str


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
    jobs.meters = meters
    return ServiceContext(config=config, store=store, meters=meters, http=http, jobs=jobs)


async def _watchdog(ctx: ServiceContext) -> None:
    """Take over jobs whose instance died or let go of them (stale lease), if their pattern would."""
    timing = ctx.config.timing
    lease = timing.scaled(timing.job_lease_s)
    skip = [t.name for t in REGISTRY.values() if not t.orphans_resumed]
    while not ctx.jobs.shutdown.is_set():
        try:
            for job_id in await ctx.store.orphaned_jobs(lease, skip_transports=skip):
                if ctx.jobs.start(job_id, "worker-background", from_pending=False):
                    log.info("watchdog: took over job %s", job_id)
        except Exception:  # keep the watchdog alive through a DB hiccup; it is logged
            log.exception("watchdog pass failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ctx.jobs.shutdown.wait(), timeout=max(lease / 2, 0.05))


def build_app(config: ServiceConfig) -> FastAPI:
    ctx = build_context(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.loop = asyncio.get_running_loop()
        await ctx.store.open()
        watchdog = None
        if config.role == "worker" and config.watchdog:
            watchdog = asyncio.create_task(_watchdog(ctx), name="watchdog")
        try:
            yield
        finally:
            await ctx.jobs.close()
            if watchdog is not None:
                watchdog.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watchdog
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
            started = ctx.jobs.start(job_id, "worker-background")
            return {"job_id": str(job_id), "accepted": started, "instance": config.instance}

    if config.role == "api":
        app.include_router(auth_router(ctx))

    hooks = {t.name: t.server.on_commit(ctx) for t in REGISTRY.values() if isinstance(t.server, CommitHooks)}
    ctx.jobs.hooks = lambda transport: hooks.get(transport.partition(":")[0])

    for transport in REGISTRY.values():
        server = transport.server
        if config.role == "api" and isinstance(server, ApiRoutes):
            app.include_router(server.api_router(ctx))
        if config.role == "worker" and isinstance(server, WorkerRoutes):
            app.include_router(server.worker_router(ctx))

    app.add_middleware(JobCreationLimit, limits=config.limits, secret=config.token_secret)
    app.add_middleware(BodyLimit, max_body_bytes=config.limits.max_body_bytes)
    app.add_middleware(MeteringMiddleware, meters=ctx.meters)
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
