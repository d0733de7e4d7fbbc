"""Comparing two runs: a move is called better or worse only outside the noise, and says why."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from progressbench.reports.compare import RunData, compare_runs, html_report, markdown

from progressbench.core.summary import CellSummary, Summary
from tests.unit.summaries import make_cell


def _summary(cells: list[CellSummary], node: str = "n", scale: float = 0.05) -> Summary:
    return Summary.model_validate(
        {
            "schema_version": 2,
            "progressbench": "0",
            "created_at": "now",
            "commit": "abc",
            "machine": {
                "node": node,
                "system": "s",
                "release": "r",
                "machine": "m",
                "python": "3",
                "cpus": 2,
            },
            "versions": {},
            "config": {"timing": {"time_scale": scale}},
            "profiles": {},
            "run_id": "r",
            "complete": True,
            "interrupted": False,
            "timing": {"started_at": 0.0, "seconds": 1.0},
            "cells": [c.model_dump(by_alias=True) for c in cells],
        }
    )


def _sessions(transport: str, profile: str, n: int, **columns: list[object]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "session_id": [f"{transport}-{profile}-{i}" for i in range(n)],
            "transport": transport,
            "profile": profile,
            "events_expected": 16,
            "events_received": 16,
            "lost": 0,
            "duplicates": 0,
            "time_to_result_s": 60.0,
            "resume_ms": "",
        }
    )
    for name, values in columns.items():
        frame[name] = values
    return frame


def _events(sessions: pd.DataFrame, latency: float, spread: float = 10.0) -> pd.DataFrame:
    """16 events per session; each session has its own level (sessions differ, as on a real network)."""
    rng = np.random.default_rng(7)
    rows = [
        {
            "session_id": sid,
            "transport": t,
            "profile": p,
            "latency_ms": level + spread * rng.random(),
            "duplicate": False,
        }
        for sid, t, p in zip(sessions["session_id"], sessions["transport"], sessions["profile"], strict=True)
        for level in [latency * (0.6 + 0.8 * rng.random())]
        for _ in range(16)
    ]
    return pd.DataFrame(rows)


def _run(
    cells: list[CellSummary], sessions: pd.DataFrame, events: pd.DataFrame, label: str, **kw: object
) -> RunData:
    return RunData(_summary(cells, **kw), sessions, events, label)  # type: ignore[arg-type]


def test_a_halved_terminal_ratio_is_a_regression_and_one_session_is_noise() -> None:
    """sse × handoff drops from 40/40 to 20/40 (regressed); polling × clean loses one session (unchanged)."""
    base_cells = [
        make_cell("sse", "handoff", sessions=40, terminal_ratio=1.0),
        make_cell("polling", "clean", sessions=40, terminal_ratio=1.0),
    ]
    new_cells = [
        make_cell("sse", "handoff", sessions=40, terminal_ratio=0.5),
        make_cell("polling", "clean", sessions=40, terminal_ratio=0.975),
    ]
    frames = pd.concat([_sessions("sse", "handoff", 40), _sessions("polling", "clean", 40)])
    comparison = compare_runs(
        _run(base_cells, frames, _events(frames, 100), "base"),
        _run(new_cells, frames, _events(frames, 100), "new"),
    )
    status = {c.label: c.status for c in comparison.cells}
    assert status == {"sse × handoff": "regressed", "polling × clean": "unchanged"}
    [move] = [m for m in comparison.cells[0].moves if m.metric.name == "terminal ratio"]
    assert (move.base, move.new, move.direction) == (1.0, 0.5, "worse")
    text = markdown(comparison)
    assert "1 regressed, 0 mixed, 0 improved, 1 unchanged" in text
    assert (
        "sse × handoff: terminal ratio 1.000 → 0.500 (−0.500), worse; 95 % interval of the difference \\[−"
        in text
    )
    assert move.difference is not None and move.difference[1] < 0


def test_overlapping_intervals_can_still_be_a_significant_difference() -> None:
    """Newcombe's example, 48/80 → 56/70: the runs' Wilson intervals overlap, the difference's excludes 0."""
    base = [make_cell("sse", "clean", sessions=80, terminal_ratio=48 / 80)]
    new = [make_cell("sse", "clean", sessions=70, terminal_ratio=56 / 70)]
    empty = pd.DataFrame()
    [move] = [
        m
        for m in compare_runs(_run(base, empty, empty, "b"), _run(new, empty, empty, "n")).cells[0].moves
        if m.metric.name == "terminal ratio"
    ]
    assert move.base_interval is not None and move.new_interval is not None
    assert move.new_interval[0] < move.base_interval[1]  # the two runs' intervals overlap
    assert move.difference is not None and move.difference[0] > 0
    assert move.direction == "better"


