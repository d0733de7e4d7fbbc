"""The asyncio half of the bridge: a child process that runs phone sessions.

Locust's processes are gevent-patched and the transport clients are asyncio
(the official realtime client can only be), so each Locust process starts
one agent and talks to it over its stdin/stdout, one JSON object per line::

    -> {"id": 7, "spec": {...SessionSpec...}}
    <- {"id": 7, "record": {...SessionRecord...}}

Sessions run concurrently inside the agent; replies come back in completion
order. stdout carries only protocol lines: logs go to stderr. The agent exits
when its stdin closes, cancelling what is still running.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys

from progressbench.app.session import SessionSpec, run_session

log = logging.getLogger("progressbench.agent")


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    write_lock = asyncio.Lock()
    tasks: set[asyncio.Task[None]] = set()

    async def handle(request_id: int, raw_spec: dict[str, object]) -> None:
        try:
            record = await run_session(SessionSpec.model_validate(raw_spec))
            line = json.dumps({"id": request_id, "record": record.model_dump(mode="json")})
        except Exception as exc:  # reported to the Locust side, never silently dropped
            log.exception("session request %s failed", request_id)
            line = json.dumps({"id": request_id, "error": f"{type(exc).__name__}: {exc}"})
        async with write_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    while True:
        raw = await reader.readline()
        if not raw:
            break
        message = json.loads(raw)
        task = asyncio.create_task(handle(int(message["id"]), message["spec"]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    # stdin closed: the Locust side is quitting. Cancel what still runs; each
    # session returns a record marked "interrupted", written out before we exit.
    for task in list(tasks):
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=10)


def main() -> None:
    # Ctrl-C is the harness's to handle: it closes our stdin, and we flush.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s agent %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(_serve())


if __name__ == "__main__":
    main()
