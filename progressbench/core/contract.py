"""The client face of the transport contract and the registry entry, free of any service code.

This is the part of :mod:`progressbench.transports.types` that the session
driver, the Locust bridge and the ledger need: what a phone asks for
(:class:`JobRequest`), where and how it connects (:class:`ClientSettings`),
the :class:`Watcher` that yields :mod:`progressbench.core.events`, and the
:class:`Transport` registry entry. The server face (routes mounted on the
services) needs the service kit and lives in ``transports/types.py``.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol, cast, runtime_checkable

from progressbench.core.billed import Billed
from progressbench.core.config import JobShape, Timing
from progressbench.core.events import ClientEvent
from progressbench.core.timers import Timer


@dataclass(frozen=True)
class JobRequest:
    """What a phone asks for: one job with this shape.

    ``owner`` names the *phone* (its sign-in account); the server's owner of
    the job is the user id of the phone's verified access token, so the body
    carries no owner.
    """

    owner: str
    shape: JobShape
    seed: int
    time_scale: float

    def body(self) -> dict[str, object]:
        return {
            "seed": self.seed,
            "time_scale": self.time_scale,
            "shape": self.shape.model_dump(mode="json"),
        }


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Where a watcher connects and how it paces itself (slots: each phone's watcher holds one).

    ``endpoints`` maps a service name (``api`` and any a transport adds) to
    the base URL the *phone* uses — through its cell's chaos proxy when a
    fault profile is active.
    """

    endpoints: dict[str, str]
    timing: Timing
    variant: str | None = None
    options: dict[str, str] = field(default_factory=dict)


@dataclass
class ProbeReport:
    """What a cross-tenant canary phone got when it tried to read another phone's job.

    ``probes`` counts attempts (each URL, stream, socket or channel tried);
    ``foreign_events`` counts events of jobs the canary does not own that any
    attempt delivered — RESULTS.md's ``canary_probes`` and ``foreign_events``.
    ``notes`` say how each attempt ended (``"status-url: 404"``), for the log.
    """

    probes: int = 0
    foreign_events: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, probe: str, outcome: str, foreign: int = 0) -> None:
        self.probes += 1
        self.foreign_events += foreign
        self.notes.append(f"{probe}: {outcome}" + (f" ({foreign} foreign events)" if foreign else ""))


class Watcher(Protocol):
    """A phone watching one job. A watcher that reads the job's current state rather than its
    events may say so with a ``coalesces = True`` attribute: the ledger then scores the steps a
    later state replaced between two reads as ``coalesced``, not ``lost``."""

    def session(self, request: JobRequest) -> AsyncIterator[ClientEvent]: ...

    async def probe(self, phone: str, victim_job_id: str, window_s: float) -> ProbeReport:
        """The canary: signed in as ``phone`` (owning no job), try to read ``victim_job_id``.

        Every way this transport's client face reads a job (status URL,
        stream, socket, channel — with the canary's own credentials) is one
        probe; long-lived ones listen for up to ``window_s`` seconds. Whatever
        they deliver is foreign. Never raises for a refusal: a refusal is the
        expected outcome.
        """
        ...


@runtime_checkable
class Prepared(Protocol):
    """Optional for a watcher: the app's own start-up, before its user taps (a page loading).

    The session driver enters :meth:`prepared` (with the phone's name: an app
    signs its user in at start-up) before it starts the session's clock and
    leaves it after the session: what happens in there is not the job's time.
    """

    def prepared(self, phone: str) -> AbstractAsyncContextManager[None]: ...


@dataclass(frozen=True)
class ServiceSpec:
    """A process a transport needs beside the API and workers (a realtime server, a queue).

    The supervisor starts ``python -m <module>`` the way it starts the API
    (see :mod:`progressbench.kit.runtime`), gives every service the
    others' URLs in ``ServiceConfig.peers``, and — when ``client_facing`` —
    puts each phone cell's chaos proxy in front of it; watchers find its URL
    in ``ClientSettings.endpoints[role]``.
    """

    role: str
    module: str
    client_facing: bool = False


def load_part(ref: str) -> object:
    """The object ``"package.module:attribute"`` names, importing its module.

    A missing module or attribute is an :class:`ImportError` that names the
    reference, so a misspelt registry entry says which part it lost.
    """
    module, sep, attribute = ref.partition(":")
    if not sep or not module or not attribute:
        raise ImportError(f"{ref!r} is not a 'package.module:attribute' reference")
    try:
        found = importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{ref}: {exc}") from exc
    try:
        return getattr(found, attribute)
    except AttributeError:
        raise ImportError(f"{ref}: module {module} has no {attribute!r}") from None


