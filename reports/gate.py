"""`progressbench check`: judge a results folder against rules and a baseline.

Rules are TOML (``[[rule]]`` tables). Each names the cells it applies to
(``transport`` and ``profile``, ``*`` wildcards allowed), a ``metric`` (a
summary cell field, dotted for nested ones such as ``latency_ms.p95``), an
operator and a value. A rule whose cells are absent from the results is
reported as ``not run``, which fails the gate only with ``required = true``:
a gate must not pass because nothing was measured.

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

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from progressbench.core.config import describe_validation_error
from progressbench.core.errors import ConfigError

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


def load_rules(path: Path | None) -> list[Rule]:
    if path is None:
        text = (resources.files("progressbench.reports") / "rules.toml").read_text()
        source = "built-in rules"
    else:
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"--rules: cannot read {path}: {exc.strerror}") from None
        source = str(path)
    try:
        return RuleFile.model_validate(tomllib.loads(text)).rule
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe_validation_error(exc)}") from None


def _get(cell: dict[str, Any], dotted: str) -> Any:
    value: Any = cell
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _label(cell: dict[str, Any]) -> str:
    return f"{cell['transport']} × {cell['profile']}"


def apply_rules(cells: Sequence[dict[str, Any]], rules: Sequence[Rule]) -> list[Verdict]:
    verdicts: list[Verdict] = []
    for rule in rules:
        text = f"{rule.metric} {rule.op} {rule.value:g}"
        profiles = [rule.profile] if isinstance(rule.profile, str) else rule.profile
        matched = [
            c
            for c in cells
            if fnmatch.fnmatchcase(c["transport"], rule.transport)
            and any(fnmatch.fnmatchcase(c["profile"], p) for p in profiles)
        ]
        if not matched:
            where = f"{rule.transport} × {'|'.join(profiles)}"
            verdicts.append(Verdict(text, where, None, not rule.required, "not run"))
            continue
        for cell in matched:
            actual = _get(cell, rule.metric)
            if actual is None:
                verdicts.append(Verdict(text, _label(cell), None, False, "metric missing (no data)"))
                continue
            verdicts.append(Verdict(text, _label(cell), actual, OPS[rule.op](actual, rule.value), rule.why))
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


def compare_baseline(cells: Sequence[dict[str, Any]], baseline: Sequence[dict[str, Any]]) -> list[Verdict]:
    base = {(c["transport"], c["profile"]): c for c in baseline}
    verdicts: list[Verdict] = []
    for cell in cells:
        old = base.get((cell["transport"], cell["profile"]))
        if old is None:
            continue
        for metric in HIGHER_IS_BETTER:
            new_v, old_v = cell.get(metric), old.get(metric)
            if new_v is not None and old_v is not None:
                verdicts.append(
                    Verdict(f"{metric} ≥ baseline {old_v:g}", _label(cell), new_v, new_v >= old_v - 1e-9)
                )
        for metric in LOWER_IS_BETTER:
            new_v, old_v = cell.get(metric), old.get(metric)
            if new_v is not None and old_v is not None:
                # counts scale with sessions: compare per session
                n_new, n_old = max(cell.get("sessions") or 1, 1), max(old.get("sessions") or 1, 1)
                verdicts.append(
                    Verdict(
                        f"{metric}/session ≤ baseline {old_v / n_old:.3g}",
                        _label(cell),
                        round(new_v / n_new, 6),
                        new_v / n_new <= old_v / n_old + 1e-9,
                    )
                )
        new_p95, old_p95 = _get(cell, "latency_ms.p95"), _get(old, "latency_ms.p95")
        if new_p95 is not None and old_p95 is not None:
            limit = old_p95 * 1.5 + 5.0
            verdicts.append(
                Verdict(
                    f"latency_ms.p95 ≤ {limit:.1f} (baseline ×1.5 + 5)",
                    _label(cell),
                    new_p95,
                    new_p95 <= limit,
                )
            )
    return verdicts
