"""The saturation verdict: which figures make a cell 'measured the machine', and which do not."""

from __future__ import annotations

from progressbench.app.scoring import job_timings
from progressbench.core.events import SessionRecord
from progressbench.core.ledger import JobTruth
from progressbench.core.saturation import (
    CpuSeries,
    JobTiming,
    busiest_window,
    cpu_in_window,
    job_slowdown,
    judge,
)
from tests.unit.test_ledger import record


def series(group: str, name: str, *samples: float) -> CpuSeries:
    return CpuSeries(group=group, name=name, samples=tuple(samples))


ON_PLAN = [JobTiming(ran_s=3.1, planned_s=3.0), JobTiming(ran_s=2.9, planned_s=3.0)]


def test_a_relaxed_cell_is_not_saturated() -> None:
    verdict = judge(
        [series("generator", "locust", 20, 30), series("api", "api-1", 40, 50)], [30, 40], ON_PLAN
    )
    assert not verdict.saturated and verdict.reasons == []
    assert verdict.generator_cpu == 25 and verdict.service_cpu == {"api": 45} and verdict.machine_cpu == 35


def test_a_pegged_generator_process_saturates_even_if_its_siblings_idle() -> None:
    verdict = judge(
        [series("generator", "locust", 10, 10), series("generator", "locust/agent-7", 95, 97)], [60], ON_PLAN
    )
    assert verdict.saturated and verdict.generator_cpu == 96
    assert "load generator" in verdict.reasons[0]


def test_a_pegged_service_instance_is_named() -> None:
    verdict = judge([series("worker", "worker-1", 20), series("worker", "worker-2", 92, 94)], [50], ON_PLAN)
    assert verdict.saturated and verdict.service_cpu == {"worker": 93}
    assert verdict.reasons == ["worker-2 at 93% of a core (limit 90%)"]


def test_postgres_processes_add_up_and_are_reported_not_judged_per_backend() -> None:
    verdict = judge([series("postgres", "pg", 50), series("postgres", "pg/postgres-2", 60)], [40], ON_PLAN)
    assert verdict.service_cpu == {"postgres": 110} and not verdict.saturated


def test_a_busy_machine_saturates_although_no_single_process_is_pegged() -> None:
    verdict = judge([series("generator", "locust", 60), series("api", "api-1", 70)], [95, 97], ON_PLAN)
    assert verdict.saturated and verdict.reasons == ["machine CPU at 96% of all cores (limit 90%)"]


def test_slow_jobs_saturate_and_the_median_ignores_one_outlier() -> None:
    slow = [JobTiming(ran_s=4.0, planned_s=3.0)] * 3
    assert judge([], [10], slow).reasons == ["jobs ran 1.33× their planned duration (limit 1.25×)"]
    one_outlier = [*ON_PLAN, JobTiming(ran_s=30.0, planned_s=3.0)]
    assert not judge([], [10], one_outlier).saturated


def test_without_samples_or_jobs_the_figures_are_unknown_not_zero() -> None:
    verdict = judge([], [], [])
    assert verdict.generator_cpu is None and verdict.machine_cpu is None and verdict.job_slowdown is None
    assert not verdict.saturated
    assert job_slowdown([JobTiming(ran_s=1.0, planned_s=0.0)]) is None


def _record(job_id: str) -> SessionRecord:
    return record([], job_id=job_id, planned_job_s=3.0)


def _truth(job_id: str, context: str, ran_s: float) -> JobTruth:
    return JobTruth(
        job_id=job_id,
        status="done",
        events=(),
        contexts=(context,),
        triggers=("dispatch",),
        started_wall_ns=0,
        finished_wall_ns=int(ran_s * 1e9),
    )


def test_a_job_throttled_by_its_platform_does_not_count_as_the_hosts_slowness() -> None:
    """polling:in-instance's job waits for requests by design; 2.7x its plan is the pattern, not the host."""
    truth = {
        "a": _truth("a", "worker/worker-background", 3.3),
        "b": _truth("b", "api/instance-background", 8.1),
    }
    timings = job_timings([_record("a"), _record("b")], truth)
    assert timings == [JobTiming(ran_s=3.3, planned_s=3.0)]
    assert not judge([], [30], timings).saturated
    slow = job_timings([_record("b")], {"b": _truth("b", "api/request", 8.1)})
    assert judge([], [30], slow).saturated, "the same pace outside a throttled context is the host's"


def test_a_congested_stretch_saturates_a_cell_whose_mean_stays_under_the_limit() -> None:
    # A 5-minute cell sampled every 0.5 s: 40 s at 98 % (phones arriving, instances starting),
    # then 260 s at 50 %: the cell's mean is 56 %, its busiest 30 s all at 98 %.
    samples = [98.0] * 80 + [50.0] * 520
    verdict = judge([series("generator", "locust", 40)], samples, ON_PLAN, interval_s=0.5)
    assert verdict.machine_cpu is not None and verdict.machine_cpu < 90
    assert verdict.machine_cpu_peak == 98
    assert verdict.saturated
    assert verdict.reasons == [
        "machine CPU at 98% of all cores over its busiest 30 s (limit 90%; 56% over the whole cell)"
    ]


def test_a_short_spike_does_not_saturate_a_cell() -> None:
    # 5 s at 100 % (a cell's start-up) in 60 s at 40 %: its busiest 30 s average 50 %.
    samples = [100.0] * 10 + [40.0] * 110
    verdict = judge([series("generator", "locust", 40)], samples, ON_PLAN, interval_s=0.5)
    assert not verdict.saturated and verdict.machine_cpu_peak == 50


def test_a_cell_shorter_than_the_window_peaks_at_its_mean() -> None:
    verdict = judge([series("generator", "locust", 40)], [80.0, 90.0, 100.0], ON_PLAN, interval_s=0.5)
    assert verdict.machine_cpu_peak == verdict.machine_cpu == 90
    assert busiest_window([80.0, 90.0, 100.0], interval_s=0.5) == (0, 3)
    assert busiest_window([], interval_s=0.5) is None


def test_the_busiest_stretch_names_who_had_the_machine_then() -> None:
    # 20 ticks; the machine is busiest over ticks 10-19 (a 5 s window at 0.5 s per tick).
    machine = [30.0] * 10 + [95.0] * 10
    api_1 = CpuSeries("api", "api-1", tuple([20.0] * 20))
    api_2 = CpuSeries("api", "api-2", (80.0,) * 5, first_tick=15)  # a scale-out instance, started late
    phones = CpuSeries("generator", "locust", tuple([10.0] * 10 + [60.0] * 10))
    gone = CpuSeries("worker", "worker-1", (50.0,) * 5)  # SIGKILLed before the busy stretch
    start, width = busiest_window(machine, interval_s=0.5, window_s=5.0) or (0, 0)
    assert (start, width) == (10, 10)
    # api-2 ran for half of the window at 80 %: 40 % of a core over it, beside api-1's 20 %.
    assert cpu_in_window([api_1, api_2, phones, gone], start, width) == {
        "api": 60.0,
        "generator": 60.0,
    }
