"""The report's opening verdict: grades, ranking and sentences derived from the numbers."""

from __future__ import annotations

from typing import Any

from progressbench.reports.narrative import cost_line, grade, sentences, standings, summary_line

from progressbench.core.summary import CellSummary
from tests.unit.summaries import make_cell


def cell(transport: str, profile: str, **changes: Any) -> CellSummary:
    base: dict[str, Any] = {
        "sessions": 40,
        "jobs": 40,
        "terminal_ratio": 1.0,
        "time_to_result_ratio": {"p50": 1.1, "p95": 1.3},
    }
    return make_cell(transport, profile, **{**base, **changes})


NAIVE_HANDOFF = cell(
    "sse-naive",
    "handoff",
    terminal_ratio=0.5,
    duplicate_executions=20,
    executions_per_intent={"mean": 1.8, "max": 4},
    progress_regressions=18,
    silent_stalls=5,
    time_to_result_ratio={"p50": 1.98, "p95": 2.5},
)
CELLS = [
    cell("sse", "clean"),
    cell("sse-naive", "clean"),
    cell("sse", "handoff", time_to_result_ratio={"p50": 1.2, "p95": 1.4}),
    NAIVE_HANDOFF,
    cell("polling", "handoff", progress_regressions=0, silent_stalls=2),
]


def test_the_naive_handoff_cell_reads_like_an_engineer_would_write_it() -> None:
    """Counts of whole sessions, 'ran more than once', regressions, and time to result vs clean."""
    said = sentences(NAIVE_HANDOFF, CELLS[1])
    assert "20 of 40 users never learned the result (outcome shown to 50%, 95% CI 35%–65%)" in said
    assert "20 of 40 requests ran more than once, one up to 4 times" in said
    assert "18 of 40 users saw progress go backwards" in said
    assert "time to result ×1.8 of the same pattern without faults (median)" in said
    assert any("silent stall" in s for s in said)


def test_a_clean_cell_says_nothing_and_is_kept_informed() -> None:
    """Nothing notable, no sentence; the grade says so."""
    assert sentences(CELLS[0]) == []
    assert grade(CELLS[0]) == "kept informed"


def test_grades_follow_the_documented_thresholds() -> None:
    """Under 80 % terminal is uninformed; a stall alone is a flaw; no session is no data."""
    assert grade(NAIVE_HANDOFF) == "left users uninformed"
    assert grade(CELLS[4]) == "informed, with flaws"
    assert grade(make_cell("x", "clean")) == "no data"


def test_ranking_is_per_profile_best_first_with_ties_sharing_a_rank() -> None:
    """Handoff: sse (no trouble) over polling (stalls) over sse-naive (half never learned)."""
    ranked = standings(CELLS)
    assert list(ranked) == ["handoff", "clean"]  # faults first, the reference last
    assert [s.transport for s in ranked["handoff"]] == ["sse", "polling", "sse-naive"]
    assert [s.rank for s in ranked["clean"]] == [1, 1]
    naive = ranked["handoff"][2]
    assert naive.terminal == 20 and naive.terminal_ci[0] < 0.5 < naive.terminal_ci[1]
    line = summary_line("handoff", ranked["handoff"])
    assert line == (
        "Under handoff: sse kept every user informed; polling informed users, with flaws; "
        "sse-naive left users without the result."
    )


def test_small_and_saturated_cells_are_caveated() -> None:
    """Five sessions are hints, and a saturated cell measured capacity too."""
    small = cell("relay", "tunnel", sessions=5, jobs=5, terminal_ratio=0.8, saturated=True)
    said = sentences(small)
    assert said[-1] == "only 5 sessions: read these as hints, not rates"
    assert any("saturated" in s for s in said)
    assert standings([small])["tunnel"][0].small


def test_times_to_result_within_the_noise_share_a_rank() -> None:
    """Medians 1.10 and 1.15 from overlapping samples tie; 1.1 against 2.0 does not."""
    a = cell("sse", "clean", time_to_result_ratio={"p50": 1.10, "p95": 1.3})
    b = cell("polling", "clean", time_to_result_ratio={"p50": 1.15, "p95": 1.3})
    c = cell("relay", "clean", time_to_result_ratio={"p50": 2.0, "p95": 2.2})
    samples = {
        ("sse", "clean"): [1.0, 1.1, 1.2, 1.05, 1.15, 1.1, 1.3, 0.95],
        ("polling", "clean"): [1.05, 1.15, 1.25, 1.1, 1.2, 1.15, 1.0, 1.3],
        ("relay", "clean"): [1.9, 2.0, 2.1, 2.05, 1.95, 2.2, 1.85, 2.0],
    }
    assert [s.rank for s in standings([a, b, c], samples)["clean"]] == [1, 1, 3]
    assert [s.rank for s in standings([a, c])["clean"]] == [1, 2]


def test_cost_line_orders_patterns_cheapest_first() -> None:
    """Median over each transport's cells, cheapest first, with the spread as a factor."""
    cells = [
        cell("sse", "clean", cost_usd_per_1k_jobs=0.9),
        cell("sse", "handoff", cost_usd_per_1k_jobs=1.0),
        cell("polling", "clean", cost_usd_per_1k_jobs=0.3),
        cell("relay", "clean"),
    ]
    assert cost_line(cells) == (
        "Cost per 1,000 jobs at this run's load, without free tiers (median over profiles), "
        "cheapest first: polling $0.3, sse $0.95. sse costs ×3.2 polling."
    )
    assert cost_line([cell("relay", "clean")]) is None
