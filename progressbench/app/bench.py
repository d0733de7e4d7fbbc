"""`progressbench bench`: capacity numbers for one transport, printed, never asserted.

Runs a normal clean run with many concurrent phones and reads from its raw
records how fast phones got their jobs created and how fast events reached
them. Numbers are for this machine; compare runs on the same machine only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from progressbench.app.results import RAW_DIR, read_records
from progressbench.core.config import RunConfig
from progressbench.core.ledger import percentile


@dataclass
class BenchResult:
    transport: str
    phones: int
    sessions: int
    created_per_s: float | None
    first_submit_to_last_s: float | None
    latency_ms: dict[str, float | None]
    delivery_ratio: float | None
    terminal_ratio: float | None
    api_requests_per_s: float | None
    out: Path


def run_bench(config: RunConfig, console: Console) -> BenchResult:
    from progressbench.app.progress_ui import RichRunView
    from progressbench.app.run import execute

    outcome = execute(config, RichRunView(console))
    cell = outcome.summary.cells[0]
    submits = sorted(
        o.wall_ns
        for path in (outcome.out / RAW_DIR).glob("*.jsonl")
        for r in read_records(path)
        for o in r.observations
        if o.type == "submitted"
    )
    span = (submits[-1] - submits[0]) / 1e9 if len(submits) > 1 else None
    import pandas as pd

    events = pd.read_csv(outcome.out / "events.csv")
    lat = events[(~events["duplicate"]) & events["latency_ms"].notna()]["latency_ms"].tolist()
    return BenchResult(
        transport=cell.transport,
        phones=config.users,
        sessions=cell.sessions,
        created_per_s=(len(submits) - 1) / span if span else None,
        first_submit_to_last_s=span,
        latency_ms={f"p{q}": percentile(lat, q) for q in (50, 95, 99)},
        delivery_ratio=cell.delivery_ratio,
        terminal_ratio=cell.terminal_ratio,
        api_requests_per_s=(
            cell.meters.get("api.pb_requests_total", 0.0) / cell.seconds if cell.seconds else None
        ),
        out=outcome.out,
    )


def print_bench(result: BenchResult, console: Console) -> None:
    def f(v: float | None, unit: str = "") -> str:
        return "n/a" if v is None else f"{v:,.2f}{unit}"

    console.print(
        f"[bold]bench {result.transport}[/]: {result.phones} concurrent phones, {result.sessions} sessions"
    )
    console.print(
        f"  jobs created: {f(result.created_per_s, '/s')} "
        f"(first to last submit {f(result.first_submit_to_last_s, ' s')})"
    )
    lat = result.latency_ms
    console.print(
        f"  commit→phone latency: p50 {f(lat['p50'], ' ms')}, p95 {f(lat['p95'], ' ms')}, "
        f"p99 {f(lat['p99'], ' ms')}"
    )
    console.print(f"  API load: {f(result.api_requests_per_s, ' requests/s')} over the cell")
    console.print(f"  delivery ratio {result.delivery_ratio}, terminal ratio {result.terminal_ratio}")
    console.print(f"  raw results: {result.out}")
