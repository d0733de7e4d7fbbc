"""A cell of the run matrix: one transport under one profile, as handed to Locust.

The harness writes a :class:`CellPlan` as JSON into the Locust process's
environment; that is the Locust side's one read of its configuration.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from progressbench.app.session import SessionSpec
from progressbench.core.config import JobShape, Timing
from progressbench.core.job import job_seed

CELL_ENV = "PROGRESSBENCH_CELL"


class CellPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_id: str
    transport: str
    profile: str
    users: int = Field(ge=1)
    jobs_per_user: int = Field(ge=1)
    spawn_rate: float = Field(gt=0)
    seed: int
    shape: JobShape
    timing: Timing
    #: Per chaos cell: the endpoints its phones use (through its proxies).
    cell_endpoints: list[dict[str, str]] = Field(min_length=1)
    sessions_path: Path
    options: dict[str, str] = {}
    #: The store the phones' sessions are scored against for Locust's statistics (each ended
    #: session's job read back, as the harness does after the cell); None: Locust counts jobs only.
    database_url: str | None = None
    #: Where Locust writes its own statistics: ``PREFIX_stats.csv`` (and the other CSVs) and
    #: ``PREFIX.html``; None: nowhere.
    locust_stats: Path | None = None

    @property
    def expected_sessions(self) -> int:
        return self.users * self.jobs_per_user

    def deadline_s(self) -> float:
        """Hard stop for the whole cell: every job, serially, twice over, plus spawn time."""
        t = self.timing
        return t.scaled(t.session_deadline_s) * 2 + self.users / self.spawn_rate + 30.0

    def session_spec(self, owner: str, user_index: int, job_index: int) -> SessionSpec:
        cell = user_index % len(self.cell_endpoints)
        return SessionSpec(
            transport=self.transport,
            profile=self.profile,
            cell=cell,
            owner=owner,
            user_index=user_index,
            job_index=job_index,
            seed=job_seed(self.seed, user_index, job_index),
            shape=self.shape,
            timing=self.timing,
            endpoints=self.cell_endpoints[cell],
            # which phone of the cell this is: a transport may run some phones differently
            options={**self.options, "phone_index": str(user_index)},
        )
