"""One results folder out of several: how `run --parallel` splits the matrix and puts it back together.

A parallel run gives each *part* (a group of transports) to a child
`progressbench run` with its own stack and its own folder. The parts'
cells are already scored (scoring needs the store, which each child stops
when it is done), so merging never re-scores: it orders the parts' cells as
a sequential run would have written them (transport by transport, each
through the profiles), decides whether the whole is complete, and joins the
parts' tables and raw records file by file.

The choices are here, apart from the processes, so they are tested without
starting any.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path

from progressbench.app.results import EVENTS, RAW_DIR, SESSIONS
from progressbench.core.errors import ResultsError
from progressbench.core.summary import CellSummary, Summary
from progressbench.reports.related import LOCUST_DIR


def groups(transports: Sequence[str], parts: int) -> list[tuple[str, ...]]:
    """``transports`` in ``parts`` contiguous groups whose sizes differ by one at most, larger first.

    Contiguous, so the variants of one transport (listed together) share a
    stack and its services start once; never more groups than transports.
    """
    count = max(1, min(parts, len(transports)))
    size, extra = divmod(len(transports), count)
    found: list[tuple[str, ...]] = []
    start = 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        found.append(tuple(transports[start:end]))
        start = end
    return found


def merged_cells(
    summaries: Sequence[Summary], transports: Sequence[str], profiles: Sequence[str]
) -> list[CellSummary]:
    """Every part's cells in the run's order (transport, then profile); a cell nobody planned goes last."""
    order = {cell: index for index, cell in enumerate(product(transports, profiles))}
    cells = [cell for summary in summaries for cell in summary.cells]
    return sorted(cells, key=lambda c: order.get((c.transport, c.profile), len(order)))


@dataclass(frozen=True)
class PartEnd:
    """How one part ended: its exit status (None: never started) and what it wrote (None: nothing)."""

    returncode: int | None
    summary: Summary | None


#: The exit status of a run stopped by Ctrl-C or SIGTERM (cli.py).
INTERRUPTED_EXIT = 130


def merged_state(ends: Sequence[PartEnd], planned: int, interrupted: bool) -> tuple[bool, bool]:
    """(complete, interrupted) of the whole run.

    Interrupted when the parent was, or any part says it was (a part can be
    stopped on its own). Complete only when nobody was interrupted, every
    part ended well and wrote a complete summary, and every planned cell is there.
    """
    interrupted = interrupted or any(
        e.returncode == INTERRUPTED_EXIT or (e.summary is not None and e.summary.interrupted) for e in ends
    )
    cells = sum(len(e.summary.cells) for e in ends if e.summary is not None)
    complete = (
        not interrupted
        and cells == planned
        and all(e.returncode == 0 and e.summary is not None and e.summary.complete for e in ends)
    )
    return complete, interrupted


def join_tables(out: Path, parts: Sequence[Path]) -> None:
    """``sessions.csv`` and ``events.csv`` of ``out``: each part's rows, in the parts' order.

    Joined as text, not re-read and re-written: a round trip through a
    table reader would change how empty and numeric cells are spelled. A
    part that wrote no table adds no row; a header that differs from the
    first part's is a ResultsError (the parts ran different code). With no
    part's table, ``out`` has none either.
    """
    for name in (SESSIONS, EVENTS):
        header: str | None = None
        rows: list[str] = []
        for part in parts:
            path = part / name
            if not path.is_file():
                continue
            first, _, rest = path.read_text(encoding="utf-8").partition("\n")
            if header is None:
                header = first
            elif first != header:
                raise ResultsError(f"{path}: its columns differ from the other parts' ({name})")
            rows.append(rest)
        if header is not None:
            (out / name).write_text(header + "\n" + "".join(rows), encoding="utf-8")
        else:  # no part got as far: an earlier run's table must not pass for this one's
            (out / name).unlink(missing_ok=True)


def gather_files(out: Path, parts: Sequence[Path]) -> None:
    """Each part's raw session records and Locust reports, copied into ``out`` where a run keeps them.

    The report samples timelines from ``raw/`` and links Locust's reports;
    cell names are unique across parts (each part has its own transports).
    """
    for folder in (RAW_DIR, LOCUST_DIR):
        for part in parts:
            source = part / folder
            if not source.is_dir():
                continue
            target = out / folder
            target.mkdir(parents=True, exist_ok=True)
            for path in sorted(source.iterdir()):
                if path.is_file():
                    shutil.copyfile(path, target / path.name)
