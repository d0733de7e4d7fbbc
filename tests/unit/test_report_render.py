"""report.md and report.html: verdict, then cost, then details; the same words in both; small pictures."""

from __future__ import annotations

import base64
import html
import re

import pandas as pd
from progressbench.reports.figures import stalls
from progressbench.reports.render import html_report, markdown
from progressbench.reports.sections import verdict_blocks

from progressbench.core.events import Observation, SessionRecord
from tests.unit.summaries import make_cell
from tests.unit.test_summary import summary

S = 1_000_000_000  # ns in a second
T0 = 1_800_000_000 * S


def obs(kind: str, at_s: float, seq: int | None = None, job: str | None = "job-a") -> Observation:
    return Observation(
        type=kind,
        wall_ns=T0 + int(at_s * S),
        mono_ns=int(at_s * S),
        job_id=job,
        seq=seq,
        kind="step" if kind == "progress" else None,
        path="live" if kind == "progress" else None,
    )


def naive_record(session: str) -> SessionRecord:
    """A naive stream cut at 2 s: the phone re-POSTs and sees step 1 again (a regression)."""
    return SessionRecord(
        session_id=session,
        transport="sse-naive",
        profile="handoff",
        owner="phone-0",
        user_index=0,
        job_index=0,
        job_id="job-a",
        started_wall_ns=T0,
        ended_wall_ns=T0 + 6 * S,
        started_mono_ns=0,
        ended_mono_ns=6 * S,
        outcome="terminal",
        stall_threshold_s=0.5,
        time_scale=0.05,
        observations=[
            obs("submitted", 0.0),
            obs("progress", 0.5, 1),
            obs("progress", 1.0, 2),
            obs("disconnected", 2.0),
            obs("reconnected", 2.2),
            obs("resubmitted", 2.2),
            obs("progress", 2.5, 1),
            obs("progress", 4.0, 2),
            obs("progress", 5.0, 3),
        ],
    )


COST = {
    "usd_per_1k_jobs": 0.5,
    "breakdown": {"api.vcpu": 0.2, "worker.vcpu": 0.3},
    "prices_as_of": "2026-11",
    "billing_assumptions": ["api: billed as cloud-run-request-based (x)"],
    "jobs_per_hour": 150.0,
}
WINDOWS = [{"cell": 0, "kind": "down", "start_s": 2.0, "duration_s": 0.2, "start_wall_ns": T0 + 2 * S}]
CELLS = [
    make_cell(
        "sse",
        "clean",
        sessions=12,
        jobs=12,
        terminal_ratio=1.0,
        time_to_result_ratio={"p50": 1.1, "p95": 1.2},
        delivery_paths={"live": 120},
        cost=COST,
    ),
    make_cell(
        "sse-naive",
        "handoff",
        sessions=12,
        jobs=12,
        terminal_ratio=0.5,
        progress_regressions=6,
        duplicate_executions=6,
        time_to_result_ratio={"p50": 2.0, "p95": 2.4},
        fault_windows=WINDOWS,
        delivery_paths={"live": 100},
    ),
]
SESSIONS = pd.DataFrame(
    [
        {
            "transport": c.transport,
            "profile": c.profile,
            "time_to_result_s": 100.0 + i * (3 if c.fault_windows else 1),
            "time_to_result_ratio": 1.0 + i / 10,
            "resume_ms": f"{1000 + 100 * i};{2000 + 100 * i}" if c.fault_windows else float("nan"),
        }
        for c in CELLS
        for i in range(12)
    ]
)
EVENTS = pd.DataFrame(
    [
        {
            "session_id": "s1",
            "transport": "sse-naive",
            "profile": "handoff",
            "committed_wall_ns": T0 + int(t * S),
            "latency_ms": 40.0 + t,
            "duplicate": False,
        }
        for t in (0.4, 0.9, 2.4, 2.6, 3.9, 4.9)
    ]
)


def test_the_report_opens_with_the_verdict_then_cost_then_details() -> None:
    """Headings come in that order in both files, and both carry the same verdict words."""
    result = summary(cells=CELLS, config={"users": 12, "timing": {"time_scale": 0.05}})
    text = markdown(result, SESSIONS, EVENTS)
    page = html_report(result, EVENTS, SESSIONS, {("sse-naive", "handoff"): [naive_record("s1")]})
    for doc in (text, page):
        order = [doc.index(h) for h in ("Verdict: which pattern", "Cost per 1,000 jobs", "Details")]
        assert order == sorted(order), order
    for _profile, line, _rows, notes in verdict_blocks(CELLS, SESSIONS):
        assert line in text and html.escape(line) in page
        for note in notes:
            assert html.escape(note) in page and note.replace("_", "\\_") in text
    assert "6 of 12 users saw progress go backwards" in text


def test_every_ratio_and_percentile_carries_an_interval() -> None:
    """The intervals table shows Wilson brackets for shares and bootstrap brackets for percentiles."""
    text = markdown(summary(cells=CELLS), SESSIONS, EVENTS)
    row = next(line for line in text.splitlines() if line.startswith("| sse-naive | handoff | 12 |"))
    assert "| 0.50 (0.25–0.75) |" in row  # 6 of 12 saw the result, Wilson
    resume = re.fullmatch(r"([\d.]+) \(([\d.]+)–([\d.]+)\)", row.split(" | ")[9])  # resume p50 (real s)
    assert resume is not None, row
    point, low, high = map(float, resume.groups())
    assert low < point < high  # sessions resampled: a real interval


def test_pictures_are_embedded_labelled_and_small() -> None:
    """Timelines, distributions and paths are drawn; each PNG stays under 60 kB."""
    page = html_report(
        summary(cells=CELLS), EVENTS, SESSIONS, {("sse-naive", "handoff"): [naive_record("s1")]}
    )
    images = dict(re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', page))
    for alt in (
        "session timelines",
        "time to result per transport and profile",
        "resume time per transport and profile",
        "delivery paths per transport",
    ):
        assert alt in images, sorted(images)
    assert all(len(base64.b64decode(data)) < 60_000 for data in images.values())


def test_a_stall_is_committed_work_behind_a_frozen_screen() -> None:
    """After the re-POST, steps 1 and 2 shown again change nothing: frozen from 2.4 s until step 3."""
    record = naive_record("s1")
    spans = stalls(record, [T0 + int(t * S) for t in (0.4, 0.9, 2.4, 2.6)])
    assert spans == [(T0 + int(2.4 * S), T0 + 5 * S)]
    assert stalls(record, [T0 + int(0.4 * S)]) == []  # shown 0.1 s later: no stall


def test_text_where_numbers_belong_is_skipped_not_fatal() -> None:
    """A hand-edited sessions.csv/events.csv (formula-neutralised or garbage cells) still renders."""
    sessions = SESSIONS.astype(object)
    sessions.loc[0, "resume_ms"] = "'=1+2;abc"
    sessions.loc[1, "time_to_result_s"] = "soon"
    events = EVENTS.astype(object)
    events.loc[0, "committed_wall_ns"] = "@SUM(A1)"
    result = summary(cells=CELLS)
    assert "Verdict" in markdown(result, sessions, events)
    assert "Verdict" in html_report(
        result, events, sessions, {("sse-naive", "handoff"): [naive_record("s1")]}
    )
