"""Many phones per load process: the worker's plan file, and the phones benchmark's arithmetic."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from progressbench.app.session import SessionSpec
from progressbench.app.webui import read_plan
from progressbench.core.config import JobShape, Timing
from progressbench.core.errors import ConfigError
from progressbench.core.events import Alive, Observation, Progress, SessionRecord, Submitted
from tests.helpers import load_benchmark
from tests.unit.specs import cell_plan


def _bench() -> ModuleType:
    return load_benchmark("bench_phones")


def test_a_worker_reads_the_plan_the_master_wrote(tmp_path: Path) -> None:
    plan = cell_plan(
        tmp_path / "web.jsonl", "sse", run_id="web", jobs_per_user=3, seed=7, api="http://127.0.0.1:8123"
    )
    path = tmp_path / "plan.json"
    path.write_text(plan.model_dump_json(indent=2))
    assert read_plan(path) == plan


@pytest.mark.parametrize(
    ("text", "message"), [(None, "cannot read"), ('{"run_id": "web"}', "not a cell plan")]
)
def test_a_missing_or_foreign_plan_is_one_clear_error(tmp_path: Path, text: str | None, message: str) -> None:
    path = tmp_path / "plan.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_plan(path)


def test_memory_per_phone_is_the_rss_growth_over_the_phones_in_kb() -> None:
    bench = _bench()
    # 150,000 KiB more for 10,000 phones: 15.36 KB (1,000 bytes) each
    assert bench.per_phone_kb(100_000, 250_000, 10_000) == pytest.approx(15.36)
    assert bench.per_phone_kb(100_000, 100_000, 0) == 0.0


def test_every_receipt_is_counted_by_type() -> None:
    bench = _bench()

    def record(*events: object) -> SessionRecord:
        observations = [Observation.of(e, i, i) for i, e in enumerate(events)]  # type: ignore[arg-type]
        return SessionRecord.model_validate(
            {
                **dict.fromkeys(("session_id", "transport", "profile", "owner"), "x"),
                "outcome": "terminal",
                "cell": 0,
                "user_index": 0,
                "job_index": 0,
                "started_wall_ns": 0,
                "ended_wall_ns": 1,
                "started_mono_ns": 0,
                "ended_mono_ns": 1,
                "stall_threshold_s": 1.0,
                "time_scale": 1.0,
                "planned_job_s": 1.0,
                "observations": observations,
            }
        )

    one = record(Submitted(job_id="1", token="t"), Progress("1", 1, "step", "m"), Alive(), Alive())
    two = record(Submitted(job_id="2", token="t"), Progress("2", 2, "done", "m"))
    assert bench.receipts([one, two]) == {"submitted": 2, "progress": 2, "alive": 2}


def test_a_cells_specs_share_one_shape_and_one_timing() -> None:
    """The agent validates each phone's spec from JSON; equal shapes and timings are one object
    (a copy each costs 1-4 KB per phone for its whole session), different ones stay apart."""
    first = SessionSpec(
        transport="sse",
        profile="clean",
        owner="p0",
        user_index=0,
        job_index=0,
        seed=1,
        shape=JobShape(),
        timing=Timing(time_scale=0.1),
        endpoints={"api": "http://127.0.0.1:1"},
    )
    raw = first.model_dump(mode="json")
    second = SessionSpec.model_validate({**raw, "owner": "p1", "seed": 2})
    assert second.shape is first.shape and second.timing is first.timing
    other = SessionSpec.model_validate({**raw, "timing": {**raw["timing"], "time_scale": 0.5}})
    assert other.timing is not first.timing and other.timing.time_scale == 0.5
    assert other.shape is first.shape
