"""What every service process shares, whichever transport it belongs to.

The supervisor starts a service as ``python -m <module>`` with:

* ``PROGRESSBENCH_SERVICE_CONFIG`` — the :class:`~progressbench.core.config.ServiceConfig`
  JSON (its ``peers`` give every other service's URL);
* ``PROGRESSBENCH_LISTEN_FD`` — the service's listening socket, already bound
  (all instances of a service share it: it is the service's URL);
* ``PROGRESSBENCH_ADMIN_FD`` — this instance's own socket, where the
  supervisor reads ``GET /metrics`` and ``GET /healthz``;
* ``PROGRESSBENCH_READY_FILE`` — touch it once you accept connections;
* ``PROGRESSBENCH_SUPERVISOR_PID`` — exit if that process goes away.

:func:`run_asgi` does all of it for an ASGI app under uvicorn (serving both
sockets); other servers use :func:`inherited_sockets`, :func:`mark_ready`
and :func:`die_with_parent` directly.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from progressbench.core.config import ServiceConfig, load_service_config
from progressbench.core.errors import ProgressbenchError
from progressbench.kit import logbounds
from progressbench.kit.slowheaders import with_header_timeout

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


def inherited_sockets() -> tuple[socket.socket, socket.socket | None]:
    """(the service socket, this instance's admin socket or None)."""
    listen = os.environ.get(LISTEN_FD_ENV, "")
    if not listen.isdigit():
        raise ProgressbenchError(f"{LISTEN_FD_ENV} must name an inherited socket")
    admin = os.environ.get(ADMIN_FD_ENV, "")
    return (
        socket.socket(fileno=int(listen)),
        socket.socket(fileno=int(admin)) if admin.isdigit() else None,
    )


def mark_ready() -> None:
    path = os.environ.get(READY_FILE_ENV)
    if path:
        Path(path).touch()


def setup_logging(config: ServiceConfig) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {config.instance} %(levelname)s %(name)s: %(message)s",
    )
    logbounds.install()


class _Server(uvicorn.Server):
    """uvicorn, plus an ``on_exit`` hook run the moment SIGTERM arrives (not after the drain)."""

    on_exit: Callable[[], None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.on_exit is not None:
            self.on_exit()
        super().handle_exit(sig, frame)


def freeze_startup_heap() -> None:
    """Move every object alive after start-up out of the collector's reach (``gc.freeze``).

    A service's imports, app, models and pools (~90 MB in the API) live until
    it exits, yet each full collection walked them all again: measured in the
    API with 1,000 SSE streams open, full collections paused the event loop up
    to hundreds of milliseconds, every stream's writes waiting behind them (the
    commit-to-client tail). Frozen, a full collection walks only what was made
    since: the requests and streams. Garbage is collected first, so none is frozen.
    """
    gc.collect()
    gc.freeze()


def start_service() -> tuple[ServiceConfig, socket.socket, socket.socket | None] | None:
    """What every service process does first: its config, its inherited sockets, logging, the
    parent watch. None (after one line on stderr) when it cannot start: the caller exits 2."""
    try:
        config = load_service_config()
        listen, admin = inherited_sockets()
    except ProgressbenchError as exc:
        print(f"progressbench service: {exc}", file=sys.stderr)
        return None
    setup_logging(config)
    die_with_parent()
    return config, listen, admin


def run_asgi(
    build: Callable[[ServiceConfig], Any],
    *,
    on_exit: Callable[[Any], None] | None = None,
    ws_compression: bool = True,
) -> int:
    """The whole ``main()`` of an ASGI service: config, sockets, readiness, uvicorn.

    ``build(config)`` returns the ASGI app; readiness is marked when its
    lifespan startup has finished (uvicorn only then serves the sockets,
    which already queue connections). ``on_exit(app)`` runs on SIGTERM.
    ``ws_compression=False`` declines websocket permessage-deflate (uvicorn
    offers it by default), for a service whose real counterpart does not.
    """
    started = start_service()
    if started is None:
        return 2
    config, listen, admin = started
    app = build(config)
    grace = config.timing.scaled(config.timing.shutdown_grace_s)
    server = _Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            http=with_header_timeout(config.timing.header_timeout()),
            timeout_graceful_shutdown=max(int(grace * 0.6), 1),
            ws_per_message_deflate=ws_compression,
        )
    )
    if on_exit is not None:
        server.on_exit = lambda: on_exit(app)

    async def serve() -> None:
        sockets = [listen] if admin is None else [listen, admin]
        task = asyncio.create_task(server.serve(sockets=sockets))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            freeze_startup_heap()
            mark_ready()
        await task

    asyncio.run(serve())
    return 0
