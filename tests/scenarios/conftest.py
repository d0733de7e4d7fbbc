"""Scenario tests: whole runs under fault profiles, through the CLI.

Each run gets a database cloned from the session's template (``database_url``)
instead of starting its own embedded server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_process

PROGRESSBENCH = (sys.executable, "-m", "progressbench")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/scenarios" in str(item.fspath):
            item.add_marker(pytest.mark.scenario)


def run_cli(out: Path, database_url: str, *args: str, timeout: float = 600) -> dict[str, Any]:
    """`progressbench run --database-url URL ... --out OUT`; returns summary.json, asserting exit 0."""
    run = ["run", "--out", str(out), "--database-url", database_url, *args]
    done = run_process([*PROGRESSBENCH, *run], timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return summary


def check(out: Path) -> subprocess.CompletedProcess[str]:
    """`progressbench check OUT` with the built-in rules."""
    return run_process([*PROGRESSBENCH, "check", str(out)], timeout=60)


def cell(summary: dict[str, Any], transport: str, profile: str) -> dict[str, Any]:
    """The summary's cell for one transport under one profile."""
    found: dict[str, Any] = next(
        c for c in summary["cells"] if c["transport"] == transport and c["profile"] == profile
    )
    return found
