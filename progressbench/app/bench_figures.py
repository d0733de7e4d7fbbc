"""How a benchmark script hands its figures to ``progressbench bench --all``.

A benchmark prints what it measured for people, and calls :func:`record`
for each figure a machine should read. Run by ``bench --all``, the variable
:data:`FIGURES_ENV` names a JSON-lines file the figures are appended to; run
by hand, :func:`record` does nothing. Figure names are the keys of
``benchmarks/anchors.toml``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

FIGURES_ENV = "PROGRESSBENCH_BENCH_FIGURES"


def record(name: str, value: float | None, unit: str, **context: object) -> None:
    """Append one figure (None or NaN: the benchmark could not measure it)."""
    target = os.environ.get(FIGURES_ENV)
    if not target:
        return
    clean = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
    line = json.dumps({"name": name, "value": clean, "unit": unit, "context": context}, default=str)
    with Path(target).open("a") as fh:
        fh.write(line + "\n")
