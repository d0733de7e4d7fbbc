"""`progressbench check`: judge a results folder against rules and a baseline.

Rules are TOML (``[[rule]]`` tables). Each names the cells it applies to
(``transport`` and ``profile``, ``*`` wildcards allowed), a ``metric`` (a
summary cell field, dotted for nested ones such as ``latency_ms.p95``), an
operator and a value. A metric name that no summary cell has is refused
when the rules load (a misspelt rule would otherwise compare nothing and
pass). A rule whose cells are absent from the results is reported as
``not run``, which fails the gate only with ``required = true``: a gate
must not pass because nothing was measured.

Rules come from files: ``rules.toml`` here holds the rules for every cell;
each transport keeps its own beside it, and the app hands the gate all of
them (this package never imports a transport).

A baseline (another ``summary.json``) adds regression checks per shared
cell: ratios may not drop, counts of bad things may not rise, latency p95
may not grow by more than 50 % + 5 ms. Comparing across machines warns.
"""

from __future__ import annotations

import fnmatch
import operator
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from progressbench.core.config import describe_validation_error
from progressbench.core.errors import ConfigError
from progressbench.core.summary import CellSummary, check_metric

OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


class Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    transport: str = "*"
    #: A glob, or a list of globs (any may match).
    profile: str | list[str] = "*"
    metric: str = Field(min_length=1)
    op: str = Field(pattern=r"^(==|!=|>=|<=|>|<)$")
    value: float
    required: bool = False
    why: str = ""

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        return check_metric(value)

    @property
    def profiles(self) -> list[str]:
        return [self.profile] if isinstance(self.profile, str) else self.profile

    def applies_to(self, transport: str, profile: str) -> bool:
        return fnmatch.fnmatchcase(transport, self.transport) and any(
            fnmatch.fnmatchcase(profile, p) for p in self.profiles
        )


class RuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule: list[Rule] = Field(default_factory=list)


@dataclass(frozen=True)
class Verdict:
    rule: str
    cell: str
    actual: Any
    ok: bool
    note: str = ""
    #: The cell saturated the machine: a failure may be the machine's, not the pattern's.
    saturated: bool = False


#: Said beside a failure on a saturated cell, so a reader looks at the machine before the pattern.
SATURATED_NOTE = "saturated cell: it measured this machine's capacity, not the pattern"


def _verdict(rule: str, cell: CellSummary, actual: Any, ok: bool, note: str = "") -> Verdict:
    """A verdict on one cell; a failure on a saturated cell says so (it still fails the gate)."""
    if not ok and cell.saturated:
        note = f"{note} ({SATURATED_NOTE})" if note else SATURATED_NOTE
    return Verdict(rule, cell.label, actual, ok, note, saturated=cell.saturated)


def parse_rules(text: str, source: str) -> list[Rule]:
    """Rules from TOML text; ConfigError naming ``source`` and the key for anything wrong."""
    try:
        return RuleFile.model_validate(tomllib.loads(text)).rule
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe_validation_error(exc)}") from None


def load_rules(path: Path) -> list[Rule]:
    """A rules file of the user's (``check --rules FILE``)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"--rules: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--rules: {path} is not UTF-8 text (a TOML rules file)") from None
    return parse_rules(text, str(path))


def general_rules() -> list[Rule]:
    """The built-in rules that hold for every cell, whatever its transport."""
    text = (resources.files("progressbench.reports") / "rules.toml").read_text()
    return parse_rules(text, "built-in rules (reports/rules.toml)")


def _number(cell: CellSummary, metric: str) -> float | None:
    value = cell.lookup(metric)
    return value if isinstance(value, int | float) else None


def apply_rules(cells: Sequence[CellSummary], rules: Sequence[Rule]) -> list[Verdict]:
    verdicts: list[Verdict] = []
    for rule in rules:
        text = f"{rule.metric} {rule.op} {rule.value:g}"
        matched = [c for c in cells if rule.applies_to(c.transport, c.profile)]
        if not matched:
            where = f"{rule.transport} × {'|'.join(rule.profiles)}"
            verdicts.append(Verdict(text, where, None, not rule.required, "not run"))
            continue
        for cell in matched:
            actual = _number(cell, rule.metric)
            if actual is None:
                verdicts.append(_verdict(text, cell, None, False, "metric missing (no data)"))
                continue
            verdicts.append(_verdict(text, cell, actual, OPS[rule.op](actual, rule.value), rule.why))
    return verdicts


HIGHER_IS_BETTER = ("delivery_ratio", "terminal_ratio")
LOWER_IS_BETTER = (
    "lost",
    "duplicates",
    "out_of_order",
    "silent_stalls",
    "foreign_events",
    "duplicate_executions",
    "stuck_jobs",
)


def compare_baseline(cells: Sequence[CellSummary], baseline: Sequence[CellSummary]) -> list[Verdict]:
    base = {(c.transport, c.profile): c for c in baseline}
    verdicts: list[Verdict] = []
    for cell in cells:
        old = base.get((cell.transport, cell.profile))
        if old is None:
            continue
        for metric in HIGHER_IS_BETTER:
            new_v, old_v = _number(cell, metric), _number(old, metric)
            if new_v is not None and old_v is not None:
                verdicts.append(
                    _verdict(f"{metric} ≥ baseline {old_v:g}", cell, new_v, new_v >= old_v - 1e-9)
                )
        for metric in LOWER_IS_BETTER:
            new_v, old_v = _number(cell, metric), _number(old, metric)
            if new_v is not None and old_v is not None:
                # counts scale with sessions: compare per session
                n_new, n_old = max(cell.sessions, 1), max(old.sessions, 1)
                verdicts.append(
                    _verdict(
                        f"{metric}/session ≤ baseline {old_v / n_old:.3g}",
                        cell,
                        round(new_v / n_new, 6),
                        new_v / n_new <= old_v / n_old + 1e-9,
                    )
                )
        new_p95, old_p95 = cell.latency_ms.p95, old.latency_ms.p95
        if new_p95 is not None and old_p95 is not None:
            limit = old_p95 * 1.5 + 5.0
            verdicts.append(
                _verdict(
                    f"latency_ms.p95 ≤ {limit:.1f} (baseline ×1.5 + 5)",
                    cell,
                    new_p95,
                    new_p95 <= limit,
                )
            )
    return verdicts