def test_latency_that_tripled_is_worse_and_a_small_shift_is_within_noise() -> None:
    """Latency percentiles come with session-bootstrap intervals from events.csv."""
    cells = [make_cell("sse", "clean", sessions=30)]
    frames = _sessions("sse", "clean", 30)
    base = _run(cells, frames, _events(frames, 100, spread=50), "base")
    tripled = compare_runs(base, _run(cells, frames, _events(frames, 300, spread=50), "new"))
    nudged = compare_runs(base, _run(cells, frames, _events(frames, 102, spread=50), "new"))
    by_name = {m.metric.name: m for m in tripled.cells[0].moves}
    assert by_name["latency p50"].direction == "worse" and by_name["latency p95"].direction == "worse"
    assert by_name["latency p50"].base_interval is not None
    assert {m.metric.name: m.direction for m in nudged.cells[0].moves}["latency p50"] == "within noise"


def test_a_bootstrap_of_fewer_than_ten_sessions_is_not_tested() -> None:
    """Nine sessions whose latency tripled: too few to resample, so no verdict; a share still gets one."""
    frames = _sessions("sse", "clean", 9)
    base = _run(
        [make_cell("sse", "clean", sessions=9, terminal_ratio=1.0)], frames, _events(frames, 100), "b"
    )
    new = _run([make_cell("sse", "clean", sessions=9, terminal_ratio=0.0)], frames, _events(frames, 300), "n")
    by_name = {m.metric.name: m for m in compare_runs(base, new).cells[0].moves}
    assert by_name["latency p50"].direction == "not tested" and "fewer than 10" in by_name["latency p50"].note
    assert by_name["terminal ratio"].direction == "worse"


def test_durations_of_a_saturated_cell_are_not_tested() -> None:
    """A run that measured the machine's capacity cannot show a latency regression; its ratios still count."""
    frames = _sessions("sse", "clean", 30)
    base = _run(
        [make_cell("sse", "clean", sessions=30, terminal_ratio=1.0)], frames, _events(frames, 100), "b"
    )
    busy = make_cell("sse", "clean", sessions=30, terminal_ratio=0.5, saturated=True)
    comparison = compare_runs(base, _run([busy], frames, _events(frames, 300), "n"))
    by_name = {m.metric.name: m for m in comparison.cells[0].moves}
    assert by_name["latency p50"].direction == "not tested" and "saturated" in by_name["latency p50"].note
    assert by_name["terminal ratio"].direction == "worse"


def test_without_raw_rows_a_change_is_shown_but_not_tested() -> None:
    """A bare summary.json as the base: the values and the change appear, no verdict is invented."""
    empty = pd.DataFrame()
    base = _run(
        [make_cell("sse", "clean", sessions=30, latency_ms={"p50": 100, "p95": 200, "p99": 300})],
        empty,
        empty,
        "b",
    )
    new = _run(
        [make_cell("sse", "clean", sessions=30, latency_ms={"p50": 900, "p95": 999, "p99": 999})],
        empty,
        empty,
        "n",
    )
    comparison = compare_runs(base, new)
    by_name = {m.metric.name: m for m in comparison.cells[0].moves}
    assert by_name["latency p50"].direction == "not tested" and by_name["latency p50"].delta == 800
    assert comparison.cells[0].status == "unchanged"
    assert any("no sessions.csv" in w for w in comparison.warnings)


def test_a_foreign_event_is_a_regression_whatever_the_sample() -> None:
    """foreign_events must be 0: one is worse even in a tiny cell, which is marked as a small sample."""
    empty = pd.DataFrame()
    base = _run([make_cell("relay", "clean", sessions=3)], empty, empty, "b")
    new = _run([make_cell("relay", "clean", sessions=3, foreign_events=1)], empty, empty, "n")
    [cell] = compare_runs(base, new).cells
    assert cell.status == "regressed" and cell.small_sample
    assert [m.note for m in cell.moves if m.direction == "worse"] == ["must be 0: any is a regression"]


def test_cells_of_one_run_only_and_other_machines_are_said() -> None:
    """A cell only one run measured is listed as such; different machines and scales are warned about."""
    empty = pd.DataFrame()
    base = _run([make_cell("sse", "clean", sessions=30)], empty, empty, "b", node="laptop", scale=0.05)
    new = _run([make_cell("polling", "clean", sessions=30)], empty, empty, "n", node="ci", scale=0.1)
    comparison = compare_runs(base, new)
    assert {c.label: c.status for c in comparison.cells} == {
        "polling × clean": "only in new",
        "sse × clean": "only in base",
    }
    assert any("different machines" in w for w in comparison.warnings)
    assert any("time scales differ" in w for w in comparison.warnings)


@pytest.mark.parametrize("name", ["<script>x</script>", "a|b\n| c"])
def test_names_from_results_files_cannot_inject_markup(name: str) -> None:
    """A transport name from a summary.json is escaped in HTML and cannot add Markdown rows."""
    empty = pd.DataFrame()
    base = _run([make_cell(name, "clean", sessions=30)], empty, empty, "b")
    new = _run([make_cell(name, "clean", sessions=30, foreign_events=2)], empty, empty, "n")
    comparison = compare_runs(base, new)
    assert "<script>" not in html_report(comparison)
    text = markdown(comparison)
    assert "\n| c" not in text and "<script>" not in text
