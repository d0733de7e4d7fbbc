"""The typed summary: RESULTS.md names, strict loading, and rules that must name a real metric."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from progressbench.reports import gate
from progressbench.reports.gate import Rule, load_rules, parse_rules
from progressbench.reports.render import COLUMNS, markdown
from pydantic import ValidationError

from progressbench.app.cell_result import CellResult
from progressbench.app.results import dependencies, load_summary, write_summary
from progressbench.app.scoring import Provenance, build_summary, run_complete
from progressbench.core.errors import ConfigError, ResultsError
from progressbench.core.summary import (
    Distortion,
    FaultWindowSpan,
    MachineInfo,
    RunTiming,
    Summary,
    check_metric,
    metric_names,
)
from tests.unit.summaries import make_cell

#: The aggregate names RESULTS.md fixes for every summary.json cell, nested ones dotted.
RESULTS_NAMES = {
    "sessions",
    "jobs",
    "events_expected",
    "events_received",
    "delivery_ratio",
    "lost",
    "duplicates",
    "out_of_order",
    "terminal_ratio",
    "latency_ms.p50",
    "latency_ms.p95",
    "latency_ms.p99",
    "terminal_latency_ms.p50",
    "terminal_latency_ms.p95",
    "disconnects",
    "reconnects",
    "resumes",
    "resume_ms.p50",
    "resume_ms.p95",
    "silent_stalls",
    "foreign_events",
    "duplicate_executions",
    "cost_usd_per_1k_jobs",
    "meters.*",
}


def summary(**changes: object) -> Summary:
    fields: dict[str, object] = {
        "provenance": Provenance(
            progressbench="0.1.0",
            created_at="2026-01-01T00:00:00+00:00",
            commit=None,
            machine=MachineInfo(
                node="n", system="Linux", release="6", machine="x86_64", python="3.11", cpus=2
            ),
            versions={"pydantic": "2.0"},
        ),
        "config": {"users": 1},
        "profiles": {},
        "run_id": "r1",
        "complete": True,
        "interrupted": False,
        "timing": RunTiming(started_at=1.0, seconds=2.0),
        "cells": [make_cell("polling", "clean", sessions=3)],
    }
    fields.update(changes)
    return build_summary(**fields)  # type: ignore[arg-type]


def test_every_results_md_aggregate_is_a_metric() -> None:
    """Rules may compare each aggregate RESULTS.md names; strings and lists are not metrics."""
    names = metric_names()
    assert names >= RESULTS_NAMES
    assert "resume_outcomes.silent-gap" in names
    assert not {"transport", "profile", "fault_windows", "chaos_errors"} & names


def test_the_file_keeps_results_md_names() -> None:
    """Written by alias: hyphenated outcome names, the fixed top-level keys, prices_as_of written."""
    data = json.loads(summary().to_json())
    assert list(data)[:7] == [
        "schema_version",
        "progressbench",
        "created_at",
        "commit",
        "machine",
        "versions",
        "prices_as_of",
    ]
    assert data["prices_as_of"] == "2026-11"
    cell = data["cells"][0]
    assert set(cell["resume_outcomes"]) == {
        "replayed-complete",
        "gap-flagged",
        "silent-gap",
        "duplicate-replay",
        "restarted",
    }
    assert list(cell)[:3] == ["transport", "profile", "sessions"]


def test_a_written_summary_loads_back_equal(tmp_path: Path) -> None:
    """What a run writes, check and report read without loss."""
    written = summary()
    write_summary(tmp_path, written)
    assert load_summary(tmp_path) == written


@pytest.mark.parametrize(
    ("edit", "names"),
    [
        (lambda d: d["cells"][0].update(sessions="many"), "cells.0.sessions"),
        (lambda d: d["cells"][0].pop("delivery_ratio"), "cells.0.delivery_ratio"),
        (lambda d: d["cells"][0].update(delivery_ratoi=1.0), "cells.0.delivery_ratoi"),
        (lambda d: d.update(cells={"polling": {}}), "cells"),
        (lambda d: d["machine"].update(cpus=True), "machine.cpus"),
    ],
)
def test_a_malformed_summary_is_one_clear_line(tmp_path: Path, edit: object, names: str) -> None:
    """A wrong-typed, missing or unknown field is refused with one line naming the key, not misread."""
    data = json.loads(summary().to_json())
    edit(data)  # type: ignore[operator]
    (tmp_path / "summary.json").write_text(json.dumps(data))
    with pytest.raises(ResultsError) as caught:
        load_summary(tmp_path)
    message = str(caught.value)
    assert "\n" not in message and names in message and "not a valid summary" in message


@pytest.mark.parametrize("text", ["[1, 2]", "{not json", '{"schema_version": "1"}'])
def test_a_summary_that_is_no_summary_is_refused(tmp_path: Path, text: str) -> None:
    """Not an object, not JSON, or a version this code does not know: one line, no traceback."""
    (tmp_path / "summary.json").write_text(text)
    with pytest.raises(ResultsError) as caught:
        load_summary(tmp_path)
    assert "\n" not in str(caught.value)


def test_a_rule_with_an_unknown_metric_is_refused_when_the_rules_load(tmp_path: Path) -> None:
    """A misspelt metric fails at load, naming the rule and the nearest names: it never compares nothing."""
    path = tmp_path / "rules.toml"
    path.write_text(
        '[[rule]]\nmetric = "lost"\nop = "=="\nvalue = 0\n\n'
        '[[rule]]\nmetric = "delivery_ratoi"\nop = ">="\nvalue = 1\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    message = str(caught.value)
    assert "rule.1.metric" in message and "delivery_ratoi" in message and "'delivery_ratio'" in message
    assert "\n" not in message


def test_metric_names_reach_into_nested_fields_and_mappings() -> None:
    """Dotted names reach nested fields and any key of a mapping; a bare mapping or a string is no metric."""
    for metric in (
        "latency_ms.p95",
        "resume_outcomes.gap-flagged",
        "findings.no-auth",
        "meters.api.pb_requests_total",
    ):
        assert Rule(metric=metric, op=">=", value=0).metric == metric
    for metric in ("latency_ms.p90", "meters", "transport", "resume_outcomes.gap_flagged"):
        with pytest.raises(ValidationError, match="unknown metric"):
            Rule(metric=metric, op=">=", value=0)


def test_lookup_reads_a_mapping_key_with_dots() -> None:
    """meters keys are "<service>.<meter>": a rule on one compares that counter."""
    cell = make_cell("polling", "clean", meters={"api.pb_requests_total": 42.0}, findings={"no-auth": 2})
    rules = parse_rules(
        '[[rule]]\nmetric = "meters.api.pb_requests_total"\nop = ">="\nvalue = 40\n'
        '[[rule]]\nmetric = "findings.no-auth"\nop = "=="\nvalue = 2\n',
        "test",
    )
    assert [(v.actual, v.ok) for v in gate.apply_rules([cell], rules)] == [(42.0, True), (2, True)]


def test_report_columns_and_baseline_metrics_are_real_names() -> None:
    """The report's columns and the baseline's comparisons name fields a cell has."""
    assert [key for key, _ in COLUMNS[:2]] == ["transport", "profile"]
    for key, _ in COLUMNS[2:]:
        assert check_metric(key) == key
    for metric in (*gate.HIGHER_IS_BETTER, *gate.LOWER_IS_BETTER):
        assert check_metric(metric) == metric


def test_a_run_is_complete_only_when_every_planned_cell_collected_everything() -> None:
    """Interrupted, short of cells, or a cell short of sessions: partial."""

    def cell(complete: bool) -> CellResult:
        return CellResult("polling", "clean", Path("x.jsonl"), complete=complete)

    two = [cell(True), cell(True)]
    assert run_complete(two, 2, interrupted=False)
    assert not run_complete(two, 2, interrupted=True)
    assert not run_complete(two, 3, interrupted=False)
    assert not run_complete([cell(True), cell(False)], 2, interrupted=False)


def test_dependency_names_come_from_the_distributions_runtime_requirements() -> None:
    """Extras (the test tools) are left out; extras and versions are stripped from names."""
    requires = ["psycopg[binary,pool]>=3.2", "realtime>=2.5", 'pytest>=8; extra == "test"', "pyjwt[crypto]"]
    assert dependencies(requires) == ["psycopg", "realtime", "pyjwt"]


def test_every_duration_column_says_it_is_real_and_distortions_are_reported() -> None:
    """Latency, resume and result columns name their real unit; the report says how durations are
    meant, turns fault windows into real seconds and lists each cell's distortions, from the file."""
    for key, label in COLUMNS:
        if key.endswith(("_ms.p50", "_ms.p95", "_ms.p99", "_s.p50")):
            assert "real ms" in label or "real s" in label, label
    cell = make_cell(
        "realtime",
        "tunnel",
        distortions=[Distortion(timer="websockets keepalive ping", real_s=20.0, effective_real_s=400.0)],
        fault_windows=[FaultWindowSpan(cell=0, kind="blackhole", start_s=1.0, duration_s=4.5)],
        verdict_depends_on=[
            "websockets keepalive ping: 20 s in the world, 400 s in this run, "
            "on the other side of the blackhole window (90 s)"
        ],
    )
    text = markdown(summary(cells=[cell], config={"timing": {"time_scale": 0.05}}))
    assert "Its verdict depends on the compression**: websockets keepalive ping: 20 s in the world" in text
    assert "lat p50 real ms" in text and "divided by it" in text
    assert "blackhole on phone cell 0 at 20 real s for 90 real s" in text
    assert "websockets keepalive ping 20 s → 400 s" in text
    data = json.loads(summary(cells=[cell]).to_json())
    assert data["cells"][0]["distortions"] == [
        {"timer": "websockets keepalive ping", "real_s": 20.0, "effective_real_s": 400.0}
    ]
