"""The one job every transport runs, as pure data.

A job is waves of steps ("Creating image 3 of 6"). Step ``k`` (1-based) has
sequence number ``k``; the terminal event (``done`` or ``failed``) always has
``seq = total_steps + 1``. Because the numbering and the seeded durations are
a function of the stored :class:`JobSpec` alone, any instance that resumes a
job re-derives exactly the same plan and its UPSERTs converge on the same
rows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from progressbench.core.config import JobShape

EventKind = Literal["step", "done", "failed"]


class JobSpec(BaseModel):
    """Everything needed to (re)plan one job; stored with the job row."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    shape: JobShape = JobShape()
    seed: int = 0
    time_scale: float = Field(default=1.0, gt=0)


@dataclass(frozen=True, slots=True)
class Step:
    seq: int
    wave: str
    item: int
    of: int
    duration_s: float

    @property
    def message(self) -> str:
        return f"{self.wave} {self.item} of {self.of}"

    def payload(self, total_steps: int) -> dict[str, object]:
        return {
            "wave": self.wave,
            "item": self.item,
            "of": self.of,
            "step": self.seq,
            "total": total_steps,
        }


@dataclass(frozen=True, slots=True)
class JobPlan:
    steps: tuple[Step, ...]
    fail_at_step: int | None

    @property
    def total_steps(self) -> int:
        return len(self.steps)

    @property
    def terminal_seq(self) -> int:
        return len(self.steps) + 1

    @property
    def duration_s(self) -> float:
        """Running time as planned, at the spec's time scale: what a time to result is read against."""
        return sum(step.duration_s for step in self.steps)

    @property
    def longest_silence_s(self) -> float:
        """The longest step, at the spec's time scale: how long the job itself says nothing."""
        return max((step.duration_s for step in self.steps), default=0.0)

    def remaining(self, after_step: int) -> tuple[Step, ...]:
        """Steps still to run after the last committed step ``after_step``."""
        return self.steps[max(after_step, 0) :]


def plan(spec: JobSpec) -> JobPlan:
    """Derive the job's steps from its spec; same spec, same plan, on any host."""
    rng = random.Random(spec.seed)
    shape = spec.shape
    steps: list[Step] = []
    seq = 0
    for wave in shape.waves:
        low, high = shape.step_range(wave)
        for item in range(1, wave.items + 1):
            seq += 1
            base = rng.uniform(low, high)
            steps.append(Step(seq, wave.label, item, wave.items, base * spec.time_scale))
    fail_at = shape.fail_at_step
    if fail_at is not None and fail_at > len(steps):
        fail_at = None
    return JobPlan(tuple(steps), fail_at)


def terminal_message(kind: EventKind, failed_step: Step | None = None) -> str:
    if kind == "done":
        return "Done"
    if failed_step is not None:
        return f"Failed at {failed_step.message}"
    return "Failed"


def job_seed(run_seed: int, user_index: int, job_index: int) -> int:
    """A stable per-job seed so a run with the same ``--seed`` replays the same jobs."""
    return (run_seed * 1_000_003 + user_index * 10_007 + job_index) & 0x7FFFFFFF
