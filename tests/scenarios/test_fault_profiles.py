"""Transports under mobile and server faults, end to end (small default set for CI)."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.scenarios.conftest import cell, check, run_cli

FAST = ("--users", "6", "--jobs-per-user", "1", "--time-scale", "0.05")
#: The phones' patience at 20 minutes, not 5, where a test asserts a pattern's recovery: a loaded
#: CI machine (a replacement worker's start-up is real time, 10-30 s: minutes in compressed time)
#: must not turn slowness into a user giving up.
PATIENT = ("--session-deadline", "1200")


def test_polling_under_tunnel_handoff_sigterm_reports_windows_disconnects_and_resume(
    tmp_path: Path, database_url: str
) -> None:
    """The chaos issue's must-show run: per-cell fault windows, disconnects, resume_ms; no loss.

    ``polling`` reads the job's current state: steps that pass during an outage are coalesced
    (by design), never lost, and every phone learns the final state."""
    summary = run_cli(
        tmp_path,
        database_url,
        "--transports",
        "polling",
        "--profiles",
        "tunnel,handoff,sigterm",
        *FAST,
        *PATIENT,
    )
    tunnel = cell(summary, "polling", "tunnel")
    assert {w["cell"] for w in tunnel["fault_windows"]} == {0, 1}  # two staggered phone cells
    assert all(w["kind"] == "blackhole" for w in tunnel["fault_windows"])
    # each cell's first tunnel runs its full length; a repeat may be cut short when the cell ends
    for phone_cell in (0, 1):
        first = min(
            (w for w in tunnel["fault_windows"] if w["cell"] == phone_cell), key=lambda w: w["start_s"]
        )
        assert first["duration_s"] > 0.5
    handoff = cell(summary, "polling", "handoff")
    assert handoff["disconnects"] > 0 and handoff["resumes"] == handoff["disconnects"]
    assert handoff["resume_ms"]["p50"] is not None
    sigterm = cell(summary, "polling", "sigterm")
    [kill] = sigterm["fault_windows"]
    assert kill["kind"] == "worker sigterm" and kill["cell"] is None
    assert tunnel["coalesced"] > 0  # steps that passed while the tunnel held the polls
    for c in summary["cells"]:
        assert c["lost"] == 0, c["profile"]
        assert c["duplicates"] == 0 and c["foreign_events"] == 0 and c["stuck_jobs"] == 0
        assert c["chaos_errors"] == []
    # A tunnel or handoff that cuts the job-creating POST is an error the person sees: they tap
    # again, and may give up (three failed taps). Every other session learns the final state,
    # each step either received or coalesced into a later poll.
    with (tmp_path / "sessions.csv").open() as f:
        for row in csv.DictReader(f):
            if row["outcome"] != "terminal":
                assert row["error"].startswith("gave up after 3 failed taps"), row
                assert row["findings"] == "submit-failed", row
            else:
                received, coalesced = int(row["events_received"]), int(row["coalesced"] or 0)
                assert received + coalesced == int(row["events_expected"]), row
    assert "Fault windows per cell" in (tmp_path / "report.md").read_text()
    gate = check(tmp_path)
    assert gate.returncode == 0, gate.stdout


def test_screen_sleep_hurts_naive_sse_and_not_resumable_sse(tmp_path: Path, database_url: str) -> None:
    """When the OS reclaims the socket, sse replays everything; sse-naive loses events and redoes work."""
    summary = run_cli(tmp_path, database_url, "--transports", "sse,sse-naive", "--profiles", "sleep", *FAST)
    resumable = cell(summary, "sse", "sleep")
    assert resumable["disconnects"] > 0
    assert resumable["delivery_ratio"] == 1.0 and resumable["duplicates"] == 0
    assert resumable["resume_outcomes"]["replayed-complete"] == resumable["reconnects"] > 0
    naive = cell(summary, "sse-naive", "sleep")
    assert naive["disconnects"] > 0
    assert naive["lost"] > 0 and naive["duplicate_executions"] > 0
    assert naive["resume_outcomes"]["restarted"] > 0  # nothing replayed: the re-POST ran the job again
    gate = check(tmp_path)
    assert gate.returncode == 0, gate.stdout


def test_dispatch_loss_leaves_jobs_stuck_and_the_report_counts_them(
    tmp_path: Path, database_url: str
) -> None:
    """A dispatch outage longer than the API's retries leaves jobs pending: stuck, not hidden."""
    summary = run_cli(
        tmp_path,
        database_url,
        "--transports",
        "polling",
        "--profiles",
        "dispatch-loss",
        "--users",
        "3",
        "--jobs-per-user",
        "1",
        "--time-scale",
        "0.02",
    )
    lost = cell(summary, "polling", "dispatch-loss")
    assert lost["stuck_jobs"] > 0 and lost["terminal_ratio"] < 1.0
    assert lost["fault_windows"][0]["kind"] == "dispatch timeout"
