"""The Locust processes of one cell: started, watched, always stopped.

Locust monkey-patches its process for gevent, so it never runs in ours: each
cell starts ``progressbench.loadtests.headless`` (one local process, or a
master and N workers) with the cell's plan in its environment, and counts
the sessions the phones have written so far for whoever shows progress.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from progressbench.app.cell import CELL_ENV, CellPlan
from progressbench.app.cell_result import cell_name
from progressbench.app.interrupts import deferred
from progressbench.app.processes import python_module, spawn, stop_all
from progressbench.kit.database import free_port

#: Told the number of sessions collected so far, a few times a second.
OnCollected = Callable[[int], None]
#: Told the pids of the Locust processes once they are started (for CPU sampling).
OnSpawned = Callable[[list[int]], None]


@contextlib.contextmanager
def _processes(
    commands: list[tuple[list[str], Path]], env: dict[str, str]
) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for argv, log_path in commands:
            procs.append(spawn(argv, log_path, env=env))
        yield procs
    finally:
        with deferred():  # SIGTERM lets Locust flush the sessions in flight
            stop_all(procs, grace_s=20)


def count_lines(path: Path) -> int:
    try:
        with path.open("rb") as fh:
            return sum(1 for _ in fh)
    except OSError:
        return 0


def _commands(plan: CellPlan, locust_workers: int, log_dir: Path) -> list[tuple[list[str], Path]]:
    base = python_module("progressbench.loadtests.headless")
    name = cell_name(plan.transport, plan.profile)
    if not locust_workers:
        return [([*base, "--role", "local"], log_dir / f"locust-{name}.log")]
    port = free_port()
    master = [*base, "--role", "master", "--master-port", str(port), "--expect-workers", str(locust_workers)]
    commands = [(master, log_dir / f"locust-{name}-master.log")]
    commands += [
        ([*base, "--role", "worker", "--master-port", str(port)], log_dir / f"locust-{name}-worker{i}.log")
        for i in range(1, locust_workers + 1)
    ]
    return commands


def drive_cell(
    plan: CellPlan,
    locust_workers: int,
    log_dir: Path,
    on_collected: OnCollected,
    on_spawned: OnSpawned | None = None,
) -> bool:
    """Run one cell under Locust (headless); True when every session was collected."""
    env = dict(os.environ)
    env[CELL_ENV] = plan.model_dump_json()
    env["PYTHONUNBUFFERED"] = "1"
    # Locust's own deadline is plan.deadline_s(); past it, the agents get bridge.AGENT_EXIT_S to
    # flush their sessions' records before Locust is told to stop.
    deadline = time.monotonic() + plan.deadline_s() + 45
    with _processes(_commands(plan, locust_workers, log_dir), env) as procs:
        leader = procs[0]
        if on_spawned is not None:
            on_spawned([p.pid for p in procs])
        while leader.poll() is None and time.monotonic() < deadline:
            on_collected(count_lines(plan.sessions_path))
            time.sleep(0.2)
        on_collected(count_lines(plan.sessions_path))
    return leader.returncode == 0
