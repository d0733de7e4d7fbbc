"""The gate's verdicts for CI: JUnit XML for test reporters, Markdown for a pull request.

JUnit XML has no formal standard; what CI tools read (Jenkins, GitLab,
GitHub test-report actions, ``junitparser``) is the Ant/Surefire shape:
``<testsuites>`` holding ``<testsuite name tests failures errors skipped>``
holding ``<testcase classname name>``, each possibly with one ``<failure
message type>`` or ``<skipped message>`` child. Here one testcase is one
rule on one cell: ``classname`` is the cell (``sse × tunnel``), ``name`` the
rule (``delivery_ratio >= 1``); a failure's message carries the measured
value and its text the rule's why. A rule whose cells were not run (and not
required) is *skipped*, so "nothing measured" never reads as "passed".

The Markdown summary is what a pull-request comment or
``$GITHUB_STEP_SUMMARY`` shows: the outcome first, then the failures with
their why, then every check folded away.

Pure: verdicts in, text out.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from progressbench.reports.gate import Verdict

SUITE = "progressbench check"


def _value(actual: object) -> str:
    if actual is None:
        return "no value"
    if isinstance(actual, float):
        return f"{actual:.6g}"
    return str(actual)


def _skipped(verdict: Verdict) -> bool:
    return verdict.ok and verdict.note == "not run"


def junit_xml(verdicts: Sequence[Verdict], source: str, warnings: Sequence[str] = ()) -> str:
    """The verdicts as one JUnit test suite (UTF-8 XML text with its declaration)."""
    failures = sum(not v.ok for v in verdicts)
    skipped = sum(_skipped(v) for v in verdicts)
    suites = ET.Element("testsuites", name=SUITE, tests=str(len(verdicts)), failures=str(failures))
    suites.set("errors", "0")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=SUITE,
        tests=str(len(verdicts)),
        failures=str(failures),
        errors="0",
        skipped=str(skipped),
        time="0",
    )
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", name="results", value=source)
    for i, warning in enumerate(warnings):
        ET.SubElement(properties, "property", name=f"warning{i + 1}", value=warning)
    for v in verdicts:
        case = ET.SubElement(suite, "testcase", classname=v.cell, name=v.rule, time="0")
        if _skipped(v):
            ET.SubElement(case, "skipped", message="not run: no cell of this run matches the rule")
        elif not v.ok:
            failure = ET.SubElement(
                case,
                "failure",
                message=f"{v.rule} on {v.cell}: measured {_value(v.actual)}",
                type="regression",
            )
            failure.text = f"measured: {_value(v.actual)}\nrule: {v.rule}\nwhy: {v.note or '–'}"
        else:
            out = ET.SubElement(case, "system-out")
            out.text = f"measured: {_value(v.actual)}" + (f"\nwhy: {v.note}" if v.note else "")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


_MD_SPECIAL = frozenset("\\`*_[]<>|#!~&")


def _md(value: object) -> str:
    """Text from a results file, safe in a Markdown table cell (no new rows, links or HTML)."""
    text = " ".join(str(value).split())
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in text)


def summary_markdown(
    verdicts: Sequence[Verdict], source: str, warnings: Sequence[str] = (), report_link: str | None = None
) -> str:
    """A pull-request comment: outcome, failures with why and value, then every check folded."""
    failed = [v for v in verdicts if not v.ok]
    skipped = [v for v in verdicts if _skipped(v)]
    cells = len({v.cell for v in verdicts if not _skipped(v)})
    if failed:
        head = f"### ❌ progressbench gate: {len(failed)} of {len(verdicts)} checks failed"
    else:
        head = f"### ✅ progressbench gate: all {len(verdicts)} checks hold"
    lines = [
        head,
        "",
        f"Results {_md(source)}: {cells} cells judged, {len(verdicts) - len(failed) - len(skipped)} checks "
        f"passed, {len(failed)} failed, {len(skipped)} not run.",
        "",
    ]
    lines += [f"> ⚠️ {_md(w)}" for w in warnings]
    if warnings:
        lines.append("")
    if failed:
        lines += ["| cell | rule | measured | why |", "|---|---|---|---|"]
        lines += [
            f"| {_md(v.cell)} | {_md(v.rule)} | {_md(_value(v.actual))} | {_md(v.note or '–')} |"
            for v in failed
        ]
        lines.append("")
    if report_link:
        lines += [f"Report: {report_link}", ""]
    passed = [v for v in verdicts if v.ok and not _skipped(v)]
    lines += [
        f"<details><summary>{len(passed)} checks that hold</summary>",
        "",
        "| cell | rule | measured |",
        "|---|---|---|",
    ]
    lines += [f"| {_md(v.cell)} | {_md(v.rule)} | {_md(_value(v.actual))} |" for v in passed]
    lines += ["", "</details>", ""]
    return "\n".join(lines)
