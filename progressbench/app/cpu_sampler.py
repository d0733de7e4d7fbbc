"""CPU samples of a cell's processes while it runs (psutil), for the saturation verdict.

A background thread asks, every :data:`INTERVAL_S`, which processes belong
to the cell (the Locust processes and their session agents, every live
service instance, Postgres) and reads each one's CPU since the last sample.
Processes come and go (a SIGKILLed worker, its replacement): each pid is
its own series. The verdict is :mod:`progressbench.core.saturation`'s.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from progressbench.core.saturation import CpuSeries

INTERVAL_S = 0.5
PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class Target:
    """A process to sample; with ``children``, every descendant too (as ``<name>/<child name>-<pid>``)."""

    group: str
    name: str
    pid: int
    children: bool = False


Targets = Callable[[], list[Target]]


class CpuSampler:
    """Samples ``targets()`` and the machine until :meth:`stop`; use as a context manager."""

    def __init__(self, targets: Targets, interval_s: float = INTERVAL_S) -> None:
        self._targets = targets
        self._interval = interval_s
        self._procs: dict[int, tuple[str, str, psutil.Process]] = {}
        self._samples: dict[int, list[float]] = {}
        #: per pid, the machine sample its first sample lines up with
        self._first_tick: dict[int, int] = {}
        self._machine: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cpu-sampler", daemon=True)

    def __enter__(self) -> CpuSampler:
        psutil.cpu_percent(interval=None)  # the machine's first reading is a baseline
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def series(self) -> list[CpuSeries]:
        return [
            CpuSeries(
                group=group,
                name=name,
                samples=tuple(self._samples.get(pid, ())),
                first_tick=self._first_tick.get(pid, 0),
            )
            for pid, (group, name, _) in self._procs.items()
            if self._samples.get(pid)
        ]

    def machine(self) -> list[float]:
        return list(self._machine)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._tick()

    def _tick(self) -> None:
        try:
            targets = self._targets()
        except Exception:  # the stack is changing under us; next tick
            targets = []
        # One read of the process table per tick, shared by every target that brings its
        # descendants: psutil's ``children()`` reads all of /proc once per call, and this thread's
        # CPU is charged to the supervisor, which is itself one of the cell's sampled processes.
        parents = _parents() if any(t.children for t in targets) else {}
        for target in targets:
            self._track(target.group, target.name, target.pid)
            if target.children:
                for kid in _descendants(parents, target.pid):
                    self._track(target.group, f"{target.name}/{_short(kid)}-{kid}", kid)
        for pid, (_, _, proc) in list(self._procs.items()):
            try:
                value = proc.cpu_percent(interval=None)
            except psutil.Error:
                continue
            if pid in self._samples:
                if not self._samples[pid]:
                    self._first_tick[pid] = len(self._machine)  # this tick's machine sample comes next
                self._samples[pid].append(value)
            else:
                self._samples[pid] = []  # the first reading has no interval behind it
        self._machine.append(psutil.cpu_percent(interval=None))

    def _track(self, group: str, name: str, pid: int) -> None:
        if pid in self._procs:
            return
        try:
            self._procs[pid] = (group, name, psutil.Process(pid))
        except psutil.Error:
            pass


def _parents() -> dict[int, list[int]]:
    """Every live process's children, by parent pid, from one pass over the process table.

    On Linux straight from ``/proc/<pid>/stat`` (a third of ``psutil.process_iter``'s
    cost, which builds an object per process); elsewhere through psutil.
    """
    children: dict[int, list[int]] = {}
    if PROC.is_dir():
        for entry in os.scandir(PROC):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"{entry.path}/stat", "rb") as stat:
                    raw = stat.read()
                # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so from the last ")"
                ppid = int(raw[raw.rindex(b")") + 2 :].split(b" ", 2)[1])
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
            children.setdefault(ppid, []).append(int(entry.name))
        return children
    for proc in psutil.process_iter(["ppid"]):
        ppid = proc.info.get("ppid")
        if isinstance(ppid, int):
            children.setdefault(ppid, []).append(proc.pid)
    return children


def _descendants(children: dict[int, list[int]], pid: int) -> list[int]:
    found: list[int] = []
    stack = list(children.get(pid, ()))
    while stack:
        kid = stack.pop()
        found.append(kid)
        stack.extend(children.get(kid, ()))
    return found


def _short(pid: int) -> str:
    try:
        return str(psutil.Process(pid).name())
    except psutil.Error:
        return "process"
