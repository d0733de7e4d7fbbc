"""Summary cells for tests: a valid cell of zeros with the fields a test cares about changed."""

from __future__ import annotations

from typing import Any

from progressbench.core.ledger import summarize
from progressbench.core.summary import CellSummary


def make_cell(transport: str, profile: str, **changes: Any) -> CellSummary:
    """What the ledger makes of a cell without sessions, completed as the runner would, then ``changes``.

    Values go through validation (RESULTS.md names, nested fields as dicts), so
    a test cannot build a cell that a real summary.json could not hold.
    """
    base = summarize(transport, profile, [], []).model_dump(by_alias=True)
    base.update(cost_breakdown_usd={}, complete=True, seconds=1.0, fault_windows=[], chaos_errors=[])
    base.update(changes)
    return CellSummary.model_validate(base)
