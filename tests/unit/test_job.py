"""The job plan is pure data: same spec, same steps, on any host."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from progressbench.app.configure import model_call_range
from progressbench.core.config import DEFAULT_WAVES, MODEL_CALL, JobShape, RunConfig, Wave, benchmark_waves
from progressbench.core.errors import ConfigError
from progressbench.core.job import JobSpec, job_seed, plan


def test_plan_is_deterministic_and_numbered() -> None:
    """Seqs run 1..N, the terminal seq is N+1, and durations depend only on the seed."""
    spec = JobSpec(seed=42, time_scale=0.5)
    a, b = plan(spec), plan(spec)
    assert a == b
    assert [s.seq for s in a.steps] == list(range(1, 15))
    assert a.terminal_seq == 15
    assert plan(JobSpec(seed=43)).steps != plan(JobSpec(seed=42)).steps


def test_messages_name_the_item_of_its_wave() -> None:
    """Step messages read like the product: "Creating image 3 of 6"."""
    steps = plan(JobSpec()).steps
    assert steps[3].message == "Creating image 3 of 6"
    assert steps[3].payload(14) == {"wave": "Creating image", "item": 3, "of": 6, "step": 4, "total": 14}


def test_time_scale_multiplies_durations() -> None:
    """Scaled jobs keep their shape and shrink their durations."""
    shape = JobShape(waves=(Wave(label="w", items=3),), step_seconds_min=2, step_seconds_max=2)
    assert [s.duration_s for s in plan(JobSpec(shape=shape, time_scale=0.1)).steps] == [0.2] * 3


def test_injected_failure_beyond_the_job_is_ignored() -> None:
    """A fail_at_step past the last step cannot fail the job."""
    shape = JobShape(waves=(Wave(label="w", items=2),), fail_at_step=5)
    assert plan(JobSpec(shape=shape)).fail_at_step is None


def test_remaining_resumes_after_last_committed_step() -> None:
    """A resumed job runs only the steps after its checkpoint."""
    p = plan(JobSpec())
    assert [s.seq for s in p.remaining(5)] == list(range(6, 15))


def test_job_seeds_differ_per_job() -> None:
    """Each phone's each job gets its own reproducible seed."""
    seeds = {job_seed(1, u, j) for u in range(20) for j in range(3)}
    assert len(seeds) == 60 and job_seed(1, 3, 1) == job_seed(1, 3, 1)


def test_the_benchmark_job_has_a_long_silent_model_call() -> None:
    """The run's default shape holds one 30-90 s step (a model call, no event until it returns) after
    the analysis; the other steps keep their 2-5 s and their seeded draws."""
    shape = RunConfig(transports=("sse",)).job
    assert MODEL_CALL in shape.waves and shape.total_steps == 15
    for seed in range(20):
        steps = plan(JobSpec(shape=shape, seed=seed, time_scale=0.1)).steps
        assert steps[1].message == "Calling the model 1 of 1"
        assert 3.0 <= steps[1].duration_s <= 9.0
        assert all(0.2 <= s.duration_s <= 0.5 for i, s in enumerate(steps) if i != 1)
    assert shape.mean_duration_s == 14 * 3.5 + 60.0 and shape.longest_step_s == 90.0
    spec = JobSpec(shape=shape, seed=3, time_scale=0.1)
    assert plan(spec).longest_silence_s == plan(spec).steps[1].duration_s


def test_a_wave_takes_both_bounds_of_its_own_range_or_none() -> None:
    with pytest.raises(ValidationError, match="go together"):
        Wave(label="w", items=1, seconds_min=30)
    with pytest.raises(ValidationError, match="below"):
        Wave(label="w", items=1, seconds_min=30, seconds_max=10)


def test_the_model_call_is_a_run_option() -> None:
    """``--model-call 40,60`` sets its range, ``0`` leaves it out; anything else is a clear error."""
    assert model_call_range("0") is None and benchmark_waves(None) == DEFAULT_WAVES
    assert model_call_range("40, 60") == (40.0, 60.0)
    waves = benchmark_waves((40.0, 60.0))
    assert (waves[1].seconds_min, waves[1].seconds_max) == (40.0, 60.0) and len(waves) == 5
    for bad in ("abc", "60,40", "30"):
        with pytest.raises(ConfigError, match="--model-call"):
            model_call_range(bad)
