"""The queue service process: ``python -m progressbench.transports.relay.queue.service`` (role ``queue``).

A Cloud-Tasks-style queue behind one internal URL (``peers["queue"]``):

* ``POST /v2/tasks`` — CreateTask (a service token made for ``queue``, signed
  with the services' key: no phone token passes): ``{name, job_id, url,
  audience, body, schedule_time}``; ``409`` when the name exists
  (ALREADY_EXISTS); counted as one billable operation. ``url`` must lie under
  one of the queue's configured targets (:func:`allowed_targets`: the worker
  service, ``peers["worker"]``, plus ``QueueConfig.push_targets``), else ``403``; the push's OIDC audience is
  that target, and a body ``audience`` naming anything else is refused
  (``400``) — the queue never signs a token for an audience it was not
  configured with;
* ``GET /jwks`` — the public keys the pushes' OIDC tokens are signed with;
* ``GET /healthz``, ``GET /metrics`` — for the supervisor.

At start it generates its RSA signing key (its public half published in ``relay_signing_keys``)
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

from fastapi import FastAPI, HTTPException, Request, Response
from progressbench.transports.relay.queue.dispatcher import Dispatcher, QueueMeters
from progressbench.transports.relay.queue.oidc import SigningKey, jwks
from progressbench.transports.relay.queue.push import Pusher
from progressbench.transports.relay.queue.retry import QueueConfig
from progressbench.transports.relay.queue.tasks import TaskTable
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from progressbench.core import identity, tokens
from progressbench.core.config import ServiceConfig
from progressbench.kit.meters import MeteringMiddleware, Meters
from progressbench.kit.runtime import run_asgi
from progressbench.kit.store import Store

QUEUE_CONFIG_ENV = "PROGRESSBENCH_RELAY_QUEUE"


class CreateTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,500}$")
    job_id: uuid.UUID | None = None
    url: str = Field(min_length=1, max_length=2048)
    #: Optional: the queue sets it to the allowlisted target ``url`` lies under.
    audience: str | None = Field(default=None, min_length=1, max_length=2048)
    body: dict[str, Any] = Field(default_factory=dict)
    #: Cloud Tasks' scheduleTime: not dispatched before this instant.
    schedule_time: datetime | None = None


def queue_config_from(raw: str | None) -> QueueConfig:
    if not raw:
        return QueueConfig()
    return QueueConfig.model_validate_json(raw)


AUDIENCE = "queue"


def check_service_token(service_secret: str, request: Request) -> None:
    """Only the testbed's services, with a token made for the queue (401/403)."""
    try:
        identity.verify_service(service_secret, tokens.bearer(request.headers.get("authorization")), AUDIENCE)
    except tokens.TokenRejected as exc:
        raise HTTPException(exc.status, exc.reason) from None


def allowed_targets(config: ServiceConfig, queue: QueueConfig) -> tuple[str, ...]:
    """The base URLs the queue may push to: the worker service (through its dispatch proxy),
    and any configured ``push_targets``."""
    found = (config.peers.get("worker"), config.worker_url, *queue.push_targets)
    return tuple(url.rstrip("/") for url in found if url)


def target_for(url: str, targets: tuple[str, ...]) -> str | None:
    """The allowlisted target ``url`` lies under (same origin, path below it), or None."""
    for target in targets:
        if url == target or url.startswith(target + "/"):
            return target
    return None


def build_queue_app(config: ServiceConfig, queue: QueueConfig) -> FastAPI:
    meters = Meters(config.role, config.concurrency, config.timing)
    qmeters = QueueMeters(meters.registry, config.role)
    store = Store(config.database_url, min_size=1, max_size=10)
    table = TaskTable(store.pool)
    pusher = Pusher()
    issuer = config.peers.get("queue", "progressbench-queue")
    targets = allowed_targets(config, queue)
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.loop = asyncio.get_running_loop()
        await store.open()
        key = await asyncio.to_thread(SigningKey.generate)
        await table.add_key(key)
        dispatcher = Dispatcher(table, queue, config.timing, pusher, key, issuer, qmeters)
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
            await pusher.aclose()
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
        check_service_token(config.service_secret, request)
        target = target_for(body.url, targets)
        if target is None:
            raise HTTPException(403, "url is not a configured push target")
        if body.audience is not None and body.audience != target:
            raise HTTPException(400, "audience must be the push target")
        qmeters.operations.labels(config.role, "create").inc()
        created = await table.create(
            body.name, queue.name, body.job_id, body.url, target, body.body, body.schedule_time
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
