"""`progressbench run --parallel N`: the transports split over N child runs, merged into one folder.

Why child processes, each a whole `progressbench run`: a cell's cost comes
from its stack's meters and instance counts, and a stack's lease watchdog
and autoscaler see every job on it. Two cells on one stack at once would mix
all of that. So each part (a group of transports, :func:`~progressbench.app.merging.groups`)
gets its own stack, its own embedded PostgreSQL and its own folder,
``OUT/parts/<k>``, and runs its cells one after another exactly as a
sequential run would. The parent only starts the parts, shows how many
sessions each has collected, and merges what they wrote with the functions a
sequential run writes its own folder with: ``check``, ``compare`` and
``report`` read the merged folder as any other.

What it measures: the parts share the machine. Each part's CPU sampler
reads the whole machine's CPU as well as its own processes', so a cell
squeezed by its neighbours is flagged ``saturated`` like any other; on a
small machine a parallel run measures the machine more often than a
sequential one.

Stopping: the parts run in sessions of their own (a terminal's Ctrl-C
reaches only the parent). The parent's first stop signal sends SIGTERM to
every part, each of which stops its phones, writes its partial results and
stops its stack; a part still running after :data:`PART_GRACE_S` is
killed (its services notice their parent is gone). The parent then merges
what was written and marks the run interrupted.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from progressbench.app.interrupts import deferred, held
from progressbench.app.loadgen import OnCollected, count_lines
from progressbench.app.merging import PartEnd, gather_files, groups, join_tables, merged_cells, merged_state
from progressbench.app.processes import python_module, spawn, stop_all
from progressbench.app.rendering import render_folder
from progressbench.app.results import RAW_DIR, SUMMARY, load_summary, write_summary
from progressbench.app.run import RunOutcome, RunView, prepare
from progressbench.core.config import RunConfig
from progressbench.core.errors import ConfigError, ResultsError
from progressbench.core.summary import Summary

#: Where a parallel run keeps its parts' folders, under its own.
PARTS_DIR = "parts"
#: From SIGTERM to a part's exit: Locust's flush (20 s at most), scoring and the stack's teardown.
PART_GRACE_S = 60.0
#: How often the parent counts the parts' sessions (a display, not a measurement).
POLL_S = 0.5


class PartsView(RunView, Protocol):
    """A run view that is also told when a part ends (``progress_ui.RichRunView``)."""

    def part_ended(self, label: str, returncode: int, log: Path) -> None: ...


@dataclass(frozen=True)
class Part:
    """One child run: its transports, its folder, its log (the child's own console output)."""

    index: int
    transports: tuple[str, ...]
    out: Path
    log: Path

    @property
    def label(self) -> str:
        return f"part {self.index} ({', '.join(self.transports)})"

    def sessions(self) -> int:
        """Sessions its phones have written so far, over its cells."""
        return sum(count_lines(path) for path in (self.out / RAW_DIR).glob("*.jsonl"))


def refuse_shared_servers(config: RunConfig) -> None:
    """The parts each need a server of their own where the testbed keeps cluster-wide names.

    A realtime service's replication slot is named per PostgreSQL cluster, and
    a stack clears every ``pb-`` proxy it finds on a Toxiproxy server: two
    parts on one server would take each other's.
    """
    for value, flag, env in (
        (config.database_url, "--database-url", "DATABASE_URL"),
        (config.toxiproxy_url, "--toxiproxy-url", "TOXIPROXY_URL"),
    ):
        if value:
            raise ConfigError(
                f"--parallel {config.parallel}: each part runs its own embedded servers, so {flag} "
                f"(or {env}) cannot be shared; leave it out or use --parallel 1"
            )


def child_command(args: Sequence[str], part: Part) -> list[str]:
    """``progressbench run`` with the parent's own options, the part's transports and folder
    (``--part``: the parent draws the one report)."""
    return [
        *python_module("progressbench"),
        "run",
        "--part",
        *args,
        "--transports",
        ",".join(part.transports),
        "--out",
        str(part.out),
    ]


def plan_parts(config: RunConfig) -> list[Part]:
    logs = config.out / "logs"
    return [
        Part(k, group, config.out / PARTS_DIR / str(k), logs / f"part-{k}.log")
        for k, group in enumerate(groups(config.transports, config.parallel), start=1)
    ]


def execute_parallel(config: RunConfig, args: Sequence[str], view: PartsView) -> RunOutcome:
    """Run ``config``'s matrix as ``config.parallel`` child runs and merge their folders into ``config.out``.

    ``args``: the parent's command-line options other than ``--transports``,
    ``--out`` and ``--parallel``, given to every child as they are.
    """
    refuse_shared_servers(config)
    prepared = prepare(config)  # every ConfigError before a child starts
    config = prepared.config
    parts = plan_parts(config)
    (config.out / "logs").mkdir(parents=True, exist_ok=True)
    for stale in [*(config.out / RAW_DIR).glob("*.jsonl"), *(p.out / SUMMARY for p in parts)]:
        stale.unlink(missing_ok=True)
    for part in parts:
        for stale in (part.out / RAW_DIR).glob("*.jsonl"):
            stale.unlink()
        part.log.unlink(missing_ok=True)
    run_id = uuid.uuid4().hex[:12]
    started = time.time()
    view.run_started(run_id, config)
    procs: list[subprocess.Popen[bytes]] = []
    interrupted = False
    try:
        with deferred():  # a stop signal must not fall between starting a part and owning it
            for part in parts:
                procs.append(spawn(child_command(args, part), part.log))
        watch(parts, procs, config, view)
    except KeyboardInterrupt:
        interrupted = True
        view.interrupted()
    finally:
        with held() as late:  # every part gets its SIGTERM and its grace, whatever arrives meanwhile
            stop_all(procs, grace_s=PART_GRACE_S)
    if late.received and not interrupted:
        interrupted = True
        view.interrupted(late=True)

    ends, problems = collect(parts, procs, interrupted)
    planned = len(config.transports) * len(config.profiles)
    complete, interrupted = merged_state(ends, planned, interrupted)
    summaries = [e.summary for e in ends if e.summary is not None]
    summary = prepared.summary(
        run_id=run_id,
        complete=complete,
        interrupted=interrupted,
        started=started,
        cells=merged_cells(summaries, config.transports, config.profiles),
    )
    written = [p.out for p, e in zip(parts, ends, strict=True) if e.summary is not None]
    join_tables(config.out, written)
    gather_files(config.out, written)
    write_summary(config.out, summary)
    render_folder(config.out)
    return RunOutcome(
        out=config.out,
        summary=summary,
        complete=complete,
        interrupted=interrupted,
        logs=str(config.out / PARTS_DIR / "*" / "logs"),
        problems=problems,
    )


def watch(
    parts: Sequence[Part], procs: Sequence[subprocess.Popen[bytes]], config: RunConfig, view: PartsView
) -> None:
    """Until every part has exited: each part's sessions on its bar, a line when one ends."""
    expected = config.users * config.jobs_per_user * len(config.profiles)
    with view.cells():
        bars: list[OnCollected] = [
            view.cell_started(
                ", ".join(p.transports), ", ".join(config.profiles), expected * len(p.transports)
            )
            for p in parts
        ]
        running = set(range(len(parts)))
        while running:
            for k in sorted(running):
                bars[k](parts[k].sessions())
                code = procs[k].poll()
                if code is not None:
                    running.discard(k)
                    view.part_ended(parts[k].label, code, parts[k].log)
            if running:
                time.sleep(POLL_S)


def collect(
    parts: Sequence[Part], procs: Sequence[subprocess.Popen[bytes]], interrupted: bool
) -> tuple[list[PartEnd], list[str]]:
    """Each part's exit status and summary, and one line per part that failed (with its log)."""
    ends: list[PartEnd] = []
    problems: list[str] = []
    for index, part in enumerate(parts):
        code = procs[index].returncode if index < len(procs) else None
        summary: Summary | None = None
        try:
            summary = load_summary(part.out)
        except ResultsError as exc:
            if code is not None:  # a part never started has nothing to say
                problems.append(f"{part.label} wrote no results ({exc}); see {part.log}")
        else:
            if code not in (0, 130) or (code == 130 and not interrupted):
                problems.append(f"{part.label} exited with {code}; see {part.log}")
        ends.append(PartEnd(code, summary))
    return ends, problems
