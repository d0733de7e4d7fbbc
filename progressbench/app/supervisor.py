"""The stack supervisor: Postgres, the chaos proxies and every service, as real processes on loopback.

A :class:`Stack` composes the parts, each in its own module:
:mod:`~progressbench.app.instances` (services and the processes behind them),
:mod:`~progressbench.app.proxies` (the chaos proxies in front of them),
:mod:`~progressbench.app.faults` (Cloud-Run-style shutdowns and replacements)
and :mod:`~progressbench.app.metering` (meters summed across instances).
With ``autoscale`` on, the ``api`` and ``worker`` services run behind fronts
with Cloud-Run-style autoscaling (:mod:`~progressbench.app.autoscaler`).

Teardown: :meth:`Stack.close` (also via ``with``, on errors and on Ctrl-C or
SIGTERM) undoes start-up in reverse — instances and job runners (SIGTERM,
then SIGKILL after a short wait), the chaos proxy, the embedded PostgreSQL —
each step running even if an earlier one failed, and a stop signal that
lands meanwhile is held until the end (:func:`~progressbench.app.interrupts.deferred`),
so no child outlives the stack. Should the supervisor itself be killed,
service processes notice their parent is gone and stop themselves.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from progressbench.app.autoscaler import Autoscaler
from progressbench.app.faults import ServerFaults
from progressbench.app.instances import SERVICES_MODULE, Fleet, Instance, Role, Service
from progressbench.app.interrupts import deferred
from progressbench.app.metering import MeterBook
from progressbench.app.processes import listen_socket, socket_url
from progressbench.app.proxies import StackProxies
from progressbench.app.schema import grants, migrate
from progressbench.chaos.client import ProxyControl
from progressbench.core.autoscale import InstanceCounts, ScalePolicy
from progressbench.core.config import Limits, ServerConditions, ServiceConfig, Timing
from progressbench.core.errors import StackError
from progressbench.kit.database import EmbeddedPostgres
from progressbench.kit.roles import ServiceRoles, drop_service_roles, provision
from progressbench.kit.store import check_reachable
from progressbench.transports.registry import services_for

#: Seconds an instance gets to leave after SIGTERM when the whole stack stops.
STOP_GRACE_S = 5.0
#: The services that scale out behind a front when ``autoscale`` is on.
SCALED_ROLES = ("api", "worker")
#: A fronted instance's own limit: Cloud Run's maximum concurrency (the front applies the real one).
FRONTED_INSTANCE_LIMIT = 1000


@dataclass(frozen=True)
class StackSettings:
    """What the supervisor needs to build a stack (derived from RunConfig)."""

    run_dir: Path
    timing: Timing = field(default_factory=Timing)
    database_url: str | None = None
    worker_instances: int = 1
    worker_concurrency: int = 80
    api_concurrency: int = 1000
    watchdog: bool = True
    #: Server faults that hold for the stack's life (a profile's ``conditions`` apply per cell).
    conditions: ServerConditions = field(default_factory=ServerConditions)
    startup_timeout_s: float = 30.0
    #: Put the chaos proxy in front of every client-facing service and the dispatch path.
    chaos: bool = True
    #: Drive this Toxiproxy-compatible server instead of starting the bundled one.
    toxiproxy_url: str | None = None
    #: Start the services these transports need (None: every registered transport's).
    transports: tuple[str, ...] | None = None
    #: Sign per-job tokens with this (default: a fresh random secret per stack).
    token_secret: str | None = field(default=None, repr=False)
    #: Body size and job-creation bounds of every service (``Limits.for_load`` for a run's own load).
    limits: Limits = field(default_factory=Limits)
    #: Browser origins the API answers CORS for (``ServiceConfig.cors_origins``).
    cors_origins: tuple[str, ...] = ()
    #: Run ``api`` and ``worker`` behind round-robin fronts with Cloud-Run-style autoscaling
    #: (``run`` turns it on; a bare stack keeps one process per service, as benchmarks need).
    autoscale: bool = False
    #: The autoscaler's ceiling per service (the worker's is at least ``worker_instances``).
    max_instances: int = 20

    def policies(self) -> dict[str, ScalePolicy]:
        """Each scaled service's policy: its concurrency, at least one instance, the scaled idle period."""
        idle = self.timing.scaled(self.timing.scale_down_idle_s)
        return {
            "api": ScalePolicy(self.api_concurrency, 1, self.max_instances, idle),
            "worker": ScalePolicy(
                self.worker_concurrency,
                self.worker_instances,
                max(self.max_instances, self.worker_instances),
                idle,
            ),
        }


