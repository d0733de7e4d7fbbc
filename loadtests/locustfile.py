"""The simulated phones as Locust users.

Each :class:`Phone` creates a job, watches it through the cell's transport
until the terminal event or the deadline (inside the asyncio agent), reports
the session to the run's sink, and repeats ``jobs_per_user`` times. Locust
sees each job as one request (``JOB``, named after the transport) timed from
submit to the end of the session, failed unless the terminal event arrived;
then, scored against the store by the session agent, what the phone lived
through: each event received (``EVENT <transport> <kind>``, its commit →
phone latency as response time), lost events, silent stalls and foreign
events as failures, resumes and disconnects as their own entries (the table
in ``progressbench.app.phone_stats``). Locust's live charts, CSV and HTML
report carry them.

Works headless under ``progressbench.loadtests.headless`` and in Locust's own web UI
(``progressbench locust``), locally or distributed (master + workers): a
worker ships every session record to the master with a custom message.

Exact load: a phone that has watched its jobs does not stop, it *retires*
(idles until the run ends). Locust keeps the user count it was given by
replacing users that stop while it is still spawning, so phones that
finished early used to be replaced by fresh ones and ``--users 1000`` gave
~1,150 sessions. A retired phone is counted in :data:`RETIRED` (on a
worker, reported to the master) so the headless driver still knows when no
phone is left that could bring a missing session.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import gevent
from gevent.event import Event
from locust import User, constant, events, task
from locust.env import Environment
from locust.exception import StopUser
from locust.html import get_html_report
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV
from progressbench.loadtests.bridge import AgentDied, Bridge

from progressbench.app.cell import CELL_ENV, CellPlan

MESSAGE = "progressbench_session"
RETIRED_MESSAGE = "progressbench_retired"

_raw_plan = os.environ.get(CELL_ENV)
if not _raw_plan:
    raise SystemExit(
        f"{CELL_ENV} is not set: start Locust through `progressbench run` or `progressbench locust`"
    )
PLAN = CellPlan.model_validate_json(_raw_plan)


class SessionSink:
    """Appends session records to the cell's JSONL file (local or master side)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record) + "\n"
        with self._lock, self.path.open("a") as fh:
            fh.write(line)
            self.count += 1


SINK = SessionSink(PLAN.sessions_path)


class Retired:
    """How many phones have nothing more to do (work done, or their agent died)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.count += n


RETIRED = Retired()
_state: dict[str, Any] = {"bridge": None}
#: Set once this process's agent is up. A worker may spawn users while the init
#: hook is still starting the agent (Popen yields under gevent): users wait for it.
BRIDGE_READY = Event()


@events.init.add_listener
def _on_init(environment: Environment, **_kw: Any) -> None:
    _state["environment"] = environment
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.register_message(MESSAGE, lambda msg, **_: SINK.write(msg.data))
        runner.register_message(RETIRED_MESSAGE, lambda msg, **_: RETIRED.add(int(msg.data["phones"])))
    else:
        _state["bridge"] = Bridge(on_record=lambda record: _deliver(environment, record))
        BRIDGE_READY.set()


def _deliver(environment: Environment, record: dict[str, Any]) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        runner.send_message(MESSAGE, record)
    else:
        SINK.write(record)


def _retire(environment: Environment) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        runner.send_message(RETIRED_MESSAGE, {"phones": 1})
    else:
        RETIRED.add()


def save_stats(environment: Environment, *, with_csv: bool) -> list[Path]:
    """Locust's own report of the cell (``PREFIX.html``) and, ``with_csv``, its statistics and
    failures as CSV (``PREFIX_stats.csv``, ``PREFIX_failures.csv``), where the plan says.

    Only the process that holds the whole run's statistics writes (local or master). Under the
    web UI, Locust's ``--csv`` keeps the CSVs current and only the HTML is ours: Locust writes
    its ``--html`` on a normal exit but not when stopped by SIGTERM, which is how we stop it.
    """
    prefix = PLAN.locust_stats
    if prefix is None or isinstance(environment.runner, WorkerRunner) or environment.runner is None:
        return []
    prefix.parent.mkdir(parents=True, exist_ok=True)
    written = [Path(f"{prefix}.html")]
    written[0].write_text(get_html_report(environment, show_download_link=False), encoding="utf-8")
    if with_csv:
        table = StatsCSV(environment, PERCENTILES_TO_REPORT)
        for suffix, write in (("_stats.csv", table.requests_csv), ("_failures.csv", table.failures_csv)):
            path = Path(f"{prefix}{suffix}")
            with path.open("w", newline="") as fh:
                write(csv.writer(fh))
            written.append(path)
    return written


@events.quit.add_listener
def _on_web_ui_quit(**_kw: Any) -> None:
    """Locust's own main (the web UI) fires ``quit`` as it shuts down; the headless driver does not."""
    environment = _state.get("environment")
    if environment is not None:
        save_stats(environment, with_csv=False)


@events.quitting.add_listener
def _on_quit(environment: Environment, **_kw: Any) -> None:
    bridge = _state.get("bridge")
    if bridge is not None:
        bridge.close()
        _state["bridge"] = None


_local_index = itertools.count()


class PhoneFailure(Exception):
    """What went wrong for the phone (a lost event, a silent stall...), as Locust lists failures."""


class Phone(User):
    """One phone: a few jobs in a row, each watched to the end, then idle until the run ends."""

    wait_time = constant(0)
    #: The API the phones talk to (through their cell's proxy): Locust's UI shows it as the host.
    host = PLAN.cell_endpoints[0].get("api")

    def on_start(self) -> None:
        worker = getattr(self.environment.runner, "worker_index", 0) or 0
        self.user_index = worker * 100_000 + next(_local_index)
        self.owner = f"phone-{self.user_index}"
        self.jobs_done = 0
        self.retired = False

    def retire(self) -> None:
        """Stay, idle, so Locust does not replace this phone by a new one (see the module docstring)."""
        if not self.retired:
            self.retired = True
            _retire(self.environment)
        while True:
            gevent.sleep(3600)

    @task
    def watch_one_job(self) -> None:
        if self.jobs_done >= PLAN.jobs_per_user:
            self.retire()
        if not BRIDGE_READY.wait(timeout=60):
            self._fire(time.perf_counter(), 0, RuntimeError("the session agent never started"))
            self.retire()
        bridge: Bridge | None = _state.get("bridge")
        if bridge is None:  # quitting
            raise StopUser()
        spec = PLAN.session_spec(self.owner, self.user_index, self.jobs_done)
        started = time.perf_counter()
        try:
            record, requests = bridge.run(spec.model_dump(mode="json"))
        except AgentDied as exc:
            self._fire(started, 0, exc)
            self.retire()
        self.jobs_done += 1
        outcome = record["outcome"]
        error = None if outcome == "terminal" else RuntimeError(f"{outcome}: {record.get('error') or ''}")
        self._fire(started, len(record["observations"]), error)
        for entry in requests:
            self.environment.events.request.fire(
                request_type=entry["request_type"],
                name=entry["name"],
                response_time=entry["response_time"],
                response_length=0,
                exception=None if entry["error"] is None else PhoneFailure(entry["error"]),
                context={},
            )

    def _fire(self, started: float, length: int, exc: Exception | None) -> None:
        self.environment.events.request.fire(
            request_type="JOB",
            name=PLAN.transport,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=length,
            exception=exc,
            context={},
        )
