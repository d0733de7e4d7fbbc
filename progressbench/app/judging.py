"""`progressbench check` without the printing: a results folder judged by rules and a baseline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from progressbench.app.gate_rules import builtin_rules
from progressbench.app.results import load_summary
from progressbench.core.errors import ConfigError
from progressbench.reports.gate import Verdict, apply_rules, compare_baseline, load_rules
from progressbench.reports.gate_output import junit_xml, summary_markdown


@dataclass(frozen=True)
class Judgement:
    verdicts: list[Verdict]
    #: The results say the run was interrupted or cut short.
    partial: bool
    #: The baseline was measured on another machine: latency comparisons may mislead.
    other_machine: bool

    @property
    def failed(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.ok]

    def saturation_warning(self) -> str | None:
        """One sentence when failures come from saturated cells: still failures, read with care."""
        cells = sorted({v.cell for v in self.failed if v.saturated})
        if not cells:
            return None
        count = sum(v.saturated for v in self.failed)
        return (
            f"{count} of the {len(self.failed)} failures are on saturated cells ({', '.join(cells)}): "
            "they measured this machine's capacity; rerun them with fewer phones (--users) or on a "
            "bigger machine before blaming the pattern"
        )


def judge(results: Path, baseline: Path | None = None, rules: Path | None = None) -> Judgement:
    """Every rule (the built-in ones unless ``rules`` names a file), then the baseline's checks."""
    summary = load_summary(results)
    verdicts = apply_rules(summary.cells, builtin_rules() if rules is None else load_rules(rules))
    other_machine = False
    if baseline is not None:
        base = load_summary(baseline)
        other_machine = base.machine.node != summary.machine.node
        verdicts += compare_baseline(summary.cells, base.cells)
    return Judgement(verdicts, partial=not summary.complete, other_machine=other_machine)


def warnings_of(judgement: Judgement) -> list[str]:
    notes = []
    if judgement.partial:
        notes.append("these results are partial (the run was interrupted or cut short)")
    if judgement.other_machine:
        notes.append("the baseline comes from another machine; latency comparisons may mislead")
    if saturation := judgement.saturation_warning():
        notes.append(saturation)
    return notes


def write_ci_files(
    judgement: Judgement, results: Path, junit: Path | None, summary_md: Path | None
) -> list[Path]:
    """JUnit XML (replaced) and the Markdown summary (appended, as ``$GITHUB_STEP_SUMMARY`` wants)."""
    written: list[Path] = []
    source = str(results)
    notes = warnings_of(judgement)
    try:
        if junit is not None:
            junit.parent.mkdir(parents=True, exist_ok=True)
            junit.write_text(junit_xml(judgement.verdicts, source, notes))
            written.append(junit)
        if summary_md is not None:
            summary_md.parent.mkdir(parents=True, exist_ok=True)
            with summary_md.open("a") as fh:
                fh.write(summary_markdown(judgement.verdicts, source, notes))
            written.append(summary_md)
    except OSError as exc:
        raise ConfigError(f"cannot write {exc.filename}: {exc.strerror}") from None
    return written
