"""Exact load: ``--users N --jobs-per-user M`` is N×M sessions from exactly phones 0..N-1.

Locust keeps its user count while spawning by replacing users that stopped:
phones whose short jobs finished during the ramp were replaced by new
phones, so a run held more phones than asked for (and, once the sink had
N×M sessions, cut the last ones short). Here the ramp is long and the jobs
short, so many phones finish while others are still being spawned.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.integration.test_cli import cli


def run_exact(out: Path, database_url: str, phones: int, spawn_rate: float) -> None:
    done = cli(
        "run",
        "--transports",
        "polling",
        "--profiles",
        "clean",
        "--users",
        str(phones),
        "--jobs-per-user",
        "2",
        "--spawn-rate",
        str(spawn_rate),
        "--step-seconds",
        "1,1",
        "--time-scale",
        "0.05",
        "--out",
        str(out),
        "--database-url",
        database_url,
        timeout=600,
    )
    assert "Traceback" not in done.stdout + done.stderr
    [cell] = json.loads((out / "summary.json").read_text())["cells"]
    sessions = pd.read_csv(out / "sessions.csv")
    assert cell["sessions"] == 2 * phones == len(sessions)
    assert cell["sessions_planned"] == sum(cell["session_outcomes"].values()) == 2 * phones
    assert sorted(set(sessions["user_index"])) == list(range(phones)), "a phone was replaced by a new one"
    assert (sessions.groupby("user_index")["job_index"].apply(sorted) == pd.Series([[0, 1]] * phones)).all()
    # The saturation verdict saw every process the cell ran on: phones, services, fronts and the
    # bundled chaos proxy every phone's bytes cross (Postgres too when embedded; here it is the
    # tests' shared server, given by --database-url, which the run does not sample).
    sampled = cell["saturation"]
    assert sampled["generator_cpu"] is not None and sampled["machine_cpu"] is not None
    assert {"api", "worker", "front", "chaos"} <= set(sampled["service_cpu"])


def test_phones_finishing_during_the_ramp_are_not_replaced(tmp_path: Path, database_url: str) -> None:
    """12 phones over a 12 s ramp, ~1 s jobs: the first phones are done long before the last start."""
    run_exact(tmp_path, database_url, phones=12, spawn_rate=1)


@pytest.mark.slow
def test_500_phones_give_exactly_1000_sessions(tmp_path: Path, database_url: str) -> None:
    run_exact(tmp_path, database_url, phones=500, spawn_rate=10)
