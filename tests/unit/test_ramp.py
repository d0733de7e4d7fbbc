"""The phones' arrival ramp is a duration of the scenario: the time scale compresses it like the jobs."""

from __future__ import annotations

from pathlib import Path

import pytest

from progressbench.app.cell import CellPlan
from progressbench.core.config import JobShape, Timing
from progressbench.core.job import JobSpec, plan


def _plan(users: int, spawn_rate: float, scale: float) -> CellPlan:
    return CellPlan(
        run_id="ramp",
        transport="sse",
        profile="clean",
        users=users,
        jobs_per_user=1,
        spawn_rate=spawn_rate,
        seed=1,
        shape=JobShape(),
        timing=Timing(time_scale=scale),
        cell_endpoints=[{"api": "http://127.0.0.1:1"}],
        sessions_path=Path("sessions.jsonl"),
    )


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.1, 0.02])
def test_every_phone_is_on_at_once_at_any_time_scale_as_at_scale_1(scale: float) -> None:
    """1,000 phones at 50 a second: at scale 1 the last one arrives (20 s) before the first one's
    job (~50 s) ends, so all 1,000 streams are open together; the ramp keeps that ratio at any
    scale. Unscaled at 0.1 the ramp outlasted ~4 jobs in a row and no more than a quarter of the
    phones were ever on together."""
    cell = _plan(1000, 50.0, scale)
    ramp_s = cell.users / cell.ramp_rate()
    shortest_job_s = min(
        plan(JobSpec(shape=cell.shape, seed=s, time_scale=scale)).duration_s for s in range(200)
    )
    assert ramp_s == pytest.approx(20.0 * scale)
    assert ramp_s < shortest_job_s
    assert cell.deadline_s() == pytest.approx(2 * 300.0 * scale + 20.0 * scale + 30.0)
