"""Entry point of the API and worker processes: ``python -m progressbench.app.services``.

See :mod:`progressbench.kit.runtime` for how the supervisor hands a
service its sockets and configuration.
"""

from __future__ import annotations

import sys
from typing import Any

from progressbench.app.services.app import build_app
from progressbench.kit.runtime import run_asgi


def _tell_jobs(app: Any) -> None:
    """SIGTERM: background jobs start letting go at once, while uvicorn drains."""
    state = getattr(app, "state", None)
    ctx, loop = getattr(state, "ctx", None), getattr(state, "loop", None)
    if ctx is not None and loop is not None:
        loop.call_soon_threadsafe(ctx.jobs.shutdown.set)


def main() -> int:
    return run_asgi(build_app, on_exit=_tell_jobs)


if __name__ == "__main__":
    sys.exit(main())
