"""The queue service process: ``python -m progressbench.transports.relay.queue.service`` (role ``queue``).

A Cloud-Tasks-style queue behind one internal URL (``peers["queue"]``):

* ``POST /v2/tasks`` — CreateTask (service token): ``{name, job_id, url,
  audience, body, schedule_time}``; ``409`` when the name exists (ALREADY_EXISTS); counted as
  one billable operation;
* ``GET /jwks`` — the public keys the pushes' OIDC tokens are signed with;
* ``GET /healthz``, ``GET /metrics`` — for the supervisor.

At start it generates its RSA signing key (recorded in ``relay_signing_keys``)
and starts the :class:`~progressbench.transports.relay.queue.dispatcher.Dispatcher`. Queue
settings default to Cloud Tasks' and can be overridden with the JSON of a
:class:`~progressbench.transports.relay.queue.retry.QueueConfig` in ``PROGRESSBENCH_RELAY_QUEUE``
(read once, here).

Shutdown story: SIGTERM stops the dispatcher at once (attempts in flight are
cancelled and retried after their lease), then uvicorn drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Request, Response
from progressbench.transports.relay.queue.dispatcher import Dispatcher, QueueMeters
from progressbench.transports.relay.queue.oidc import SigningKey, jwks
from progressbench.transports.relay.queue.retry import QueueConfig
from progressbench.transports.relay.queue.tasks import TaskTable
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from progressbench.core import tokens
from progressbench.core.config import ServiceConfig
from progressbench.kit.context import SERVICE_SUBJECT
from progressbench.kit.meters import MeteringMiddleware, Meters
from progressbench.kit.runtime import run_asgi
from progressbench.kit.store import Store

QUEUE_CONFIG_ENV = "PROGRESSBENCH_RELAY_QUEUE"


class CreateTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,500}$")
    job_id: uuid.UUID | None = None
    url: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    body: dict[str, Any] = Field(default_factory=dict)
    #: Cloud Tasks' scheduleTime: not dispatched before this instant.
    schedule_time: datetime | None = None


def queue_config_from(raw: str | None) -> QueueConfig:
    if not raw:
        return QueueConfig()
    return QueueConfig.model_validate_json(raw)


def check_service_token(secret: str, request: Request) -> None:
    try:
        grant = tokens.decode(secret, tokens.bearer(request.headers.get("authorization")))
    except tokens.TokenRejected as exc:
        raise HTTPException(401, exc.reason) from None
    if grant.owner != SERVICE_SUBJECT:
        raise HTTPException(403, "not a service token")


def build_queue_app(config: ServiceConfig, queue: QueueConfig) -> FastAPI:
    meters = Meters(config.role, config.concurrency, config.timing)
    qmeters = QueueMeters(meters.registry, config.role)
    store = Store(config.database_url, min_size=1, max_size=10)
    table = TaskTable(store.pool)
    http = httpx.AsyncClient(
        limits=httpx.Limits(max_connections=queue.max_concurrent_dispatches, max_keepalive_connections=100)
    )
    issuer = config.peers.get("queue", "progressbench-queue")
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.loop = asyncio.get_running_loop()
        await store.open()
        key = await asyncio.to_thread(SigningKey.generate)
        await table.add_key(key)
        dispatcher = Dispatcher(table, queue, config.timing, http, key, issuer, qmeters)
        state["dispatcher"] = dispatcher
        app.state.dispatcher = dispatcher
        runner = asyncio.create_task(dispatcher.run(), name="dispatcher")
        try:
            yield
        finally:
            await dispatcher.stop()
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
            await http.aclose()
            await store.close()

    app = FastAPI(title="progressbench queue", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "role": config.role, "instance": config.instance}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(meters.exposition(), media_type="text/plain; version=0.0.4")

    @app.get("/jwks")
    async def keys() -> dict[str, Any]:
        return jwks(await table.public_keys())

    @app.post("/v2/tasks")
    async def create(body: CreateTask, request: Request) -> dict[str, Any]:
        check_service_token(config.token_secret, request)
        qmeters.operations.labels(config.role, "create").inc()
        created = await table.create(
            body.name, queue.name, body.job_id, body.url, body.audience, body.body, body.schedule_time
        )
        if not created:
            raise HTTPException(409, f"task {body.name} already exists")
        dispatcher: Dispatcher | None = state.get("dispatcher")
        if dispatcher is not None:
            dispatcher.poke()
        return {"name": body.name, "queue": queue.name}

    app.add_middleware(MeteringMiddleware, meters=meters)
    return app


def _stop_dispatching(app: Any) -> None:
    state = getattr(app, "state", None)
    loop, dispatcher = getattr(state, "loop", None), getattr(state, "dispatcher", None)
    if loop is not None and dispatcher is not None:
        loop.call_soon_threadsafe(dispatcher.stopping.set)
        loop.call_soon_threadsafe(dispatcher.wake.set)


def main() -> int:
    try:
        queue = queue_config_from(os.environ.get(QUEUE_CONFIG_ENV))
    except ValidationError as exc:
        print(f"progressbench queue: {QUEUE_CONFIG_ENV}: {exc}", file=sys.stderr)
        return 2
    return run_asgi(lambda config: build_queue_app(config, queue), on_exit=_stop_dispatching)


if __name__ == "__main__":
    sys.exit(main())
