"""The cross-tenant canary of a cell: a phone that tries to read another phone's job.

Every cell runs one, beside its phones: it signs in as its own user (owning
no job), waits for the first job any phone of the cell creates, and hands
that job's id to the transport's client face (``Watcher.probe``), which
tries every way that transport reads a job — status URL, stream, socket,
channel (filtered and unfiltered) — with the canary's own credentials. A job
id is not a secret (it travels in URLs); the credentials are what must keep
the canary out. ``canary_probes`` counts the attempts and anything
delivered is added to the cell's ``foreign_events``, which the built-in gate
requires to be 0.

The probe runs in a thread with its own event loop (the runner is
synchronous while Locust drives the cell) and talks to the services
directly, not through the cell's chaos proxy: it measures isolation, not
the network. The victim is found by reading the store (any job created since
the cell began), as an attacker would learn an id from a shared link.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import UTC, datetime

import psycopg

from progressbench.core.config import Timing
from progressbench.core.contract import ClientSettings, ProbeReport
from progressbench.transports.registry import resolve

log = logging.getLogger(__name__)

CANARY_PHONE = "canary"
#: The longest a canary listens on a stream or channel (seconds).
MAX_WINDOW_S = 60.0
#: How often the store is asked for a victim while none exists yet (seconds).
VICTIM_POLL_S = 0.05


def find_victim(conn: psycopg.Connection[tuple[object, ...]], since: datetime) -> str | None:
    """A job created since ``since``, preferring one still running (its events are still to come)."""
    row = conn.execute(
        "SELECT id FROM jobs WHERE created_at >= %s "
        "ORDER BY (status IN ('pending', 'running')) DESC, created_at LIMIT 1",
        (since,),
    ).fetchone()
    return None if row is None else str(row[0])


class Canary:
    """One cell's canary; :meth:`start` before the cell's load, :meth:`stop` after it."""

    def __init__(
        self,
        transport: str,
        endpoints: dict[str, str],
        timing: Timing,
        options: dict[str, str],
        database_url: str,
        since_wall_s: float,
        window_s: float,
    ) -> None:
        self.transport = transport
        self.endpoints = endpoints
        self.timing = timing
        self.options = options
        self.database_url = database_url
        self.since = datetime.fromtimestamp(since_wall_s, UTC)
        self.window_s = min(max(window_s, 0.5), MAX_WINDOW_S)
        self.report = ProbeReport()
        self.victim: str | None = None
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"canary-{transport}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> ProbeReport:
        """End the search for a victim, wait for a probe in flight, and give the report."""
        self._stop.set()
        self._thread.join(self.window_s + 30.0)
        if self._thread.is_alive():
            self.error = "the canary's probe did not end in time"
        for note in self.report.notes:
            log.info("canary %s: %s", self.transport, note)
        return self.report

    def _main(self) -> None:
        try:
            self.victim = self._wait_for_victim()
            if self.victim is not None:
                self.report = asyncio.run(self._probe(self.victim))
        except Exception as exc:  # the canary must never take the run down; the report says so
            log.exception("canary for %s failed", self.transport)
            self.error = f"{type(exc).__name__}: {exc}"[:200]

    def _wait_for_victim(self) -> str | None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while not self._stop.is_set():
                victim = find_victim(conn, self.since)
                if victim is not None:
                    return victim
                self._stop.wait(VICTIM_POLL_S)
        return None

    async def _probe(self, victim: str) -> ProbeReport:
        transport, variant = resolve(self.transport)
        settings = ClientSettings(
            endpoints=dict(self.endpoints), timing=self.timing, variant=variant, options=dict(self.options)
        )
        watcher = transport.client(settings)
        started = time.monotonic()
        report = await watcher.probe(CANARY_PHONE, victim, self.window_s)
        log.info("canary %s probed %s in %.1fs", self.transport, victim, time.monotonic() - started)
        return report
