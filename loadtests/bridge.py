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

#: Seconds the agent may take to flush its sessions' records once told to stop.
AGENT_EXIT_S = 30.0


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
    """Start this process's agent now, so that it imports its cell's client while this process
    imports Locust: a cell's first phone then waits for the longer of the two, not their sum.

    Call after gevent has patched the process (the pipes must be cooperative) and before the
    Bridge is made; an agent nobody adopts exits when this process does (its stdin closes).
    """
    _early.append(_spawn_agent())


class Bridge:
    """``on_record`` receives every session record the agent returns, as it is read.

    Delivering records here, not from the phone's greenlet, means a record the
    agent wrote always reaches the sink: when Locust stops its users, a phone's
    greenlet may be killed after its reply was read and before it could pass
    the record on (at 1,000 phones that lost ~5 % of the sessions of a cut-off cell).
    """

    def __init__(self, on_record: Callable[[dict[str, Any]], None]) -> None:
        self._on_record = on_record
        self._proc = _early.pop() if _early else _spawn_agent()
        self._ids = itertools.count(1)
        self._waiting: dict[int, AsyncResult] = {}
        self._write_lock = Semaphore()
        self._reader = gevent.spawn(self._read_loop)

    def _read_loop(self) -> None:
        assert self._proc.stdout is not None
        records: dict[int, dict[str, Any]] = {}
        for raw in self._proc.stdout:
            message = json.loads(raw)
            request_id = int(message["id"])
            if "record" in message:
                self._on_record(message["record"])
                records[request_id] = message["record"]
                continue
            record = records.pop(request_id, None)
            waiter = self._waiting.pop(request_id, None)
            if waiter is not None:
                waiter.set({**message, "record": record} if record is not None else message)
        error = AgentDied(f"session agent exited with {self._proc.wait()}")
        for waiter in self._waiting.values():
            waiter.set_exception(error)
        self._waiting.clear()

    def run(self, spec: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Run one session in the agent: its SessionRecord as a dict (already passed to
        ``on_record``), and its entries for Locust's statistics (``PhoneRequest`` dicts; empty when
        the agent could not score it)."""
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
        except BaseException:  # GreenletExit when Locust stops the user: the reader delivers its record
            self._waiting.pop(request_id, None)
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
            # the agent gives its cancelled sessions FLUSH_S to return, then writes what is left
            self._proc.wait(timeout=AGENT_EXIT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(timeout=5)
