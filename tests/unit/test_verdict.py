"""A cell's verdict in coarse classes (what the scale calibration compares)."""

from __future__ import annotations

from progressbench.core.ledger import summarize
from progressbench.core.verdict import Verdict, verdict
from tests.unit.summaries import make_cell

OUTCOMES = {"replayed-complete": 0, "gap-flagged": 0, "silent-gap": 0, "duplicate-replay": 0, "restarted": 0}


def test_a_clean_cell_is_complete_all_none() -> None:
    cell = make_cell("sse", "clean", delivery_ratio=1.0, terminal_ratio=1.0)
    assert verdict(cell) == Verdict("complete", "all", "none")


def test_delivery_tolerates_one_event_in_fifty() -> None:
    assert verdict(make_cell("sse", "x", delivery_ratio=0.985, terminal_ratio=1.0)).delivery == "complete"
    assert verdict(make_cell("sse", "x", delivery_ratio=0.97, terminal_ratio=1.0)).delivery == "lossy"


def test_terminal_classes_and_empty_cells() -> None:
    assert verdict(make_cell("sse", "x", delivery_ratio=0.5, terminal_ratio=0.5)).terminal == "some"
    assert verdict(make_cell("sse", "x", delivery_ratio=0.5, terminal_ratio=0.0)).terminal == "none"
    assert verdict(make_cell("sse", "x")) == Verdict("n/a", "n/a", "none")


def test_the_most_frequent_resume_outcome_worst_on_a_tie() -> None:
    cell = make_cell(
        "sse-naive", "handoff", resume_outcomes={**OUTCOMES, "restarted": 3, "replayed-complete": 1}
    )
    assert verdict(cell).resume == "restarted"
    tie = make_cell("sse", "handoff", resume_outcomes={**OUTCOMES, "silent-gap": 2, "replayed-complete": 2})
    assert verdict(tie).resume == "silent-gap"


def test_the_exposed_sessions_decide_when_there_are_any() -> None:
    exposed = summarize("sse", "handoff", [], [], with_exposed=False).model_dump(by_alias=True)
    exposed.update(delivery_ratio=0.5, terminal_ratio=1.0)
    cell = make_cell(
        "sse", "handoff", delivery_ratio=0.9, terminal_ratio=1.0, exposed_sessions=1, exposed=exposed
    )
    assert verdict(cell).delivery == "lossy"
    unexposed = make_cell("sse", "handoff", delivery_ratio=1.0, terminal_ratio=1.0, exposed=exposed)
    assert verdict(unexposed).delivery == "complete"  # no exposed session: the whole cell decides
