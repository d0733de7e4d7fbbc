"""The gate's CI files, read back the way CI tools read them; the phones' entries for Locust."""

from __future__ import annotations

from pathlib import Path

import junitparser
from progressbench.reports.gate import Verdict
from progressbench.reports.gate_output import junit_xml, summary_markdown
from progressbench.reports.related import related_files, with_related
from rich.console import Console

from progressbench.app.phone_stats import phone_requests
from progressbench.app.tables import verdicts_table
from progressbench.core.events import Observation
from progressbench.core.ledger import EventRow, SessionRow

VERDICTS = [
    Verdict("delivery_ratio >= 1", "sse × tunnel", 0.93, False, "Last-Event-ID replays what was missed"),
    Verdict("foreign_events == 0", "sse × tunnel", 0, True, "nobody may see another user's job"),
    Verdict("coalesced >= 1", "polling × tunnel|sleep", None, True, "not run"),
]


def test_junit_has_one_testcase_per_rule_and_cell_with_failures_that_say_why(tmp_path: Path) -> None:
    """junitparser reads a failure (value and why), a pass and a skipped rule whose cells were not run."""
    path = tmp_path / "gate.xml"
    path.write_text(junit_xml(VERDICTS, "results/ci", ["these results are partial"]))
    xml = junitparser.JUnitXml.fromfile(str(path))
    [suite] = list(xml)
    assert (suite.tests, suite.failures, suite.skipped, suite.errors) == (3, 1, 1, 0)
    cases = {(c.classname, c.name): c for c in suite}
    [failure] = cases[("sse × tunnel", "delivery_ratio >= 1")].result
    assert isinstance(failure, junitparser.Failure)
    assert "measured 0.93" in (failure.message or "")
    assert "why: Last-Event-ID replays what was missed" in (failure.text or "")
    assert cases[("sse × tunnel", "foreign_events == 0")].is_passed
    assert cases[("polling × tunnel|sleep", "coalesced >= 1")].is_skipped


def test_the_markdown_summary_leads_with_the_outcome_and_escapes_names() -> None:
    """A PR comment: ❌ and the failure's row first; a name from the results cannot add table rows."""
    text = summary_markdown([*VERDICTS, Verdict("x == 0", "evil|\n| row", 1, False, "")], "results/ci")
    first, *_ = text.splitlines()
    assert first == "### ❌ progressbench gate: 2 of 4 checks failed"
    assert "| sse × tunnel | delivery\\_ratio \\>= 1 | 0.93 | Last-Event-ID replays what was missed |" in text
    assert "evil\\| \\| row" in text
    assert summary_markdown(VERDICTS[1:], "r").startswith("### ✅ progressbench gate: all 2 checks hold")


def _row(**changes: object) -> SessionRow:
    base: dict[str, object] = dict.fromkeys(SessionRow.__dataclass_fields__, 0)
    base.update(
        session_id="s",
        transport="sse",
        profile="tunnel",
        owner="o",
        job_id="j",
        job_status="done",
        outcome="terminal",
        error="",
        findings="",
        resume_ms=(),
        resume_ms_raw=(),
        first_event_ms=None,
        terminal_latency_ms=None,
        terminal_received=True,
        silent_stall=False,
        duplicate_execution=False,
        contexts="",
        triggers="",
    )
    base.update(changes)
    return SessionRow(**base)  # type: ignore[arg-type]


def _event(seq: int, kind: str, latency: float | None = 12.5, **changes: object) -> EventRow:
    """An event received with ``latency`` ms on the run's own clock (what Locust is given)."""
    fields: dict[str, object] = dict(
        session_id="s",
        transport="sse",
        profile="tunnel",
        job_id="j",
        seq=seq,
        kind=kind,
        committed_wall_ns=1,
        received_wall_ns=2,
        latency_ms=None if latency is None else latency * 20,
        latency_ms_raw=latency,
        duplicate=False,
        out_of_order=False,
        foreign=False,
    )
    fields.update(changes)
    return EventRow(**fields)  # type: ignore[arg-type]


def test_a_session_becomes_locust_requests_and_failures() -> None:
    """Events by kind with latency; lost, stalls, foreign events, silent gaps fail; repeats do not count."""
    row = _row(
        lost=2,
        silent_stall=True,
        longest_silence_ms_raw=9000.0,
        resume_silent_gap=1,
        disconnects=3,
    )
    events = [
        _event(1, "step"),
        _event(1, "step", duplicate=True),
        _event(16, "done", 40.0),
        _event(3, "step", None, foreign=True, job_id="other"),
    ]
    seen = [
        Observation(type="progress", wall_ns=0, mono_ns=0, seq=1),
        Observation(type="disconnected", wall_ns=0, mono_ns=1_000_000_000),
        Observation(type="reconnected", wall_ns=0, mono_ns=1_500_000_000),
        Observation(type="progress", wall_ns=0, mono_ns=1_800_000_000, seq=2),
        Observation(type="disconnected", wall_ns=0, mono_ns=2_000_000_000),  # nothing after it: no sample
    ]
    entries = phone_requests(row, events, seen)
    by_name: dict[str, list[tuple[float, bool]]] = {}
    for e in entries:
        by_name.setdefault(f"{e.request_type} {e.name}", []).append((e.response_time, e.error is not None))
    assert by_name == {
        "EVENT sse step": [(12.5, False)],
        "EVENT sse done": [(40.0, False)],
        "EVENT sse foreign": [(0.0, True)],
        "LOST sse lost event": [(0.0, True), (0.0, True)],
        "STALL sse silent stall": [(9000.0, True)],
        "RESUME sse resume": [(800.0, False)],
        "RESUME sse silent gap": [(0.0, True)],
        "DISCONNECT sse disconnect": [(0.0, False)] * 3,
    }


def test_related_files_are_linked_once_from_both_reports(tmp_path: Path) -> None:
    """compare.html and Locust's files get one section of relative links; a second pass replaces it."""
    (tmp_path / "compare.html").write_text("x")
    (tmp_path / "locust").mkdir()
    (tmp_path / "locust" / "sse__clean.html").write_text("x")
    (tmp_path / "locust" / "sse__clean_stats.csv").write_text("x")
    files = related_files(tmp_path)
    assert [p for p, _ in files] == ["compare.html", "locust/sse__clean.html", "locust/sse__clean_stats.csv"]
    page = with_related(
        with_related("<html><body><h1>r</h1></body></html>", files, html=True), files, html=True
    )
    assert page.count("Related files") == 1 and page.endswith("</body></html>")
    assert '<a href="locust/sse__clean.html">' in page
    text = with_related(with_related("# report\n", files, html=False), files, html=False)
    assert text.count("## Related files") == 1 and "- [compare.html](compare.html)" in text


def test_the_console_table_does_not_call_a_rule_that_judged_nothing_ok() -> None:
    verdicts = [
        Verdict("delivery_ratio >= 1", "sse × clean", 1.0, True, "why"),
        Verdict("coalesced >= 1", "polling × tunnel", None, True, "not run"),
        Verdict("lost == 0", "sse × handoff", 3, False, "why"),
    ]
    console = Console(width=200, record=True)
    console.print(verdicts_table("check", verdicts))
    lines = {
        line.split("│")[2].strip(): line.split("│")[1].strip()
        for line in console.export_text().splitlines()
        if line.count("│") > 3
    }
    assert lines == {"sse × clean": "ok", "polling × tunnel": "–", "sse × handoff": "FAIL"}
