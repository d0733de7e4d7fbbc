"""Reports from results: right after a run, or again later from a results folder.

matplotlib is imported only here, when a report is drawn, so commands that
draw nothing start fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from progressbench.app.results import load_events, load_sessions, load_summary, sample_records
from progressbench.core.ledger import EventRow, SessionRow
from progressbench.core.summary import Summary


def render_run(
    out: Path, summary: Summary, sessions: Sequence[SessionRow], events: Sequence[EventRow]
) -> None:
    """A finished run's reports, drawn from the tables it has just written (one path for both)."""
    del summary, sessions, events  # written to ``out`` already; read back like any results folder
    render_folder(out)


def render_folder(folder: Path) -> None:
    """Write ``report.md`` and ``report.html`` of a results folder: summary, tables, raw records."""
    from progressbench.reports.render import write_reports

    write_reports(
        folder,
        load_summary(folder),
        sessions=load_sessions(folder),
        events=load_events(folder),
        records=sample_records(folder),
    )
    link_related(folder)


def link_related(folder: Path) -> None:
    """Link the folder's other reports (a comparison, Locust's own statistics) from report.md/html.

    The section is added at the end of the rendered files (before ``</body>``),
    so the report's own layout stays where it is drawn.
    """
    from progressbench.reports.related import related_files, with_related

    files = related_files(folder)
    for name in ("report.md", "report.html"):
        path = folder / name
        if files and path.is_file():
            path.write_text(with_related(path.read_text(), files, html=name.endswith(".html")))
