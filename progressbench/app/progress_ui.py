"""What a person watching `progressbench run` sees: a banner, the stack, one bar per cell.

The runner only calls the :class:`~progressbench.app.run.RunView` methods;
this is their rich implementation, so orchestration never touches a console
and a caller without a terminal can pass a quieter view.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from progressbench.app.loadgen import OnCollected
from progressbench.core.config import RunConfig


class RichRunView:
    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )

    def run_started(self, run_id: str, config: RunConfig) -> None:
        self.console.print(
            f"[bold]progressbench run[/] {run_id}: {len(config.transports)} transport(s) × "
            f"{len(config.profiles)} profile(s), {config.users} phones × {config.jobs_per_user} jobs, "
            f"time scale {config.timing.time_scale}"
            + (f", in {config.parallel} parallel parts" if config.parallel > 1 else "")
        )

    def stack_up(self, endpoints: Mapping[str, str], embedded_database: bool) -> None:
        self.console.print(
            f"stack up: {dict(endpoints)} (database: {'embedded' if embedded_database else 'external'})"
        )

    @contextlib.contextmanager
    def cells(self) -> Iterator[None]:
        """The live area the cells' bars are drawn in while they run."""
        with self._progress:
            yield

    def cell_started(self, transport: str, profile: str, sessions: int) -> OnCollected:
        task = self._progress.add_task(f"{transport} × {profile}", total=sessions)
        return lambda collected: self._progress.update(task, completed=collected)

    def part_ended(self, label: str, returncode: int, log: Path) -> None:
        """A ``run --parallel`` part has exited (130: it was stopped; its log says more)."""
        state = "done" if returncode == 0 else f"exited with {returncode}"
        self.console.print(f"{label}: {state} (log: {log})", highlight=False)

    def interrupted(self, late: bool = False) -> None:
        if late:
            self.console.print("[yellow]interrupted while stopping: the results are marked partial[/]")
        else:
            self.console.print("[yellow]interrupted: scoring the sessions collected so far[/]")
