"""`progressbench` as a user runs it: a real run, its files, the gate, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from tests.helpers import run_process

RUN = [sys.executable, "-m", "progressbench"]


def cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``python -m progressbench ARGS`` as a user runs it (``timeout`` scaled by UNIT)."""
    return run_process([*RUN, *args], timeout=timeout)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Path:
    """One real run, on the module's database, that several tests read.

    ``polling:log`` (the cursor poller) receives every committed event, so the files can be checked
    event for event; the state poller coalesces steps by design.
    """
    out = tmp_path_factory.mktemp("run")
    done = cli(
        "run",
        "--transports",
        "polling:log",
        "--profiles",
        "clean",
        "--users",
        "20",
        "--jobs-per-user",
        "2",
        "--time-scale",
        "0.05",
        "--out",
        str(out),
        "--database-url",
        module_database_url,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_run_writes_the_results_contract(run_dir: Path) -> None:
    """summary.json, sessions.csv, events.csv, report.md and report.html, per RESULTS.md."""
    for name in ("summary.json", "sessions.csv", "events.csv", "report.md", "report.html"):
        assert (run_dir / name).stat().st_size > 0, name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["schema_version"] == 2 and summary["complete"] is True
    [cell] = summary["cells"]
    assert (cell["transport"], cell["profile"], cell["sessions"], cell["jobs"]) == (
        "polling:log",
        "clean",
        40,
        40,
    )
    assert cell["delivery_ratio"] == 1.0 and cell["terminal_ratio"] == 1.0
    assert cell["foreign_events"] == 0 and cell["duplicates"] == 0 and cell["lost"] == 0
    assert cell["meters"]["api.pb_requests_total"] > 40
    assert cell["cost_usd_per_1k_jobs"] > 0
    assert "data:image/png;base64," in (run_dir / "report.html").read_text()


def test_events_csv_matches_job_events(run_dir: Path, module_database_url: str) -> None:
    """What the phones recorded is exactly what the store committed, event for event."""
    events = pd.read_csv(run_dir / "events.csv")
    seen = sorted(zip(events["job_id"], events["seq"], strict=True))
    with psycopg.connect(module_database_url) as conn:
        jobs = list(events["job_id"].unique())
        stored = sorted(
            (str(j), s)
            for j, s in conn.execute(
                "SELECT job_id, seq FROM job_events WHERE job_id::text = ANY(%s)", (jobs,)
            )
        )
        committed = {
            (str(j), s): ts
            for j, s, ts in conn.execute(
                "SELECT job_id, seq, committed_at FROM job_events WHERE job_id::text = ANY(%s)", (jobs,)
            )
        }
    assert seen == stored and len(seen) == 40 * 16  # 15 steps (the model call among them) + terminal
    sample = events.iloc[0]
    ts = committed[(sample["job_id"], int(sample["seq"]))]
    assert abs(int(ts.timestamp() * 1e6) * 1000 - int(sample["committed_wall_ns"])) < 2000


def test_check_passes_good_results_and_fails_regressions(run_dir: Path, tmp_path: Path) -> None:
    """The gate exits 0 on the run, 1 when a cell shows a foreign event."""
    assert cli("check", str(run_dir)).returncode == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["cells"][0]["foreign_events"] = 2
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "summary.json").write_text(json.dumps(summary))
    done = cli("check", str(bad), "--baseline", str(run_dir / "summary.json"))
    assert done.returncode == 1 and "FAIL" in done.stdout