@dataclass(frozen=True)
class Transport:
    """A registry entry: everything of a transport the rest of the testbed may use.

    Its name, its two faces, its variants and services, and the files it
    ships in its subpackage (``package``): the gate rules that encode its
    resume semantics and the SQL migrations of the tables only it uses. The
    app assembles these from the registry, so adding a transport touches
    nothing outside ``transports/`` but the registry line (see
    ``transports/README.md``, checked by ``tests/unit/test_transport_parts.py``).

    The two faces are named, not held (``server_ref``, ``client_ref``) and
    imported on first use of :attr:`server` / :attr:`client`: an entry is
    plain data, so ``check``, ``report`` and the runner read every entry
    without importing four web servers, and a phone's process imports only
    the client it drives.
    """

    name: str
    #: ``"package.module:attribute"`` of a zero-argument factory (its class) of the server object,
    #: made once on first use of :attr:`server`.
    server_ref: str
    #: ``"package.module:attribute"`` of the watcher factory (``ClientSettings -> Watcher``, its
    #: class): :attr:`client`.
    client_ref: str
    #: The subpackage the transport lives in (its ``__name__``).
    package: str
    variants: frozenset[str] = frozenset()
    summary: str = ""
    services: tuple[ServiceSpec, ...] = ()
    #: A TOML file of gate rules in ``package``; two entries of one package may share it.
    rules: str = "rules.toml"
    #: SQL files in ``package``, applied after the core's migrations in this order. A file's
    #: name is its version in ``schema_migrations``: unique across the project, never renamed.
    migrations: tuple[str, ...] = ()
    #: A TOML file in ``package`` of the Postgres grants its services and routes need
    #: (:mod:`progressbench.kit.roles`); None: it needs nothing beyond the core's.
    grants: str | None = None
    #: Where the pattern means its work to run, ``"<service>/<kind>"`` (kind as recorded in a
    #: job's execution context: ``request``, ``worker-background``, ``job-runner``). A job that
    #: ran anywhere else is a ``silent-fallback`` finding.
    context: str = "worker/worker-background"
    #: Variants whose work runs elsewhere than ``context``: variant -> ``"<service>/<kind>"``.
    variant_contexts: Mapping[str, str] = field(default_factory=dict)
    #: The workers' lease watchdog (takes over a job whose heartbeat went stale, at once) is not
    #: part of every pattern: a transport opts in, for itself and every variant.
    lease_watchdog: bool = False
    #: What the platforms bill, per variant (``""`` is the default; an unlisted variant bills as it):
    #: see :mod:`progressbench.core.billed`. The cost model prices these and nothing else.
    billing: Mapping[str, tuple[Billed, ...]] = field(default_factory=dict)

    #: Timers of its client, services and libraries that cannot follow the time scale (a floor, a
    #: library constant): listed per cell as ``distortions`` (:mod:`progressbench.core.timers`).
    timers: tuple[Timer, ...] = ()
    #: What this machine lacks for a variant's client (``None`` → nothing), as a sentence for the
    #: user: checked before a run starts (``sse:browser`` needs Chromium). Absent: needs nothing.
    #: Told the variant and the watchers' options (``ClientSettings.options``).
    needs: Callable[[str | None, Mapping[str, str]], str | None] | None = None

    @cached_property
    def server(self) -> object:
        """The server object (``ApiRoutes`` and/or ``WorkerRoutes``...): imported and made once."""
        factory = load_part(self.server_ref)
        if not callable(factory):
            raise ImportError(f"{self.server_ref}: not a factory of the server object")
        return factory()

    @cached_property
    def client(self) -> Callable[[ClientSettings], Watcher]:
        """The watcher factory a phone calls with its settings (imported on first use)."""
        return cast("Callable[[ClientSettings], Watcher]", load_part(self.client_ref))

    def missing(self, variant: str | None, options: Mapping[str, str]) -> str | None:
        """What this machine lacks to run ``name:variant``'s phones; None when nothing."""
        return None if self.needs is None else self.needs(variant, options)

    def context_for(self, variant: str | None) -> str:
        """The declared execution context of ``name`` or ``name:variant``."""
        return self.variant_contexts.get(variant or "", self.context)

    @property
    def names(self) -> list[str]:
        """What ``--transports`` accepts for it: the name and each ``name:variant``."""
        return [self.name, *(f"{self.name}:{v}" for v in sorted(self.variants))]
