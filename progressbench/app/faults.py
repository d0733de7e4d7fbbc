"""Server faults the way Cloud Run delivers them: an instance shut down, then replaced.

A fault picks its victim on purpose — the worker holding the most running
jobs, read from the store's leases — because killing an idle instance tests
nothing. When the store cannot answer, the fault fails with a
:class:`StackError` (the chaos controller records it in the cell's
``chaos_errors``) instead of killing whichever instance happens to come first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import psycopg

from progressbench.app.instances import Fleet, Instance
from progressbench.app.metering import MeterBook
from progressbench.app.processes import kill, terminate
from progressbench.core.config import Timing
from progressbench.core.errors import StackError

log = logging.getLogger(__name__)

RUNNING_BY_OWNER = "SELECT lease_owner, count(*) FROM jobs WHERE status = 'running' GROUP BY 1"


def running_jobs(database_url: str) -> dict[str, int]:
    """Running jobs per lease owner (an instance name); StackError if the store does not answer."""
    try:
        with psycopg.connect(database_url, connect_timeout=5) as conn:
            rows = conn.execute(RUNNING_BY_OWNER).fetchall()
    except psycopg.Error as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StackError(f"cannot tell which worker holds the running jobs: {reason}") from None
    return {str(owner): int(count) for owner, count in rows if owner is not None}


def pick_victim(live: Sequence[Instance], running: Mapping[str, int]) -> Instance:
    """The instance holding the most running jobs; a tie goes to the one started first."""
    if not live:
        raise StackError("no live worker instance")
    victim = max(live, key=lambda i: running.get(i.name, 0))  # max keeps the first of equals
    if not running.get(victim.name):
        log.info("no worker holds a running job: the fault hits %s, which is idle", victim.name)
    return victim


class Replacer(Protocol):
    """Who starts a killed instance's replacement when a service scales out (the autoscaler)."""

    def reserve(self, role: str) -> bool:
        """Count a start for ``role`` now (before the kill); False if ``role`` is not scaled."""

    def replace_reserved(self, role: str) -> Instance:
        """Start the reserved instance as any scale-up would; returns once it is ready."""


class ServerFaults:
    """Stops and replaces instances of a fleet, banking their meters first."""

    def __init__(self, fleet: Fleet, meters: MeterBook, timing: Timing, database_url: str) -> None:
        self.fleet = fleet
        self.meters = meters
        self.timing = timing
        self.database_url = database_url
        #: Each replacement's cold start as run (seconds from the decision to ready), oldest first.
        self.startups: list[float] = []
        self._last_startup = 0.0
        #: set when services scale out: a replacement is then the autoscaler's start
        self.replacer: Replacer | None = None

    def busiest_worker(self) -> Instance:
        """The live worker instance holding the most running jobs (the one to kill)."""
        live = [i for i in self.fleet.services["worker"].live() if not i.standby and not i.draining]
        if not live:
            raise StackError("no live worker instance")
        return pick_victim(live, running_jobs(self.database_url))

    def server_fault(self, fault: str) -> tuple[int, int]:
        """SIGTERM (grace, then SIGKILL) or SIGKILL the busiest worker, then start a replacement.

        Returns (fault start, replacement ready) as wall-clock ns: the window
        during which the worker service had one instance fewer.
        """
        victim = self.busiest_worker()
        start = time.time_ns()
        # Counted as starting before the kill, so the autoscaler does not start a second one.
        scaled = self.replacer is not None and self.replacer.reserve(victim.role)
        if fault == "sigkill":
            self.meters.retire(victim)
            self.kill(victim)
        else:
            self.terminate(victim)
        if scaled and self.replacer is not None:
            began = time.monotonic()
            self.replacer.replace_reserved(victim.role)
            self.startups.append(time.monotonic() - began)
        else:
            self.replace(victim)
        return start, time.time_ns()

    def terminate(self, instance: Instance, grace_s: float | None = None) -> str:
        """Cloud Run shutdown: SIGTERM, the (scaled) grace period, then SIGKILL.

        Returns ``"exited"`` if the instance left within the grace period,
        ``"killed"`` if it needed the SIGKILL.
        """
        grace = self.timing.scaled(self.timing.shutdown_grace_s) if grace_s is None else grace_s
        self.meters.retire(instance)
        return terminate(instance.process, grace)

    def kill(self, instance: Instance) -> None:
        """SIGKILL, no warning (the instance's meters since the last scrape are lost)."""
        kill(instance.process)

    def replace(self, instance: Instance, cold_start_s: float | None = None) -> Instance:
        """Start a replacement for a dead instance; it serves after about the (scaled) cold start.

        What it took is kept in :attr:`startups` (see :meth:`start_cold`).
        """
        began = time.monotonic()
        fresh = self.start_cold(instance.role, cold_start_s)
        self.startups.append(time.monotonic() - began)
        return fresh

    def start_cold(
        self,
        role: str,
        cold_start_s: float | None = None,
        on_spawned: Callable[[Instance], None] | None = None,
    ) -> Instance:
        """One more instance of ``role`` after the (scaled) cold start; returns once it is ready.

        A Python process takes its own wall time to start, which no time scale
        shortens: sleeping the scaled cold start and then starting would add it
        to every modelled cold start. So the wait before the start is the cold
        start minus what the last start-up took; where a start takes longer
        than the scaled cold start, a replacement's cell reports it as a
        distortion. The autoscaler starts its instances here too
        (``on_spawned``: told the moment the process exists, before it is ready).
        """
        delay = self.timing.scaled(self.timing.cold_start_s) if cold_start_s is None else cold_start_s
        wait = delay - self._last_startup
        if wait > 0:
            time.sleep(wait)
        started = time.monotonic()
        fresh = self.fleet.start(role)
        if on_spawned is not None:
            on_spawned(fresh)
        self.fleet.wait_ready(fresh)
        self._last_startup = time.monotonic() - started
        return fresh
