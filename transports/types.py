"""The contract every transport implements, as small Protocols.

A transport is one subpackage with two faces:

* **server** — routes mounted on the services. :class:`ApiRoutes` for the
  public API (the "Vercel route" a phone calls), :class:`WorkerRoutes` for
  a worker instance. A transport implements one or both; they are separate
  Protocols so nobody writes a method that raises ``NotImplementedError``.
* **client** — a :class:`Watcher`: given a job request, an async iterator of
  :mod:`progressbench.events` (``Submitted`` first, then progress, connection
  changes, resumes...). It ends after the terminal event; the session driver
  applies the deadline and stamps times. It must not swallow what it saw:
  every drop it notices is a ``Disconnected``, every resume a ``Resumed``.

Variants (``relay:ack-at-end``) are an option string the transport
interprets; nothing outside ``transports/`` branches on names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from progressbench.config import JobShape, Timing
from progressbench.events import ClientEvent

if TYPE_CHECKING:
    from fastapi import APIRouter

    from progressbench.executor import OnCommit
    from progressbench.services.context import ServiceContext


@dataclass(frozen=True)
class JobRequest:
    """What a phone asks for: one job with this shape, as this owner."""

    owner: str
    shape: JobShape
    seed: int
    time_scale: float

    def body(self) -> dict[str, object]:
        return {
            "owner": self.owner,
            "seed": self.seed,
            "time_scale": self.time_scale,
            "shape": self.shape.model_dump(mode="json"),
        }


@dataclass(frozen=True)
class ClientSettings:
    """Where a watcher connects and how it paces itself.

    ``endpoints`` maps a service name (``api`` and any a transport adds) to
    the base URL the *phone* uses — through its cell's chaos proxy when a
    fault profile is active.
    """

    endpoints: dict[str, str]
    timing: Timing
    variant: str | None = None
    options: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class ApiRoutes(Protocol):
    def api_router(self, ctx: ServiceContext) -> APIRouter: ...


@runtime_checkable
class WorkerRoutes(Protocol):
    def worker_router(self, ctx: ServiceContext) -> APIRouter: ...


@runtime_checkable
class CommitHooks(Protocol):
    """Optional: be told of every event the store commits for this transport's jobs."""

    def on_commit(self, ctx: ServiceContext) -> OnCommit: ...


class Watcher(Protocol):
    def session(self, request: JobRequest) -> AsyncIterator[ClientEvent]: ...


@dataclass(frozen=True)
class ServiceSpec:
    """A process a transport needs beside the API and workers (a realtime server, a queue).

    The supervisor starts ``python -m <module>`` the way it starts the API
    (see :mod:`progressbench.services.runtime`), gives every service the
    others' URLs in ``ServiceConfig.peers``, and — when ``client_facing`` —
    puts each phone cell's chaos proxy in front of it; watchers find its URL
    in ``ClientSettings.endpoints[role]``.
    """

    role: str
    module: str
    client_facing: bool = False


@dataclass(frozen=True)
class Transport:
    """A registry entry: the transport's name, its two faces, its variants, its services."""

    name: str
    server: object  # ApiRoutes and/or WorkerRoutes
    client: Callable[[ClientSettings], Watcher]
    variants: frozenset[str] = frozenset()
    summary: str = ""
    services: tuple[ServiceSpec, ...] = ()
