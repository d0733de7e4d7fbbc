"""Results folders: written self-describing, loaded only if we understand them.

``summary.json`` carries a schema version, the commit, the machine,
dependency versions, the full configuration and the profiles; loaders refuse
versions they do not know, and comparisons warn across machines.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, fields
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pandas as pd

from progressbench.app.scoring import Provenance
from progressbench.core.errors import ResultsError
from progressbench.core.events import SessionRecord
from progressbench.core.ledger import EventRow, SessionRow
from progressbench.core.summary import MachineInfo, Summary, parse_summary

SUMMARY = "summary.json"
SESSIONS = "sessions.csv"
EVENTS = "events.csv"
RAW_DIR = "raw"
DISTRIBUTION = "progressbench"
#: A requirement's project name, before any extras, version or marker.
_PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


def current_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def machine_info() -> MachineInfo:
    return MachineInfo(
        node=platform.node(),
        system=platform.system(),
        release=platform.release(),
        machine=platform.machine(),
        python=platform.python_version(),
        cpus=os.cpu_count(),
    )


def dependencies(requires: Sequence[str]) -> list[str]:
    """Project names of the runtime requirements (extras such as ``test`` left out), in order.

    Deriving the list from the distribution means a transport that brings a
    library (it must declare it in ``pyproject.toml`` to be installed at all)
    has that library's version recorded without another edit.
    """
    names: list[str] = []
    for requirement in requires:
        marker = requirement.partition(";")[2]
        match = _PROJECT.match(requirement.strip())
        if match is None or "extra" in marker:
            continue
        names.append(match.group(0))
    return list(dict.fromkeys(names))


def versions() -> dict[str, str | None]:
    """Installed version of each dependency of the distribution (None: not installed)."""
    try:
        requires = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return {}
    found: dict[str, str | None] = {}
    for name in dependencies(requires):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def provenance() -> Provenance:
    """What this run's results say about where and with what they were made."""
    from progressbench import __version__

    return Provenance(
        progressbench=__version__,
        created_at=datetime.now(UTC).isoformat(),
        commit=current_commit(),
        machine=machine_info(),
        versions=versions(),
    )


#: A text cell starting with one of these is read as a formula by Excel, Calc and Sheets (OWASP,
#: "CSV Injection", owasp.org/www-community/attacks/CSV_Injection; ASVS 5.0 V1.2.10 adds NUL;
#: read 2026-11-30). Such a cell gets a leading ``'``, which spreadsheets take as "this is text".
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\0")


def neutralise_cell(value: object) -> object:
    """A CSV cell that no spreadsheet will evaluate: text starting like a formula gets a ``'``.

    Numbers are left alone (a negative number is data, not a formula).
    """
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _neutralised(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.map(neutralise_cell) if len(frame) else frame


def write_tables(out: Path, sessions: Sequence[SessionRow], events: Sequence[EventRow]) -> None:
    session_frame = pd.DataFrame([s.as_csv() for s in sessions], columns=_columns(SessionRow))
    event_frame = pd.DataFrame([asdict(e) for e in events], columns=_columns(EventRow))
    _neutralised(session_frame).to_csv(out / SESSIONS, index=False)
    _neutralised(event_frame).to_csv(out / EVENTS, index=False)


def _columns(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def write_summary(out: Path, summary: Summary) -> Path:
    path = out / SUMMARY
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(summary.to_json())
    tmp.replace(path)
    return path


def load_summary(folder: Path) -> Summary:
    """A results folder's (or a file's) summary, validated; ResultsError otherwise."""
    path = folder / SUMMARY if folder.is_dir() else folder
    if not path.exists():
        raise ResultsError(f"{path}: no summary.json here (is this a results folder?)")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: unreadable summary ({exc})") from None
    return parse_summary(text, str(path))


def _load_table(folder: Path, name: str, row: type, what: str) -> pd.DataFrame:
    """One CSV table of a results folder; an empty table with its columns when it is absent."""
    path = folder / name
    if path.exists():
        try:
            return pd.read_csv(path)
        except (ValueError, OSError, pd.errors.ParserError) as exc:  # binary, empty, torn
            raise ResultsError(
                f"{path}: unreadable {what} table ({str(exc).splitlines()[0][:160]})"
            ) from None
    return pd.DataFrame(columns=_columns(row))


def load_events(folder: Path) -> pd.DataFrame:
    """``events.csv`` of a results folder; an empty table with its columns when it is absent."""
    return _load_table(folder, EVENTS, EventRow, "events")


def load_sessions(folder: Path) -> pd.DataFrame:
    """``sessions.csv`` of a results folder; an empty table with its columns when it is absent."""
    return _load_table(folder, SESSIONS, SessionRow, "sessions")


def sample_records(folder: Path, per_cell: int = 40) -> dict[tuple[str, str], list[SessionRecord]]:
    """Up to ``per_cell`` session records of each cell (the first lines of its raw file).

    Enough for a report's timelines without reading every observation of a large run;
    unreadable lines are skipped (a raw file is evidence, not input the report depends on).
    """
    sampled: dict[tuple[str, str], list[SessionRecord]] = {}
    for path in sorted((folder / RAW_DIR).glob("*.jsonl")):
        try:
            with path.open(encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    try:
                        record = SessionRecord.model_validate_json(line)
                    except ValueError:
                        continue
                    cell = sampled.setdefault((record.transport, record.profile), [])
                    if len(cell) >= per_cell:
                        break
                    cell.append(record)
        except OSError:
            continue
    return sampled


def read_records(path: Path) -> list[SessionRecord]:
    """Session records from a cell's JSONL file; a torn last line is skipped, not fatal."""
    records: list[SessionRecord] = []
    if not path.exists():
        return records
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            records.append(SessionRecord.model_validate_json(line))
        except ValueError:
            continue
    return records
