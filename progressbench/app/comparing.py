"""`progressbench compare` and `baseline save` without the printing: folders in, files out.

A run is a results folder (``summary.json`` plus ``sessions.csv`` and
``events.csv``, whose raw rows give the comparison its intervals) or a bare
``summary.json`` (values shown, changes not tested). A baseline is a copy of
those three files in a folder of its own, so a later ``check --baseline`` or
``compare`` finds the raw rows too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from progressbench.app.results import EVENTS, SESSIONS, SUMMARY, load_summary
from progressbench.core.errors import ConfigError, ResultsError
from progressbench.reports.compare import Comparison, RunData, compare_runs, html_report, markdown

COMPARE_MD = "compare.md"
COMPARE_HTML = "compare.html"
#: Where ``baseline save`` puts a baseline unless told otherwise (relative to the working directory).
DEFAULT_BASELINE = Path(".progressbench/baseline")


def _table(folder: Path, name: str) -> pd.DataFrame:
    path = folder / name
    if not path.is_file():
        return pd.DataFrame()
    try:
        return pd.read_csv(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise ResultsError(f"{path}: unreadable table ({str(exc).splitlines()[0][:160]})") from None


def load_run(path: Path) -> RunData:
    """A results folder (or a summary.json) with its raw tables when they are beside it."""
    summary = load_summary(path)
    folder = path if path.is_dir() else path.parent
    return RunData(summary, _table(folder, SESSIONS), _table(folder, EVENTS), label=str(path))


def compare_folders(base: Path, new: Path, out: Path) -> tuple[Comparison, Path, Path]:
    """Compare two runs and write ``compare.md`` and ``compare.html`` into ``out``."""
    comparison = compare_runs(load_run(base), load_run(new))
    out.mkdir(parents=True, exist_ok=True)
    md_path, html_path = out / COMPARE_MD, out / COMPARE_HTML
    md_path.write_text(markdown(comparison))
    html_path.write_text(html_report(comparison))
    return comparison, md_path, html_path


def save_baseline(results: Path, to: Path) -> Path:
    """Copy a complete run's summary and raw tables into ``to``; the folder ``check --baseline`` reads."""
    summary = load_summary(results)
    if not summary.complete:
        raise ResultsError(
            f"{results}: these results are partial (interrupted or cut short); a baseline must be a "
            "complete run"
        )
    folder = results if results.is_dir() else results.parent
    if to.exists() and not to.is_dir():
        raise ConfigError(f"--to: {to} exists and is not a folder")
    to.mkdir(parents=True, exist_ok=True)
    (to / SUMMARY).write_text(summary.to_json())
    for name in (SESSIONS, EVENTS):
        source, target = folder / name, to / name
        if source.is_file():
            shutil.copyfile(source, target)
        else:
            target.unlink(missing_ok=True)  # a stale table from an older baseline would be misread
    return to
