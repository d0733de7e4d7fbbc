"""The stack supervisor: real service processes on loopback, killed with real signals.

Each *service* (``api``, ``worker``) owns one listening socket that the
supervisor binds on 127.0.0.1 port 0 and keeps for the life of the stack;
every *instance* of the service inherits it. That socket is the service's
URL, like a Cloud Run service URL: while no instance is up (a cold start
after a kill), connections wait in its backlog instead of being refused.
Each instance also gets a private admin socket so the supervisor can scrape
its meters and tell instances apart.

Teardown: :meth:`Stack.close` (also via ``with``) SIGTERMs every instance,
SIGKILLs what is still alive after a short wait, and stops the embedded
PostgreSQL; it runs on errors and on Ctrl-C. Service processes watch their
parent pid and SIGTERM themselves if the supervisor dies.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from progressbench.app.schema import migrate
from progressbench.chaos.client import ProxyControl, ProxyInfo
from progressbench.core.config import ServiceConfig, Timing
from progressbench.core.errors import StackError
from progressbench.kit.database import EmbeddedPostgres
from progressbench.kit.meters import parse_exposition
from progressbench.kit.runtime import (
    ADMIN_FD_ENV,
    LISTEN_FD_ENV,
    READY_FILE_ENV,
    SUPERVISOR_PID_ENV,
)
from progressbench.kit.store import check_reachable
from progressbench.transports import services_for

log = logging.getLogger(__name__)

#: "api", "worker", or the role of a transport's own service.
Role = str
SERVICES_MODULE = "progressbench.app.services"
#: Every proxy the testbed creates is named with this prefix.
PROXY_PREFIX = "pb-"


def _listen_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


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
    startup_timeout_s: float = 30.0
    #: Put the chaos proxy in front of every client-facing service and the dispatch path.
    chaos: bool = True
    #: Drive this Toxiproxy-compatible server instead of starting the bundled one.
    toxiproxy_url: str | None = None
    #: Start the services these transports need (None: every registered transport's).
    transports: tuple[str, ...] | None = None
    #: Sign per-job tokens with this (default: a fresh random secret per stack).
    token_secret: str | None = field(default=None, repr=False)


@dataclass
class Instance:
    name: str
    role: Role
    process: subprocess.Popen[bytes]
    admin: socket.socket
    log_path: Path
    ready_file: Path
    started_at: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def admin_url(self) -> str:
        return _url(self.admin)

    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class Service:
    role: Role
    socket: socket.socket
    config: ServiceConfig
    module: str = SERVICES_MODULE
    instances: list[Instance] = field(default_factory=list)
    retired_meters: dict[str, float] = field(default_factory=dict)
    started: int = 0

    @property
    def url(self) -> str:
        return _url(self.socket)

    def live(self) -> list[Instance]:
        return [i for i in self.instances if i.alive()]


class Stack:
    """Postgres + API + worker instances, as real processes. Use as a context manager."""

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.log_dir = settings.run_dir / "logs"
        self.secret = settings.token_secret or secrets.token_urlsafe(32)
        self.postgres: EmbeddedPostgres | None = None
        self.database_url = settings.database_url or ""
        self.services: dict[Role, Service] = {}
        self._closed = False
        self.chaos_process: subprocess.Popen[bytes] | None = None
        self.chaos_socket: socket.socket | None = None
        self.control: ProxyControl | None = None
        self.dispatch_proxy: str | None = None
        self._cell_proxies: dict[int, dict[str, ProxyInfo]] = {}
        self.client_roles: set[str] = {"api"}

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
        if self.settings.database_url:
            check_reachable(self.settings.database_url)
        else:
            self.postgres = EmbeddedPostgres(self.log_dir / "postgres.log")
            self.database_url = self.postgres.start()
        migrate(self.database_url)
        timing = self.settings.timing
        extra = services_for(self.settings.transports)
        sockets: dict[Role, socket.socket] = {"worker": _listen_socket(), "api": _listen_socket()}
        for spec in extra:
            sockets[spec.role] = _listen_socket()
        self.client_roles = {"api", *(s.role for s in extra if s.client_facing)}
        peers = {role: _url(sock) for role, sock in sockets.items()}
        if self.settings.chaos:
            self.control = self._start_chaos()
            host, port = sockets["worker"].getsockname()[:2]
            dispatch = self.control.create_proxy(f"{PROXY_PREFIX}dispatch", f"{host}:{port}")
            self.dispatch_proxy = dispatch.name
            peers["worker"] = "http://{}:{}".format(*dispatch.address)
        base = ServiceConfig(
            role="worker",
            instance="worker",
            database_url=self.database_url,
            token_secret=self.secret,
            worker_url=peers["worker"],
            peers=peers,
            concurrency=self.settings.worker_concurrency,
            watchdog=self.settings.watchdog,
            timing=timing,
        )
        modules = {spec.role: spec.module for spec in extra}
        for role, sock in sockets.items():
            update: dict[str, object] = {"role": role, "instance": role}
            if role != "worker":
                update["concurrency"] = self.settings.api_concurrency
            self.services[role] = Service(
                role, sock, base.model_copy(update=update), module=modules.get(role, SERVICES_MODULE)
            )
        started = [self.start_instance(role) for role in sockets if role != "api"]
        started += [self.start_instance("worker") for _ in range(self.settings.worker_instances - 1)]
        started.append(self.start_instance("api"))
        for instance in started:
            self.wait_ready(instance)

    def _start_chaos(self) -> ProxyControl:
        """The fault proxy: a real Toxiproxy at ``toxiproxy_url``, or the bundled one."""
        if self.settings.toxiproxy_url:
            control = ProxyControl(self.settings.toxiproxy_url)
            if not control.ping():
                raise StackError(f"no Toxiproxy API answers at {self.settings.toxiproxy_url}")
            for name in control.proxies():
                if name.startswith(PROXY_PREFIX):  # left by an earlier run against this server
                    control.delete_proxy(name)
            return control
        self.chaos_socket = _listen_socket()
        log_path = self.log_dir / "chaos-proxy.log"
        with log_path.open("ab") as log_file:
            self.chaos_process = subprocess.Popen(
                [sys.executable, "-m", "progressbench.chaos.proxy", "--fd", str(self.chaos_socket.fileno())],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                pass_fds=(self.chaos_socket.fileno(),),
                start_new_session=True,
            )
        control = ProxyControl(_url(self.chaos_socket))
        deadline = time.monotonic() + self.settings.startup_timeout_s
        while not control.ping():
            if self.chaos_process.poll() is not None or time.monotonic() > deadline:
                raise StackError(f"the chaos proxy did not start; see {log_path}\n{_tail(log_path)}")
            time.sleep(0.05)
        return control

    def cell_endpoints(self, cells: int) -> list[dict[str, str]]:
        """Per phone cell, the URL of each client-facing service through that cell's proxy."""
        direct = {role: url for role, url in self.endpoints().items() if role in self.client_roles}
        if self.control is None:
            return [dict(direct) for _ in range(cells)]
        result = []
        for cell in range(cells):
            proxies = self._cell_proxies.setdefault(cell, {})
            for role, url in direct.items():
                if role not in proxies:
                    upstream = url.removeprefix("http://")
                    proxies[role] = self.control.create_proxy(f"{PROXY_PREFIX}c{cell}-{role}", upstream)
            result.append({role: "http://{}:{}".format(*p.address) for role, p in proxies.items()})
        return result

    def cell_proxy_names(self, cells: int) -> list[list[str]]:
        self.cell_endpoints(cells)
        return [[p.name for p in self._cell_proxies.get(c, {}).values()] for c in range(cells)]

    def busiest_worker(self) -> Instance:
        """The live worker instance holding the most running jobs (the one to kill)."""
        live = self.services["worker"].live()
        if not live:
            raise StackError("no live worker instance")
        counts: dict[str, int] = {}
        with contextlib.suppress(Exception), psycopg.connect(self.database_url) as conn:
            for name, n in conn.execute(
                "SELECT lease_owner, count(*) FROM jobs WHERE status = 'running' GROUP BY 1"
            ):
                counts[str(name)] = int(n)
        return max(live, key=lambda i: counts.get(i.name, 0))

    def server_fault(self, fault: str) -> tuple[int, int]:
        """Cloud Run instance shutdown: SIGTERM (grace, SIGKILL) or SIGKILL, then a replacement.

        Returns (fault start, replacement ready) as wall-clock ns: the window
        during which the worker service had one instance fewer.
        """
        victim = self.busiest_worker()
        start = time.time_ns()
        if fault == "sigkill":
            self._retire_meters(victim)
            self.kill(victim)
        else:
            self.terminate(victim)
        self.replace(victim)
        return start, time.time_ns()

    def reconfigure(self, **timing: float) -> None:
        """Replace every instance with one running the given timing overrides."""
        new_timing = self.settings.timing.model_copy(update=timing)
        for role in list(self.services):
            service = self.services[role]
            service.config = service.config.model_copy(update={"timing": new_timing})
            old = service.live()
            fresh = [self.start_instance(role) for _ in old]
            for instance in fresh:
                self.wait_ready(instance)
            for instance in old:
                self.terminate(instance, grace_s=5.0)

    def start_instance(self, role: Role) -> Instance:
        service = self.services[role]
        service.started += 1
        name = f"{role}-{service.started}"
        config = service.config.model_copy(update={"instance": name})
        admin = _listen_socket()
        log_path = self.log_dir / f"{name}.log"
        ready_file = self.log_dir / f".{name}.ready"
        ready_file.unlink(missing_ok=True)
        env = dict(os.environ)
        env.update(
            {
                "PROGRESSBENCH_SERVICE_CONFIG": config.model_dump_json(),
                LISTEN_FD_ENV: str(service.socket.fileno()),
                ADMIN_FD_ENV: str(admin.fileno()),
                READY_FILE_ENV: str(ready_file),
                SUPERVISOR_PID_ENV: str(os.getpid()),
                "PYTHONUNBUFFERED": "1",
            }
        )
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", service.module],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                pass_fds=(service.socket.fileno(), admin.fileno()),
                start_new_session=True,  # Ctrl-C reaches the supervisor, which stops them in order
            )
        instance = Instance(name, role, process, admin, log_path, ready_file)
        service.instances.append(instance)
        log.info("started %s pid %d", name, process.pid)
        return instance

    def wait_ready(self, instance: Instance, timeout_s: float | None = None) -> None:
        deadline = time.monotonic() + (timeout_s or self.settings.startup_timeout_s)
        while time.monotonic() < deadline:
            if instance.ready_file.exists():
                return
            if not instance.alive():
                raise StackError(
                    f"{instance.name} exited with {instance.process.returncode} during start-up; "
                    f"see {instance.log_path}\n{_tail(instance.log_path)}"
                )
            time.sleep(0.02)
        raise StackError(f"{instance.name} not ready after {timeout_s}s; see {instance.log_path}")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        instances = [i for s in self.services.values() for i in s.instances if i.alive()]
        for instance in instances:
            with contextlib.suppress(ProcessLookupError):
                instance.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        for instance in instances:
            with contextlib.suppress(subprocess.TimeoutExpired):
                instance.process.wait(timeout=max(deadline - time.monotonic(), 0.01))
            if instance.alive():
                instance.process.kill()
                instance.process.wait(timeout=5)
        for service in self.services.values():
            for instance in service.instances:
                instance.admin.close()
                instance.ready_file.unlink(missing_ok=True)
            service.socket.close()
        if self.control is not None and self.chaos_process is None:
            for name in [
                *(p.name for c in self._cell_proxies.values() for p in c.values()),
                *([self.dispatch_proxy] if self.dispatch_proxy else []),
            ]:
                with contextlib.suppress(Exception):
                    self.control.delete_proxy(name)
        if self.chaos_process is not None:
            self.chaos_process.terminate()
            try:
                self.chaos_process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.chaos_process.kill()
                self.chaos_process.wait()
        if self.chaos_socket is not None:
            self.chaos_socket.close()
        if self.postgres is not None:
            self.postgres.stop()

    # ------------------------------------------------------------------ faults

    def instance(self, name: str) -> Instance:
        for service in self.services.values():
            for instance in service.instances:
                if instance.name == name:
                    return instance
        raise StackError(f"no instance named {name!r}")

    def terminate(self, instance: Instance, grace_s: float | None = None) -> str:
        """Cloud Run shutdown: SIGTERM, wait the (scaled) grace period, then SIGKILL.

        Returns ``"exited"`` if the instance left within the grace period,
        ``"killed"`` if it needed the SIGKILL.
        """
        timing = self.settings.timing
        grace = timing.scaled(timing.shutdown_grace_s) if grace_s is None else grace_s
        self._retire_meters(instance)
        if not instance.alive():
            return "exited"
        instance.process.send_signal(signal.SIGTERM)
        try:
            instance.process.wait(timeout=grace)
            return "exited"
        except subprocess.TimeoutExpired:
            instance.process.kill()
            instance.process.wait(timeout=10)
            return "killed"

    def kill(self, instance: Instance) -> None:
        """SIGKILL, no warning (the instance's meters since the last scrape are lost)."""
        if instance.alive():
            instance.process.kill()
            instance.process.wait(timeout=10)

    def replace(self, instance: Instance, cold_start_s: float | None = None) -> Instance:
        """Start a replacement for a dead instance after the (scaled) cold-start delay."""
        timing = self.settings.timing
        delay = timing.scaled(timing.cold_start_s) if cold_start_s is None else cold_start_s
        if delay > 0:
            time.sleep(delay)
        fresh = self.start_instance(instance.role)
        self.wait_ready(fresh)
        return fresh

    def start_job_runner(
        self, job_ids: list[str], task_count: int = 1, attempt: int = 0
    ) -> list[subprocess.Popen[bytes]]:
        """Start a Cloud-Run-Jobs-style execution: ``task_count`` runner processes."""
        config = self.services["worker"].config.model_copy(update={"instance": "job-runner"})
        procs = []
        for index in range(task_count):
            env = dict(os.environ)
            env.update(
                {
                    "PROGRESSBENCH_SERVICE_CONFIG": config.model_dump_json(),
                    "CLOUD_RUN_TASK_INDEX": str(index),
                    "CLOUD_RUN_TASK_COUNT": str(task_count),
                    "CLOUD_RUN_TASK_ATTEMPT": str(attempt),
                }
            )
            log_path = self.log_dir / f"job-runner-task{index}-attempt{attempt}.log"
            with log_path.open("ab") as log_file:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "progressbench.app.services.jobrunner", *job_ids],
                        env=env,
                        stdout=log_file,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                    )
                )
        return procs

    # ------------------------------------------------------------------ observing

    def endpoints(self) -> dict[str, str]:
        """Direct URLs of every service (no proxy)."""
        return {role: service.url for role, service in self.services.items()}

    def _scrape_instance(self, instance: Instance) -> dict[str, float]:
        try:
            response = httpx.get(f"{instance.admin_url}/metrics", timeout=5.0)
            response.raise_for_status()
        except httpx.HTTPError:
            return {}
        return parse_exposition(response.text)

    def _retire_meters(self, instance: Instance) -> None:
        if not instance.alive():
            return
        service = self.services[instance.role]
        for key, value in self._scrape_instance(instance).items():
            if key.endswith("_in_flight"):
                continue
            service.retired_meters[key] = service.retired_meters.get(key, 0.0) + value

    def meters(self) -> dict[str, dict[str, float]]:
        """Per service, counters summed over live instances plus retired ones."""
        result: dict[str, dict[str, float]] = {}
        for role, service in self.services.items():
            totals = dict(service.retired_meters)
            for instance in service.live():
                for key, value in self._scrape_instance(instance).items():
                    totals[key] = totals.get(key, 0.0) + value
            result[role] = totals
        return result

    def describe(self) -> dict[str, object]:
        return {
            "database": "embedded" if self.postgres else "external",
            "endpoints": self.endpoints(),
            "chaos": self.control.url if self.control is not None else None,
            "instances": {
                i.name: {"pid": i.pid, "alive": i.alive(), "log": str(i.log_path)}
                for s in self.services.values()
                for i in s.instances
            },
        }


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


@contextlib.contextmanager
def running_stack(settings: StackSettings) -> Iterator[Stack]:
    with Stack(settings) as stack:
        yield stack


def dump_endpoints(stack: Stack) -> str:
    return json.dumps(stack.describe(), indent=2)
