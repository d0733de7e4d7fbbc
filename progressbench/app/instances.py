"""Services and their instances: the processes behind each service URL.

Each *service* (``api``, ``worker``, a transport's own service) owns one
listening socket that the supervisor binds on 127.0.0.1 port 0 and keeps for
the life of the stack; every *instance* of the service inherits it. That
socket is the service's URL, like a Cloud Run service URL: while no instance
is up (a cold start after a kill), connections wait in its backlog instead
of being refused. Each instance also gets a private admin socket so the
supervisor can scrape its meters and tell instances apart.

A *fronted* service (``api`` and ``worker`` when scale-out is on) works the
other way round: the service socket belongs to its front
(:mod:`~progressbench.app.front`), the platform's load balancer, and each
instance listens on a private socket of its own that only the front
connects to. The supervisor closes its copy of that socket once the
instance has it, so a dead instance's port refuses at once (the front then
tries another) instead of queueing requests nobody will accept.

An instance is told everything through its environment (see
:mod:`progressbench.kit.runtime`), including the supervisor's pid: it
SIGTERMs itself if the supervisor goes away, so none outlives a run.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from progressbench.app.interrupts import deferred
from progressbench.app.processes import listen_socket, python_module, socket_url, spawn, stop_all, tail
from progressbench.core.config import SERVICE_CONFIG_ENV, ServiceConfig
from progressbench.core.errors import StackError
from progressbench.kit.runtime import (
    ADMIN_FD_ENV,
    LISTEN_FD_ENV,
    READY_FILE_ENV,
    SUPERVISOR_PID_ENV,
)

log = logging.getLogger(__name__)

#: "api", "worker", or the role of a transport's own service.
Role = str
SERVICES_MODULE = "progressbench.app.services"
JOB_RUNNER_MODULE = "progressbench.app.services.jobrunner"


@dataclass
class Instance:
    name: str
    role: Role
    process: subprocess.Popen[bytes]
    admin: socket.socket
    log_path: Path
    ready_file: Path
    started_at: float = field(default_factory=time.monotonic)
    #: a fronted instance's own address (None: it shares the service socket)
    url: str | None = None
    #: accepted connections at least once (set by :meth:`Fleet.wait_ready`)
    ready: bool = False
    #: being stopped by the autoscaler: the front sends it nothing new
    draining: bool = False
    #: a warm spare the autoscaler holds back (not serving, not counted) until a start needs it
    standby: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def admin_url(self) -> str:
        return socket_url(self.admin)

    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class Service:
    role: Role
    socket: socket.socket
    config: ServiceConfig
    module: str = SERVICES_MODULE
    instances: list[Instance] = field(default_factory=list)
    started: int = 0
    #: behind a front: each instance gets a private socket (see the module docstring)
    fronted: bool = False

    @property
    def url(self) -> str:
        return socket_url(self.socket)

    def live(self) -> list[Instance]:
        return [i for i in self.instances if i.alive()]


class Fleet:
    """Every service of a stack and every instance ever started for it (live or not)."""

    def __init__(self, log_dir: Path, startup_timeout_s: float) -> None:
        self.log_dir = log_dir
        self.startup_timeout_s = startup_timeout_s
        self.services: dict[Role, Service] = {}
        self.job_runners: list[subprocess.Popen[bytes]] = []
        #: starts come from the main thread, the fault thread and the autoscaler's
        self._lock = threading.Lock()

    def add(
        self, role: Role, sock: socket.socket, config: ServiceConfig, module: str, fronted: bool = False
    ) -> Service:
        self.services[role] = Service(role, sock, config, module=module, fronted=fronted)
        return self.services[role]

    def start(self, role: Role, standby: bool = False) -> Instance:
        """One more instance of ``role``, named ``<role>-<n>``; returns before it is ready.

        ``standby``: a warm spare the autoscaler holds back until it needs it.
        """
        with self._lock:
            instance = self._start(role)
            instance.standby = standby
            return instance

    def _start(self, role: Role) -> Instance:
        service = self.services[role]
        service.started += 1
        name = f"{role}-{service.started}"
        listen = listen_socket() if service.fronted else service.socket
        config = service.config.model_copy(update={"instance": name})
        admin = listen_socket()
        ready_file = self.log_dir / f".{name}.ready"
        ready_file.unlink(missing_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with deferred():  # a stop signal must not fall between starting it and owning it
            process = spawn(
                python_module(service.module),
                log_path,
                env={
                    SERVICE_CONFIG_ENV: config.model_dump_json(),
                    LISTEN_FD_ENV: str(listen.fileno()),
                    ADMIN_FD_ENV: str(admin.fileno()),
                    READY_FILE_ENV: str(ready_file),
                    SUPERVISOR_PID_ENV: str(os.getpid()),
                    "PYTHONUNBUFFERED": "1",
                },
                pass_fds=(listen.fileno(), admin.fileno()),
            )
            instance = Instance(name, role, process, admin, log_path, ready_file)
            if listen is not service.socket:
                instance.url = socket_url(listen)
                listen.close()
            service.instances.append(instance)
        log.info("started %s pid %d", name, process.pid)
        return instance

    def wait_ready(self, instance: Instance, timeout_s: float | None = None) -> None:
        """Until the instance accepts connections; StackError quoting its log if it dies or stalls."""
        timeout = timeout_s or self.startup_timeout_s
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if instance.ready_file.exists():
                instance.ready = True
                return
            if not instance.alive():
                raise StackError(
                    f"{instance.name} exited with {instance.process.returncode} during start-up; "
                    f"see {instance.log_path}\n{tail(instance.log_path)}"
                )
            time.sleep(0.02)
        raise StackError(f"{instance.name} not ready after {timeout:g}s; see {instance.log_path}")

    def instance(self, name: str) -> Instance:
        for service in self.services.values():
            for instance in service.instances:
                if instance.name == name:
                    return instance
        raise StackError(f"no instance named {name!r}")

    def start_job_runner(
        self, job_ids: list[str], task_count: int, attempt: int
    ) -> list[subprocess.Popen[bytes]]:
        """A Cloud-Run-Jobs-style execution: ``task_count`` runner processes with the worker's config."""
        config = self.services["worker"].config.model_copy(update={"instance": "job-runner"})
        procs: list[subprocess.Popen[bytes]] = []
        for index in range(task_count):
            with deferred():
                procs.append(
                    spawn(
                        [*python_module(JOB_RUNNER_MODULE), *job_ids],
                        self.log_dir / f"job-runner-task{index}-attempt{attempt}.log",
                        env={
                            SERVICE_CONFIG_ENV: config.model_dump_json(),
                            "CLOUD_RUN_TASK_INDEX": str(index),
                            "CLOUD_RUN_TASK_COUNT": str(task_count),
                            "CLOUD_RUN_TASK_ATTEMPT": str(attempt),
                        },
                    )
                )
                self.job_runners.append(procs[-1])
        return procs

    def close(self, grace_s: float) -> None:
        """Stop every instance and job runner (bounded by ``grace_s``), then release the sockets."""
        try:
            stop_all(
                [
                    *(i.process for s in self.services.values() for i in s.instances),
                    *self.job_runners,
                ],
                grace_s,
            )
        finally:
            for service in self.services.values():
                for instance in service.instances:
                    instance.admin.close()
                    instance.ready_file.unlink(missing_ok=True)
                service.socket.close()
