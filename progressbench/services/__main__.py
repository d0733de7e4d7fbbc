"""Entry point of a service process: ``python -m progressbench.services``.

The supervisor binds the listening socket (port 0: the OS picks) and passes
its file descriptor in ``PROGRESSBENCH_LISTEN_FD``; the process never
chooses a port. Keeping the socket in the supervisor is also what makes a
replacement instance answer on the same URL, as a Cloud Run service does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import uvicorn

from progressbench.config import load_service_config
from progressbench.errors import ProgressbenchError
from progressbench.services.app import build_app

LISTEN_FD_ENV = "PROGRESSBENCH_LISTEN_FD"
ADMIN_FD_ENV = "PROGRESSBENCH_ADMIN_FD"
READY_FILE_ENV = "PROGRESSBENCH_READY_FILE"
SUPERVISOR_PID_ENV = "PROGRESSBENCH_SUPERVISOR_PID"


def die_with_parent() -> None:
    """SIGTERM ourselves if the supervisor process dies, so no orphan outlives a run.

    A thread polls the parent pid rather than using ``PR_SET_PDEATHSIG``:
    that signal follows the parent *thread*, and the supervisor starts
    replacement instances from its fault-injection thread, which ends soon
    after.
    """
    raw = os.environ.get(SUPERVISOR_PID_ENV, "")
    expected = int(raw) if raw.isdigit() else os.getppid()

    def watch() -> None:
        while os.getppid() == expected:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class _Server(uvicorn.Server):
    """uvicorn, plus: SIGTERM tells the job pool at once, not after the drain."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        state = getattr(self.config.app, "state", None)
        ctx = getattr(state, "ctx", None)
        loop = getattr(state, "loop", None)
        if ctx is not None and loop is not None:
            loop.call_soon_threadsafe(ctx.jobs.shutdown.set)
        super().handle_exit(sig, frame)


def main() -> int:
    try:
        config = load_service_config()
    except ProgressbenchError as exc:
        print(f"progressbench service: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {config.instance} %(levelname)s %(name)s: %(message)s",
    )
    die_with_parent()
    sockets = []
    for key in (LISTEN_FD_ENV, ADMIN_FD_ENV):
        raw = os.environ.get(key, "")
        if raw.isdigit():
            sockets.append(socket.socket(fileno=int(raw)))
    if not sockets:
        print(f"progressbench service: {LISTEN_FD_ENV} must name an inherited socket", file=sys.stderr)
        return 2
    ready_file = os.environ.get(READY_FILE_ENV)
    app = build_app(config, on_ready=(lambda: Path(ready_file).touch()) if ready_file else None)
    grace = config.timing.scaled(config.timing.shutdown_grace_s)
    uconfig = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=max(int(grace * 0.6), 1),
    )
    server = _Server(uconfig)
    asyncio.run(server.serve(sockets=sockets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
