"""The job plan is pure data: same spec, same steps, on any host."""

from __future__ import annotations

from progressbench.core.config import JobShape, Wave
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
