"""Phone session specs for tests: one builder, so each test states only what matters to it."""

from __future__ import annotations

from progressbench.app.session import SessionSpec
from progressbench.core.config import JobShape, Timing


def session_spec(
    phone: int,
    transport: str = "polling",
    *,
    timing: Timing | None = None,
    api: str = "http://127.0.0.1:9",
    options: dict[str, str] | None = None,
) -> SessionSpec:
    """Phone ``phone``'s first job on ``transport`` × clean; port 9 (discard) by default: nothing answers."""
    return SessionSpec(
        transport=transport,
        profile="clean",
        owner=f"phone-{phone}",
        user_index=phone,
        job_index=0,
        seed=phone,
        shape=JobShape(),
        timing=timing or Timing(),
        endpoints={"api": api},
        options=options or {},
    )