def test_report_rerenders_a_results_folder(run_dir: Path) -> None:
    """`report` reads summary.json and events.csv back through the typed summary and redraws both files."""
    (run_dir / "report.md").unlink()
    done = cli("report", str(run_dir), timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| polling:log | clean |" in (run_dir / "report.md").read_text()


def test_check_refuses_a_malformed_summary_in_one_line(run_dir: Path, tmp_path: Path) -> None:
    """A wrong-typed field is named on one line with exit 1, never a traceback or a silent pass."""
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["cells"][0]["foreign_events"] = "none"
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    done = cli("check", str(tmp_path), timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    [line] = [text for text in done.stderr.splitlines() if text.strip()]
    assert "cells.0.foreign_events" in line


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["run", "--transports", "carrier-pigeon", "--out", "{tmp}"], 2, "unknown transport"),
        (["run", "--profiles", "earthquake", "--out", "{tmp}"], 2, "unknown profile"),
        (["run", "--users", "0", "--out", "{tmp}"], 2, "users"),
        (
            [
                "run",
                "--transports",
                "polling",
                "--database-url",
                "postgresql://nobody@127.0.0.1:1/x",
                "--out",
                "{tmp}",
            ],
            1,
            "cannot connect to the database",
        ),
        (["run", "--transports", "polling", "--database-url", "not a url", "--out", "{tmp}"], 1, "database"),
        (["check", "{tmp}/missing"], 1, "no summary.json"),
        (["run", "--time-scale", "fast"], 2, "time-scale"),
        (["locust-worker", "--plan", "{tmp}/plan.json"], 2, "cannot read the cell plan"),
    ],
)
def test_bad_input_is_one_clear_line_without_traceback(
    args: list[str], code: int, message: str, tmp_path: Path
) -> None:
    """Each mistake is a clear message and the documented exit code, never a traceback."""
    done = cli(*[a.replace("{tmp}", str(tmp_path)) for a in args], timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == code, output
    assert message in output
    assert "Traceback" not in output


def test_distributed_locust_with_two_workers(tmp_path: Path, database_url: str) -> None:
    """Locust master + 2 workers: every phone's sessions reach the master's sink."""
    done = cli(
        "run",
        "--transports",
        "polling:log",
        "--profiles",
        "clean",
        "--users",
        "6",
        "--jobs-per-user",
        "1",
        "--time-scale",
        "0.05",
        "--locust-workers",
        "2",
        "--out",
        str(tmp_path),
        "--database-url",
        database_url,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [cell] = json.loads((tmp_path / "summary.json").read_text())["cells"]
    assert cell["sessions"] == 6 and cell["delivery_ratio"] == 1.0
    sessions = pd.read_csv(tmp_path / "sessions.csv")
    assert len(set(sessions["owner"])) == 6
    # both workers ran phones (a worker numbers its phones from worker_index * 100,000)
    assert {int(i) // 100_000 for i in sessions["user_index"]} == {0, 1}


def test_parallel_run_merges_its_parts_into_one_results_folder(tmp_path: Path) -> None:
    """`run --parallel 2`: two parts, each on its own stack, merged into one folder that `check` reads."""
    out = tmp_path / "results"
    done = cli(
        "run",
        "--parallel",
        "2",
        "--transports",
        "polling:log,sse",
        "--profiles",
        "clean",
        "--users",
        "3",
        "--jobs-per-user",
        "1",
        "--time-scale",
        "0.05",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "part 1 (polling:log): done" in done.stdout and "part 2 (sse): done" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True and summary["interrupted"] is False
    assert summary["config"]["parallel"] == 2 and summary["config"]["transports"] == ["polling:log", "sse"]
    assert [(c["transport"], c["profile"], c["sessions"]) for c in summary["cells"]] == [
        ("polling:log", "clean", 3),
        ("sse", "clean", 3),
    ]
    sessions = pd.read_csv(out / "sessions.csv")
    assert sorted(sessions["transport"]) == ["polling:log"] * 3 + ["sse"] * 3
    assert set(pd.read_csv(out / "events.csv")["job_id"]) == set(sessions["job_id"])
    for part in ("1", "2"):  # each part ran on a stack of its own
        assert (out / "parts" / part / "logs" / "postgres.log").exists()
    assert "polling:log" in (out / "report.md").read_text()
    check = cli("check", str(out), timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
