"""The gevent half of the bridge: one agent process per Locust process.

Greenlets call :meth:`Bridge.run` and block cooperatively until the agent
answers; one reader greenlet routes replies by id. If the agent dies, every
waiting call fails with a clear error instead of hanging.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Callable
from typing import Any

import gevent
from gevent.event import AsyncResult
from gevent.lock import Semaphore

from progressbench.app.processes import python_module


class AgentDied(RuntimeError):
    pass


def _spawn_agent() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        python_module("progressbench.loadtests.agent"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=None,
        bufsize=0,
    )


#: An agent started before Locust was imported (:func:`start_early`); this process's first Bridge adopts it.
_early: list[subprocess.Popen[bytes]] = []


def start_early() -> None:
    """Start this process's agent now, so that it imports every transport while this process
    imports Locust: a cell's first phone then waits for the longer of the two, not their sum.

    Call after gevent has patched the process (the pipes must be cooperative) and before the
    Bridge is made; an agent nobody adopts exits when this process does (its stdin closes).
    """
    _early.append(_spawn_agent())


class Bridge:
    """``on_orphan`` receives records whose caller was killed (the run is quitting)."""

    def __init__(self, on_orphan: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._on_orphan = on_orphan
        self._orphaned: set[int] = set()
        self._proc = _early.pop() if _early else _spawn_agent()
        self._ids = itertools.count(1)
        self._waiting: dict[int, AsyncResult] = {}
        self._write_lock = Semaphore()
        self._reader = gevent.spawn(self._read_loop)

    def _read_loop(self) -> None:
        assert self._proc.stdout is not None
        for raw in self._proc.stdout:
            message = json.loads(raw)
            request_id = int(message["id"])
            waiter = self._waiting.pop(request_id, None)
            if request_id in self._orphaned:
                self._orphaned.discard(request_id)
                if self._on_orphan is not None and "record" in message:
                    self._on_orphan(message["record"])
            elif waiter is not None:
                waiter.set(message)
        error = AgentDied(f"session agent exited with {self._proc.wait()}")
        for waiter in self._waiting.values():
            waiter.set_exception(error)
        self._waiting.clear()

    def run(self, spec: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Run one session in the agent: its SessionRecord as a dict, and its entries for Locust's
        statistics (``PhoneRequest`` dicts; empty when the agent could not score it)."""
        if self._proc.poll() is not None:
            raise AgentDied(f"session agent exited with {self._proc.returncode}")
        request_id = next(self._ids)
        waiter = AsyncResult()
        self._waiting[request_id] = waiter
        line = (json.dumps({"id": request_id, "spec": spec}) + "\n").encode()
        assert self._proc.stdin is not None
        with self._write_lock:
            self._proc.stdin.write(line)
            self._proc.stdin.flush()
        try:
            message: dict[str, Any] = waiter.get()
        except BaseException:  # GreenletExit when Locust stops the user: the agent still answers
            self._orphaned.add(request_id)
            raise
        if "error" in message:
            raise AgentDied(message["error"])
        record: dict[str, Any] = message["record"]
        requests: list[dict[str, Any]] = message.get("requests", [])
        return record, requests

    def close(self) -> None:
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(timeout=5)
