"""The asyncio half of the bridge: a child process that runs phone sessions.

Locust's processes are gevent-patched and the transport clients are asyncio
(the official realtime client can only be), so each Locust process starts
one agent and talks to it over its stdin/stdout, one JSON object per line::

    -> {"id": 7, "spec": {...SessionSpec...}}
    <- {"id": 7, "record": {...SessionRecord...}}               (as the session ends)
    <- {"id": 7, "requests": [{...PhoneRequest...}, ...]}       (once it is scored)

Sessions run concurrently inside the agent; replies come back in completion
order. stdout carries only protocol lines: logs go to stderr. The agent exits
when its stdin closes, cancelling what is still running.

``requests`` are the session's entries for Locust's statistics
(``progressbench.app.phone_stats``): when the cell's plan names the store,
the agent reads the ended session's jobs back from it and scores the session
as the harness will, off the event loop. A store that cannot be read costs
the entries, never the session.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import signal
import sys
from typing import Any

import psycopg

from progressbench.app.cell import CELL_ENV, CellPlan
from progressbench.app.phone_stats import phone_requests
from progressbench.app.session import LiveSession, SessionSpec, run_session, session_record
from progressbench.app.truth import read_truth
from progressbench.core.errors import ProgressbenchError
from progressbench.core.events import SessionRecord
from progressbench.core.ledger import account

log = logging.getLogger("progressbench.agent")

#: Seconds the cancelled sessions get to return their records when the run ends.
FLUSH_S = 10.0


@functools.cache
def _database_url() -> str | None:
    """The store named by the cell's plan (read once; Locust's process hands us its environment)."""
    raw = os.environ.get(CELL_ENV)
    return CellPlan.model_validate_json(raw).database_url if raw else None


async def _requests(record: SessionRecord) -> list[dict[str, Any]]:
    url = _database_url()
    if url is None:
        return []
    try:
        truths = await asyncio.to_thread(read_truth, url, [record.job_id or "", *record.extra_job_ids])
    except (psycopg.Error, ValueError) as exc:
        log.warning("session %s not scored for Locust's statistics: %s", record.session_id, exc)
        return []
    row, events = account(record, truths)
    return [r.as_dict() for r in phone_requests(row, events, record.observations)]


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    write_lock = asyncio.Lock()

    async def write(line: str) -> None:
        async with write_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    async def handle(request_id: int, raw_spec: dict[str, object], live: LiveSession) -> None:
        # The record goes out as soon as the session ends, before it is scored for Locust's
        # statistics: scoring reads the store and may queue behind other sessions' scoring,
        # and the record is what the run needs (the phone's entries follow on a second line).
        try:
            record = await run_session(SessionSpec.model_validate(raw_spec), live)
            await write(json.dumps({"id": request_id, "record": record.model_dump(mode="json")}))
            live.recorded = True
        except Exception as exc:  # reported to the Locust side, never silently dropped
            log.exception("session request %s failed", request_id)
            await write(json.dumps({"id": request_id, "error": f"{type(exc).__name__}: {exc}"}))
            return
        try:
            requests = [] if record.outcome == "interrupted" else await _requests(record)
        except asyncio.CancelledError:  # quitting while scoring: the record is out, the entries are not
            requests = []
        except Exception:
            log.exception("session %s not scored for Locust's statistics", record.session_id)
            requests = []
        await write(json.dumps({"id": request_id, "requests": requests}))

    running: dict[asyncio.Task[None], tuple[int, dict[str, object], LiveSession]] = {}

    while True:
        raw = await reader.readline()
        if not raw:
            break
        message = json.loads(raw)
        live = LiveSession()
        request_id, raw_spec = int(message["id"]), message["spec"]
        task = asyncio.create_task(handle(request_id, raw_spec, live))
        running[task] = (request_id, raw_spec, live)
        task.add_done_callback(lambda done: running.pop(done, None))
    # stdin closed: the Locust side is quitting. Cancel what still runs; each
    # session returns a record marked "interrupted", written out before we exit.
    tasks = list(running)
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=FLUSH_S)
    # A session whose close hangs (a socket blackholed by its cell's fault) still leaves its
    # record, as far as it got: a planned session is never silently missing.
    for request_id, raw_spec, live in list(running.values()):
        if not live.recorded:
            spec = SessionSpec.model_validate(raw_spec)
            note = f"run interrupted; the session did not stop within {FLUSH_S:.0f} s"
            record = session_record(spec, live, "interrupted", note)
            await write(json.dumps({"id": request_id, "record": record.model_dump(mode="json")}))
            live.recorded = True
        await write(json.dumps({"id": request_id, "requests": []}))


def _import_clients() -> None:
    """The client this cell's phones drive (every client when no plan names one), imported now.

    The agent starts while its Locust process imports Locust, so a cell's first phone waits for
    the longer of the two, not for both; the servers are never imported here (registry entries
    name their faces and load them on first use). A plan that does not parse or names no
    transport warms nothing: each session then reports that itself.
    """
    from progressbench.transports.registry import REGISTRY, resolve

    raw = os.environ.get(CELL_ENV)
    try:
        transports = (
            [resolve(CellPlan.model_validate_json(raw).transport)[0]] if raw else [*REGISTRY.values()]
        )
    except (ValueError, ProgressbenchError) as exc:
        log.warning("no client imported ahead of the sessions: %s", exc)
        return
    for transport in transports:
        transport.client  # noqa: B018 (its first use imports it)


def main() -> None:
    # Ctrl-C is the harness's to handle: it closes our stdin, and we flush.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _import_clients()
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s agent %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(_serve())
    # Every record is written and flushed: leave without the interpreter's teardown of every
    # imported module (most of a second on a busy machine, spent at the end of each cell).
    sys.stdout.flush()
    logging.shutdown()
    os._exit(0)


if __name__ == "__main__":
    main()