class Stack:
    """Postgres, API, workers and transport services as real processes. Use as a context manager."""

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.log_dir = settings.run_dir / "logs"
        self.secret = settings.token_secret or secrets.token_urlsafe(32)
        self.postgres: EmbeddedPostgres | None = None
        self.database_url = settings.database_url or ""
        self.fleet = Fleet(self.log_dir, settings.startup_timeout_s)
        self.meter_book = MeterBook()
        self.faults = ServerFaults(self.fleet, self.meter_book, settings.timing, self.database_url)
        self.proxies: StackProxies | None = None
        self.client_roles: set[str] = {"api"}
        self.autoscaler: Autoscaler | None = None
        #: Each service's own database role and URL (issue #13), or the shared URL and why.
        self.db_roles = ServiceRoles(urls={})
        #: Start-up registers the undoing of each step here; close() runs them in reverse.
        self._teardown = contextlib.ExitStack()
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._start_database()
        extra = services_for(self.settings.transports)
        sockets: dict[Role, socket.socket] = {}
        for role in ("worker", "api", *(spec.role for spec in extra)):
            sockets[role] = listen_socket()
            self._teardown.callback(sockets[role].close)
        self.client_roles = {"api", *(s.role for s in extra if s.client_facing)}
        self._start_roles(list(sockets))
        peers = {role: socket_url(sock) for role, sock in sockets.items()}
        if self.settings.chaos:
            self._teardown.callback(self._close_proxies)
            self.proxies = self._start_proxies()
            host, port = sockets["worker"].getsockname()[:2]
            peers["worker"] = self.proxies.dispatch(f"{host}:{port}")
        self._teardown.callback(self.fleet.close, STOP_GRACE_S)
        base = ServiceConfig(
            role="worker",
            instance="worker",
            database_url=self.database_url,
            token_secret=self.secret,
            worker_url=peers["worker"],
            peers=peers,
            concurrency=self.settings.worker_concurrency,
            watchdog=self.settings.watchdog,
            timing=self.settings.timing,
            conditions=self.settings.conditions,
            limits=self.settings.limits,
            cors_origins=self.settings.cors_origins,
        )
        modules = {spec.role: spec.module for spec in extra}
        for role, sock in sockets.items():
            update: dict[str, object] = {
                "role": role,
                "instance": role,
                "database_url": self.db_roles.urls.get(role, self.database_url),
            }
            if role != "worker":
                update["concurrency"] = self.settings.api_concurrency
            if self.settings.autoscale and role in SCALED_ROLES:
                update["concurrency"] = FRONTED_INSTANCE_LIMIT  # the front holds the limit
            self.fleet.add(
                role,
                sock,
                base.model_copy(update=update),
                modules.get(role, SERVICES_MODULE),
                fronted=self.settings.autoscale and role in SCALED_ROLES,
            )
        started = [self.fleet.start(role) for role in sockets if role != "api"]
        started += [self.fleet.start("worker") for _ in range(self.settings.worker_instances - 1)]
        started.append(self.fleet.start("api"))
        for instance in started:
            self.fleet.wait_ready(instance)
        if self.settings.autoscale:
            self.autoscaler = Autoscaler(
                self.fleet,
                self.faults,
                self.settings.timing,
                self.settings.policies(),
                lambda: self.database_url,
            )
            self._teardown.callback(self.autoscaler.close)
            self.autoscaler.start()
            self.faults.replacer = self.autoscaler

    def _start_database(self) -> None:
        if self.settings.database_url:
            check_reachable(self.settings.database_url)
        else:
            self.postgres = EmbeddedPostgres(self.log_dir / "postgres.log")
            self._teardown.callback(self.postgres.stop)
            self.database_url = self.postgres.start()
        self.faults.database_url = self.database_url
        migrate(self.database_url)

    def _start_roles(self, services: list[Role]) -> None:
        """A least-privilege Postgres role per service (the job runner runs as the worker's).

        With a database user that may not create roles, every service keeps the shared URL:
        :func:`~progressbench.kit.roles.provision` logs why once, and ``db_roles.note`` says it.
        """
        self.db_roles = provision(self.database_url, services, grants())
        if self.db_roles.roles:
            self._teardown.callback(drop_service_roles, self.database_url, self.db_roles.roles)

    def _start_proxies(self) -> StackProxies:
        """The fault proxy: a real Toxiproxy at ``toxiproxy_url``, or the bundled one."""
        if self.settings.toxiproxy_url:
            return StackProxies.external(self.settings.toxiproxy_url)
        return StackProxies.bundled(self.log_dir, self.settings.startup_timeout_s)

    def _close_proxies(self) -> None:
        if self.proxies is not None:
            self.proxies.close()

    def close(self) -> None:
        """Stop everything start() started, in reverse order; idempotent."""
        if self._closed:
            return
        self._closed = True
        with deferred():
            self._teardown.close()

    # ------------------------------------------------------------------ the parts, as before the split

    @property
    def services(self) -> dict[Role, Service]:
        return self.fleet.services

    @property
    def control(self) -> ProxyControl | None:
        return self.proxies.control if self.proxies is not None else None

    @property
    def dispatch_proxy(self) -> str | None:
        return self.proxies.dispatch_proxy if self.proxies is not None else None

    @property
    def chaos_process(self) -> subprocess.Popen[bytes] | None:
        return self.proxies.process if self.proxies is not None else None

    # ------------------------------------------------------------------ faults

    def instance(self, name: str) -> Instance:
        return self.fleet.instance(name)

    def busiest_worker(self) -> Instance:
        return self.faults.busiest_worker()

    def server_fault(self, fault: str) -> tuple[int, int]:
        return self.faults.server_fault(fault)

    def terminate(self, instance: Instance, grace_s: float | None = None) -> str:
        return self.faults.terminate(instance, grace_s)

    def kill(self, instance: Instance) -> None:
        self.faults.kill(instance)

    def replace(self, instance: Instance, cold_start_s: float | None = None) -> Instance:
        return self.faults.replace(instance, cold_start_s)

    def reconfigure(self, conditions: ServerConditions | None = None, **timing: float) -> None:
        """Replace every instance with one running the given timing overrides (and server
        conditions, when given; None keeps the current ones)."""
        with self.autoscaler.paused() if self.autoscaler is not None else contextlib.nullcontext():
            self._reconfigure(conditions, **timing)

    def _reconfigure(self, conditions: ServerConditions | None, **timing: float) -> None:
        new_timing = self.settings.timing.model_copy(update=timing)
        for service in self.fleet.services.values():
            update: dict[str, object] = {"timing": new_timing}
            if conditions is not None:
                update["conditions"] = conditions
            service.config = service.config.model_copy(update=update)
            # Old instances go first: a service that owns something singular (the realtime
            # server's replication slot, dropped on shutdown) must not take it from its successor.
            # Between cells nobody is waiting; the service's socket queues connections meanwhile.
            spares = [i for i in service.live() if i.standby]
            old = [i for i in service.live() if not i.standby]
            for instance in [*spares, *old]:
                instance.draining = True
                self.faults.terminate(instance, grace_s=5.0)
            fresh = [self.fleet.start(service.role) for _ in old]
            for instance in fresh:
                self.fleet.wait_ready(instance)

    def start_job_runner(
        self, job_ids: list[str], task_count: int = 1, attempt: int = 0
    ) -> list[subprocess.Popen[bytes]]:
        """A Cloud-Run-Jobs-style execution: ``task_count`` runner processes, stopped with the stack."""
        if self._closed:
            raise StackError("the stack is closed")
        return self.fleet.start_job_runner(job_ids, task_count, attempt)

    # ------------------------------------------------------------------ observing

    def endpoints(self) -> dict[str, str]:
        """Direct URLs of every service (no proxy)."""
        return {role: service.url for role, service in self.fleet.services.items()}

    def cell_endpoints(self, cells: int) -> list[dict[str, str]]:
        """Per phone cell, the URL of each client-facing service through that cell's proxy."""
        direct = {role: url for role, url in self.endpoints().items() if role in self.client_roles}
        if self.proxies is None:
            return [dict(direct) for _ in range(cells)]
        return self.proxies.cell_endpoints(direct, cells)

    def cell_proxy_names(self, cells: int) -> list[list[str]]:
        self.cell_endpoints(cells)
        if self.proxies is None:
            return [[] for _ in range(cells)]
        return self.proxies.cell_proxy_names(cells)

    def meters(self) -> dict[str, dict[str, float]]:
        """Per service, counters summed over live instances plus retired ones (and the scale-out's)."""
        totals = self.meter_book.totals(self.fleet.services)
        if self.autoscaler is not None:
            for role, extra in self.autoscaler.meters().items():
                totals.setdefault(role, {}).update(extra)
        return totals

    # ------------------------------------------------------------------ scale-out

    def settle(self) -> None:
        """Before a cell: stop the idle instances above each scaled service's floor (a fresh start)."""
        if self.autoscaler is not None:
            self.autoscaler.settle()

    def instance_counts(self, t0: float) -> dict[str, InstanceCounts]:
        """Per scaled service, its instances from ``t0`` (monotonic) until now; empty without scale-out."""
        if self.autoscaler is None:
            return {}
        return self.autoscaler.counts_since(t0)
