"""The contract every transport implements, as small Protocols.

A transport is one subpackage with two faces:

* **server** — routes mounted on the services. :class:`ApiRoutes` for the
  public API (the "Vercel route" a phone calls), :class:`WorkerRoutes` for
  a worker instance. A transport implements one or both; they are separate
  Protocols so nobody writes a method that raises ``NotImplementedError``.
* **client** — a :class:`~progressbench.core.contract.Watcher`: given a job
  request, an async iterator of :mod:`progressbench.core.events`
  (``Submitted`` first, then progress, connection changes, resumes...). It
  ends after the terminal event; the session driver applies the deadline and
  stamps times. It must not swallow what it saw: every drop it notices is a
  ``Disconnected``, every resume a ``Resumed``.

The client face and the registry entry live in the core
(:mod:`progressbench.core.contract`) so the harness can use them without the
service kit; they are re-exported here for the transports' convenience.

Variants (``relay:ack-at-end``) are an option string the transport
interprets; nothing outside ``transports/`` branches on names.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from progressbench.core.billed import Billed, Mode
from progressbench.core.contract import (
    ClientSettings,
    JobRequest,
    Prepared,
    ProbeReport,
    ServiceSpec,
    Transport,
    Watcher,
)

if TYPE_CHECKING:
    from fastapi import APIRouter

    from progressbench.kit.context import ServiceContext
    from progressbench.kit.executor import OnCommit
    from progressbench.kit.rawroutes import RawRoute

__all__ = [
    "ApiRoutes",
    "Billed",
    "ClientSettings",
    "CommitHooks",
    "Cron",
    "Crons",
    "JobRequest",
    "Mode",
    "Prepared",
    "ProbeReport",
    "RawApiRoutes",
    "ServiceSpec",
    "Transport",
    "Watcher",
    "WorkerRoutes",
]


@runtime_checkable
class ApiRoutes(Protocol):
    def api_router(self, ctx: ServiceContext) -> APIRouter: ...


@runtime_checkable
class RawApiRoutes(Protocol):
    """Optional: API routes served as plain ASGI apps ahead of the framework's routing.

    For long-lived streams, which would otherwise hold the framework's
    per-request layers for their whole life (:mod:`progressbench.kit.rawroutes`).
    Meters, limits and CORS still apply to them.
    """

    def raw_api_routes(self, ctx: ServiceContext) -> list[RawRoute]: ...


@runtime_checkable
class WorkerRoutes(Protocol):
    def worker_router(self, ctx: ServiceContext) -> APIRouter: ...


@runtime_checkable
class CommitHooks(Protocol):
    """Optional: be told of every event the store commits for this transport's jobs."""

    def on_commit(self, ctx: ServiceContext) -> OnCommit: ...


@dataclass(frozen=True)
class Cron:
    """A scheduled call a pattern's deployment makes (Vercel Cron, Cloud Scheduler).

    ``run`` is awaited every ``period_s`` (real seconds at time scale 1.0; the
    API scales it) on the API service, the first time one period after start.
    """

    name: str
    period_s: float
    run: Callable[[], Awaitable[None]]


@runtime_checkable
class Crons(Protocol):
    """Optional: scheduled jobs of the pattern, run on the API service."""

    def crons(self, ctx: ServiceContext) -> list[Cron]: ...
