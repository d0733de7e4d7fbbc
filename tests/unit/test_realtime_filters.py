"""Realtime filter strings: parsing, and evaluation against decoded WAL records."""

from __future__ import annotations

import pytest
from progressbench.transports.realtime.filters import Condition, FilterError, matches, parse_filter

JOB = "3f1c2a9e-6b0d-4a51-9d7e-0c2b8e1f4a77"
RECORD = {"job_id": JOB, "seq": 4, "kind": "step", "done": False, "note": None}


def test_parse_single_and_comma_and_conditions() -> None:
    """``col=op.value`` conditions joined by commas; in-lists keep commas inside parentheses."""
    assert parse_filter(f"job_id=eq.{JOB}") == (Condition("job_id", "eq", JOB),)
    assert parse_filter("seq=gt.3,kind=in.(step,done)") == (
        Condition("seq", "gt", "3"),
        Condition("kind", "in", ("step", "done")),
    )
    assert parse_filter("kind=not.in.(failed)") == (Condition("kind", "in", ("failed",), negate=True),)
    assert parse_filter(None) == () and parse_filter("") == ()


@pytest.mark.parametrize("text", ["job_id", "job_id=zz.1", "seq=in.1,2", "x=is.maybe", "1col=eq.1"])
def test_parse_rejects_malformed_filters(text: str) -> None:
    """Unknown operators, bad in-lists and bad columns raise FilterError (a system error upstream)."""
    with pytest.raises(FilterError):
        parse_filter(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"job_id=eq.{JOB}", True),
        (f"job_id=eq.{JOB.upper()}", True),
        ("job_id=eq.00000000-0000-0000-0000-000000000000", False),
        ("seq=gt.3", True),
        ("seq=gte.5", False),
        ("seq=lt.10,kind=eq.step", True),
        ("seq=in.(1,2,4)", True),
        ("kind=neq.step", False),
        ("kind=not.in.(done,failed)", True),
        ("done=is.false", True),
        ("note=is.null", True),
        ("kind=like.st%", True),
        ("kind=ilike.STE_", True),
        ("missing=eq.1", False),
    ],
)
def test_matches_casts_the_filter_value_to_the_record_type(text: str, expected: bool) -> None:
    """Numbers compare as numbers, uuids case-insensitively; a missing column never matches."""
    assert matches(parse_filter(text), RECORD) is expected
