"""Comparing two runs: a move is called better or worse only outside the noise, and says why."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from progressbench.reports.compare import RunData, compare_runs, html_report, markdown
from progressbench.reports.significance import bootstrap_percentile, significant, wilson

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


def test_wilson_matches_the_published_interval() -> None:
    """0 of 10 gives [0, 0.278] and 20 of 20 gives [0.839, 1] (Brown, Cai & DasGupta's Wilson interval)."""
    none = wilson(0, 10)
    full = wilson(20, 20)
    assert none is not None and full is not None
    assert (none.low, round(none.high, 3)) == (0.0, 0.278)
    assert (round(full.low, 3), full.high) == (0.839, 1.0)
    assert wilson(0, 0) is None


def test_the_bootstrap_resamples_sessions_so_one_bad_session_is_not_many_events() -> None:
    """Forty events from one slow session widen the interval as one session would, not as forty draws."""
    clustered = [[10.0] * 40 for _ in range(9)] + [[500.0] * 40]
    independent = [[v] for c in clustered for v in c]
    by_session = bootstrap_percentile(clustered, 95)
    by_event = bootstrap_percentile(independent, 95)
    assert by_session is not None and by_event is not None
    assert by_session.high - by_session.low > by_event.high - by_event.low
    assert bootstrap_percentile(clustered, 95) == by_session  # seeded: the same report twice
    assert by_session.low <= by_session.value <= by_session.high
    assert bootstrap_percentile(clustered[:9], 95) is None  # nine sessions: too few to say anything


def test_non_overlapping_intervals_are_significant_and_overlapping_ones_are_not() -> None:
    """40/40 against 20/40 is outside the noise; 40/40 against 39/40 is not."""
    assert significant(wilson(40, 40), wilson(20, 40))
    assert not significant(wilson(40, 40), wilson(39, 40))
    assert not significant(None, wilson(20, 40))


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
    assert "sse × handoff: terminal ratio 1.000 → 0.500 (−0.500), worse; 95 % intervals" in text


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
