"""Probe 4: a hostile ``like`` filter must not stall the change feed (issue #13).

Before the fix the ``like``/``ilike`` matcher compiled ``%`` to ``.*`` and ran
Python's backtracking regex, so ``%%%%%%%%%%%%%%Z`` against a 60-character
message took minutes; and filters were evaluated for every candidate before
the RLS check, so an anon-key socket with no right to any row still made the
server run it. The matcher now runs in time linear in the value (for a
bounded pattern), filters are bounded in length, and only subscribers that
RLS allows to see a row have their filters evaluated.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from progressbench.transports.realtime.auth import Claims
from progressbench.transports.realtime.feed import Binding, ChangeFeed, Subscriber
from progressbench.transports.realtime.filters import MAX_FILTER_LENGTH, FilterError, matches, parse_filter
from progressbench.transports.realtime.pgoutput import Change, Column, Relation

from tests.helpers import UNIT

HOSTILE = "message=like." + "%" * 14 + "Z"


def test_a_hostile_like_pattern_finishes() -> None:
    """The probe's pattern against a message that does not end in Z finishes (a hang fails the test)."""
    script = (
        "from progressbench.transports.realtime.filters import matches, parse_filter\n"
        f"print(matches(parse_filter({HOSTILE!r}), {{'message': 'a' * 60}}))\n"
    )
    # The bound covers the child's imports (every transport: tens of seconds on a loaded 2-core
    # runner, CI saw > 20 s); the backtracking matcher this guards against ran for hours.
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120 * UNIT)
    assert done.stdout.strip() == "False", done.stderr


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("%", "", True),
        ("a%", "abc", True),
        ("%c", "abc", True),
        ("a_c", "abc", True),
        ("a_c", "abbc", False),
        ("%b%", "abc", True),
        ("%b%b%", "abc", False),
        ("%b%b%", "abcb", True),
        ("a%b%c", "aXbYc", True),
        ("a%b%c", "aXcYb", False),
        ("%%", "x", True),
        ("_%_", "x", False),
        ("_%_", "xy", True),
        ("%.%", "a.b", True),
        ("%.%", "ab", False),
        ("ab%ba", "aba", False),
        ("ab%ba", "abba", True),
        ("%aab", "aaab", True),
    ],
)
def test_like_keeps_its_meaning(pattern: str, value: str, expected: bool) -> None:
    """``%`` is any run, ``_`` one character, everything else literal; the whole value must match."""
    assert matches(parse_filter(f"message=like.{pattern}"), {"message": value}) is expected
    assert matches(parse_filter(f"message=ilike.{pattern.upper()}"), {"message": value}) is expected


def test_filters_are_bounded_in_length() -> None:
    with pytest.raises(FilterError, match="longer than"):
        parse_filter("message=like." + "a" * MAX_FILTER_LENGTH)


class CountingRecord(dict[str, Any]):
    """A WAL record that counts how often a filter reads its ``message`` column."""

    reads = 0

    def __getitem__(self, key: str) -> Any:
        if key == "message":
            CountingRecord.reads += 1
        return super().__getitem__(key)


class DenyAll(ChangeFeed):
    """The feed with RLS answering "no" for every subscriber (no database needed)."""

    async def _table(self, change: Change) -> Any:
        from progressbench.transports.realtime.feed import _TableInfo

        return _TableInfo(rls=True, key_types={"id": "bigint"})

    async def _authorize(self, checks: list[tuple[Change, Subscriber]]) -> list[bool]:
        return [False] * len(checks)


class Sink:
    topic = "realtime:x"

    def __init__(self) -> None:
        self.frames: list[str] = []

    def push_change(self, ids: list[int], data_json: str) -> None:
        self.frames.append(data_json)


async def test_filters_run_only_after_rls_allows_the_row() -> None:
    """A subscriber RLS refuses never has its filter evaluated (and gets nothing)."""
    feed = DenyAll("postgresql://unused")
    sink = Sink()
    binding = Binding(1, "public", "job_events", "*", parse_filter(HOSTILE))
    feed.add(Subscriber(sink, (binding,), Claims({"role": "anon", "exp": 2**40})))
    relation = Relation(
        1, "public", "job_events", "d", (Column("id", 20, True), Column("message", 25, False))
    )
    record = CountingRecord(id=1, message="a" * 60)
    CountingRecord.reads = 0
    await feed._deliver([Change("INSERT", relation, "2026-01-01T00:00:00Z", record, None)])
    assert sink.frames == []
    assert CountingRecord.reads == 0
