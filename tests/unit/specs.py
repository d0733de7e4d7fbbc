"""Phone session specs and cell plans for tests: one builder each, so a test states only what matters."""

from __future__ import annotations

from pathlib import Path

from progressbench.app.cell import CellPlan
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


def cell_plan(
    sessions_path: Path,
    transport: str = "sse",
    *,
    run_id: str = "test",
    jobs_per_user: int = 1,
    seed: int = 1,
    api: str = "http://127.0.0.1:9",
) -> CellPlan:
    """One phone's cell on ``transport`` × clean, writing its sessions to ``sessions_path``."""
    return CellPlan(
        run_id=run_id,
        transport=transport,
        profile="clean",
        users=1,
        jobs_per_user=jobs_per_user,
        spawn_rate=1,
        seed=seed,
        shape=JobShape(),
        timing=Timing(),
        cell_endpoints=[{"api": api}],
        sessions_path=sessions_path,
    )
