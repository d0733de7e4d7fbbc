"""`progressbench bench --all`: every benchmark, each figure beside its anchor, in ``bench.json``.

The benchmarks are scripts in the repository's ``benchmarks/`` folder (they
start their own stacks and print for people); this runs each one as a
separate process with a time budget, collects the figures it records
(:mod:`progressbench.app.bench_figures`) and reads them against
``benchmarks/anchors.toml``. Nothing is asserted: a figure that misses its
anchor is reported, with the ratio, not failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from progressbench.app.bench_figures import FIGURES_ENV
from progressbench.core.errors import ConfigError

#: Seconds one benchmark script may take before it is stopped (its figures so far are kept).
SCRIPT_BUDGET_S = 300.0


@dataclass(frozen=True)
class Anchor:
    """A figure's entry in ``anchors.toml``; ``anchor`` None for a reference figure.

    A reference (say, a plain library's number measured in the same run) is
    read against nothing, but listed so that its source shows and a run that
    fails to record it leaves a visible gap.
    """

    name: str
    benchmark: str
    anchor: float | None
    better: Literal["lower", "higher"]
    unit: str
    source: str
    #: a stand-in target: it applies only when the run did not record this other figure
    #: (the proxy's "<= 30 us over direct" stands in for the ratio to a real Toxiproxy)
    unless: str | None = None


@dataclass
class Figure:
    name: str
    benchmark: str
    value: float | None
    unit: str
    anchor: float | None
    better: str | None
    source: str | None
    context: dict[str, object] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """value / anchor: under 1 is better for a "lower" figure, over 1 for a "higher" one."""
        if self.value is None or not self.anchor:
            return None
        return self.value / self.anchor

    @property
    def meets(self) -> bool | None:
        if self.value is None or self.anchor is None:
            return None
        return self.value <= self.anchor if self.better == "lower" else self.value >= self.anchor


@dataclass
class ScriptRun:
    benchmark: str
    returncode: int | None
    seconds: float
    log: str


def load_anchors(path: Path) -> dict[str, Anchor]:
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the benchmark anchors {path}: {exc}") from None
    anchors: dict[str, Anchor] = {}
    for name, entry in raw.get("figures", {}).items():
        try:
            anchors[name] = Anchor(
                name=name,
                benchmark=str(entry["benchmark"]),
                anchor=float(entry["anchor"]) if "anchor" in entry else None,
                # An anchored figure must say which way is better; a reference need not.
                better="higher" if (entry["better"] if "anchor" in entry else None) == "higher" else "lower",
                unit=str(entry["unit"]),
                source=str(entry["source"]),
                unless=str(entry["unless"]) if "unless" in entry else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: figure {name!r} is malformed ({exc})") from None
    return anchors


def find_benchmarks(start: Path) -> Path:
    """The ``benchmarks/`` folder of the checkout ``start`` is in (they are not part of the wheel)."""
    for folder in (start, *start.parents):
        candidate = folder / "benchmarks"
        if (candidate / "anchors.toml").is_file():
            return candidate
    raise ConfigError(
        "bench --all needs the repository's benchmarks/ folder (with anchors.toml): run it from a checkout"
    )


def join(anchors: dict[str, Anchor], recorded: list[dict[str, object]], benchmark: str) -> list[Figure]:
    """Recorded figures beside their anchors; an anchored figure the script never recorded is a gap."""
    figures: list[Figure] = []
    seen: set[str] = set()
    valued = {str(item["name"]) for item in recorded if isinstance(item.get("value"), int | float)}
    for item in recorded:
        name = str(item["name"])
        seen.add(name)
        anchor = anchors.get(name)
        if anchor is not None and anchor.unless in valued:
            # The figure the stand-in stands for was measured: this one is read against nothing.
            anchor = Anchor(
                name, benchmark, None, anchor.better, anchor.unit, f"{anchor.unless} was measured instead"
            )
        value = item.get("value")
        figures.append(
            Figure(
                name=name,
                benchmark=benchmark,
                value=float(value) if isinstance(value, int | float) else None,
                unit=str(item.get("unit", "")),
                anchor=anchor.anchor if anchor else None,
                better=anchor.better if anchor else None,
                source=anchor.source if anchor else None,
                context=dict(item.get("context") or {}),  # type: ignore[call-overload]
            )
        )
    for anchor in anchors.values():
        if anchor.benchmark == benchmark and anchor.name not in seen:
            figures.append(
                Figure(anchor.name, benchmark, None, anchor.unit, anchor.anchor, anchor.better, anchor.source)
            )
    return figures


def run_script(script: Path, out: Path, budget_s: float) -> tuple[ScriptRun, list[dict[str, object]]]:
    figures_file = out / f"{script.stem}.figures.jsonl"
    figures_file.unlink(missing_ok=True)
    log_path = out / f"{script.stem}.log"
    env = {**os.environ, FIGURES_ENV: str(figures_file), "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(script)], stdout=log, stderr=subprocess.STDOUT, env=env
        )
        try:
            code: int | None = process.wait(timeout=budget_s)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            code = None
        except BaseException:
            process.terminate()
            process.wait(timeout=20)
            raise
    recorded: list[dict[str, object]] = []
    if figures_file.exists():
        recorded = [json.loads(line) for line in figures_file.read_text().splitlines() if line.strip()]
    return ScriptRun(script.name, code, round(time.monotonic() - started, 1), str(log_path)), recorded


def bench_all(
    out: Path, start: Path, budget_s: float = SCRIPT_BUDGET_S
) -> tuple[list[Figure], list[ScriptRun]]:
    folder = find_benchmarks(start)
    anchors = load_anchors(folder / "anchors.toml")
    out.mkdir(parents=True, exist_ok=True)
    figures: list[Figure] = []
    runs: list[ScriptRun] = []
    for script in sorted(folder.glob("bench_*.py")):
        run, recorded = run_script(script, out, budget_s)
        runs.append(run)
        figures += join(anchors, recorded, script.name)
    payload = {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "figures": [{**asdict(f), "ratio": f.ratio, "meets": f.meets} for f in figures],
        "scripts": [asdict(r) for r in runs],
    }
    (out / "bench.json").write_text(json.dumps(payload, indent=2) + "\n")
    return figures, runs
