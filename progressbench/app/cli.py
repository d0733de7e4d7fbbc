"""The `progressbench` command. Errors become one line and an exit code.

Exit codes (RESULTS.md): 0 the run completed (whatever it measured), 2 bad
arguments, 1 the testbed itself failed, 130 interrupted (partial results
are still written). ``check`` exits 1 when a rule or baseline regressed.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from progressbench.app import interrupts
from progressbench.app.processes import terminate
from progressbench.core.config import (
    DEFAULT_PROFILES,
    DEFAULT_TIME_SCALE,
    DEFAULT_TRANSPORTS,
    RunConfig,
    build_run_config,
    from_environment,
    split_list,
)
from progressbench.core.errors import ConfigError, ProgressbenchError, StackError

_Abort = typer.Abort
try:  # typer >= 0.20 vendors click
    from typer._click.exceptions import ClickException as _ClickException
except ImportError:  # pragma: no cover - older typer on plain click
    from click.exceptions import ClickException as _ClickException  # type: ignore[assignment]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Compare how long-running jobs report progress to mobile clients, under faults.",
)
#: Output piped to a file or CI log gets room for the results table; a terminal keeps its width.
console = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)


def _locustfile() -> Path:
    """Where Locust finds the phones, wherever the package is installed (Locust wants a file path)."""
    spec = importlib.util.find_spec("progressbench.loadtests.locustfile")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin)


def _run_config(**values: Any) -> RunConfig:
    env = from_environment()
    merged: dict[str, Any] = {k: v for k, v in values.items() if v is not None}
    for key, value in env.items():
        merged.setdefault(key, value)
    return build_run_config(merged)


def _default_transports() -> str:
    """Every registered transport (RESULTS.md: all five, as each lands)."""
    from progressbench.transports import REGISTRY

    return ",".join(name for name in DEFAULT_TRANSPORTS if name in REGISTRY)


TransportsOpt = Annotated[
    str,
    typer.Option(
        "--transports",
        help="Comma list from: " + ",".join(DEFAULT_TRANSPORTS) + " (default: all that are built)",
    ),
]
ProfilesOpt = Annotated[
    str, typer.Option("--profiles", help="Comma list of fault profiles (see `profiles`).")
]


@app.command()
def run(
    transports: TransportsOpt = "",
    profiles: ProfilesOpt = ",".join(DEFAULT_PROFILES),
    users: Annotated[int, typer.Option(help="Simulated phones.")] = 20,
    jobs_per_user: Annotated[int, typer.Option(help="Jobs each phone runs in a row.")] = 2,
    time_scale: Annotated[
        float, typer.Option(help="Multiplies every duration; 1.0 is real time.")
    ] = DEFAULT_TIME_SCALE,
    seed: Annotated[int, typer.Option(help="Seeds job durations and fault timing.")] = 1,
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("results/latest"),
    database_url: Annotated[
        str | None, typer.Option(help="Use this Postgres instead of the embedded one (or DATABASE_URL).")
    ] = None,
    toxiproxy_url: Annotated[
        str | None, typer.Option(help="Drive a real Toxiproxy server (or TOXIPROXY_URL).")
    ] = None,
    spawn_rate: Annotated[float, typer.Option(help="Phones started per second.")] = 50.0,
    locust_workers: Annotated[
        int, typer.Option(help="Run Locust distributed with this many local workers (0: one process).")
    ] = 0,
    worker_instances: Annotated[
        int, typer.Option(help="Worker instances (Cloud Run service instances).")
    ] = 1,
    worker_concurrency: Annotated[
        int, typer.Option(help="Requests per worker instance (Cloud Run default 80).")
    ] = 80,
    step_seconds: Annotated[
        str, typer.Option(help="Step duration range MIN,MAX in seconds at time scale 1.")
    ] = "2,5",
) -> None:
    """Run the (transport × profile) matrix under Locust and write a report."""
    low_high = split_list(step_seconds)
    if len(low_high) != 2:
        raise ConfigError("--step-seconds: expected MIN,MAX, e.g. 2,5")
    try:
        low, high = (float(v) for v in low_high)
    except ValueError:
        raise ConfigError(f"--step-seconds: not numbers: {step_seconds!r}") from None
    config = _run_config(
        transports=split_list(transports or _default_transports()),
        profiles=split_list(profiles),
        users=users,
        jobs_per_user=jobs_per_user,
        seed=seed,
        out=out,
        database_url=database_url,
        toxiproxy_url=toxiproxy_url,
        spawn_rate=spawn_rate,
        locust_workers=locust_workers,
        worker_instances=worker_instances,
        worker_concurrency=worker_concurrency,
        job={"step_seconds_min": low, "step_seconds_max": high},
        timing={"time_scale": time_scale},
    )
    from progressbench.app.run import execute

    outcome = execute(config, console)
    _print_cells(outcome.summary["cells"])
    console.print(f"results: {outcome.out}/summary.json, report: {outcome.out}/report.html")
    if outcome.interrupted:
        raise typer.Exit(130)
    empty = [f"{c['transport']} × {c['profile']}" for c in outcome.summary["cells"] if not c["sessions"]]
    if empty:
        raise StackError(
            f"no phone session was collected for {', '.join(empty)}: the testbed failed to drive "
            f"the phones (see {outcome.out}/logs/locust-*.log); what was collected is written"
        )
    if not outcome.complete:
        short = [f"{c['transport']} × {c['profile']}" for c in outcome.summary["cells"] if not c["complete"]]
        err.print(
            f"[yellow]note: cells without every session: {', '.join(short) or 'none'} (see "
            f"session_outcomes in summary.json and {outcome.out}/logs/locust-*.log)[/]"
        )


#: Columns of the console summary when cells are rows (the full set is in report.md).
_COMPACT = (
    "delivery",
    "lost",
    "dup",
    "terminal",
    "lat p50 ms",
    "lat p95 ms",
    "disc",
    "resume p50 ms",
    "stalls",
    "foreign",
    "dup exec",
    "stuck",
    "$ / 1k jobs",
)


def _print_cells(cells: list[dict[str, Any]]) -> None:
    """Few cells: one column per cell, every metric. Many: one row per cell, key metrics."""
    from progressbench.reports.render import COLUMNS, cell_table

    rows = cell_table(cells)
    labels = [label for _, label in COLUMNS]
    table = Table()
    if len(rows) <= 4:
        table.add_column("metric")
        for row in rows:
            table.add_column(f"{row[0]}\n{row[1]}", justify="right")
        for index, label in enumerate(labels[2:], start=2):
            table.add_row(label, *(row[index] for row in rows))
    else:
        picked = [labels.index(label) for label in _COMPACT]
        table.add_column("transport")
        table.add_column("profile")
        for index in picked:
            table.add_column(labels[index], justify="right")
        for row in rows:
            table.add_row(row[0], row[1], *(row[i] for i in picked))
    console.print(table)


@app.command()
def up(
    time_scale: Annotated[float, typer.Option(help="Multiplies every duration.")] = 1.0,
    database_url: Annotated[
        str | None, typer.Option(help="Use this Postgres instead of the embedded one.")
    ] = None,
    worker_instances: Annotated[int, typer.Option(help="Worker instances.")] = 1,
    run_dir: Annotated[Path, typer.Option(help="Where logs go.")] = Path("results/up"),
) -> None:
    """Start the stack and print its endpoints until Ctrl-C."""
    from progressbench.app.supervisor import Stack, StackSettings

    config = _run_config(
        database_url=database_url, worker_instances=worker_instances, timing={"time_scale": time_scale}
    )
    settings = StackSettings(
        run_dir=run_dir,
        timing=config.timing,
        database_url=config.database_url,
        worker_instances=config.worker_instances,
    )
    with Stack(settings) as stack:
        table = Table(title="progressbench stack")
        table.add_column("service")
        table.add_column("endpoint")
        for role, url in stack.endpoints().items():
            table.add_row(role, url)
        table.add_row("database", stack.database_url)
        console.print(table)
        console.print(f"logs in {run_dir / 'logs'}; Ctrl-C to stop")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            console.print("stopping")


@app.command()
def profiles() -> None:
    """List the fault profiles with their timelines."""
    from progressbench.chaos.profiles import BUILTIN

    for profile in BUILTIN.values():
        console.print(f"[bold]{profile.name}[/]: {profile.description}")
        if profile.cells > 1:
            console.print(f"   {profile.cells} phone cells, timelines staggered by {profile.stagger:g}s")
        for step in profile.steps:
            console.print(f"   {step.describe()}")
        for key, value in profile.timing.items():
            console.print(f"   stack timing: {key} = {value:g}s")
        for source in profile.sources:
            console.print(f"   [dim]source: {source}[/]")


@app.command()
def check(
    results_dir: Annotated[Path, typer.Argument(help="A results folder (or its summary.json).")],
    baseline: Annotated[Path | None, typer.Option(help="A previous summary.json to compare against.")] = None,
    rules: Annotated[Path | None, typer.Option(help="A TOML rules file (default: built-in rules).")] = None,
) -> None:
    """Judge results against rules (and a baseline); exit 1 on any regression."""
    from progressbench.app.results import load_summary
    from progressbench.reports.gate import apply_rules, compare_baseline, load_rules

    summary = load_summary(results_dir)
    verdicts = apply_rules(summary.get("cells", []), load_rules(rules))
    if baseline is not None:
        base = load_summary(baseline)
        if base.get("machine", {}).get("node") != summary.get("machine", {}).get("node"):
            err.print(
                "[yellow]warning: baseline comes from another machine; latency comparisons may mislead[/]"
            )
        verdicts += compare_baseline(summary.get("cells", []), base.get("cells", []))
    table = Table(title=f"progressbench check {results_dir}")
    for col in ("", "cell", "rule", "actual", "note"):
        table.add_column(col)
    for v in verdicts:
        table.add_row(
            "[green]ok[/]" if v.ok else "[red]FAIL[/]",
            v.cell,
            v.rule,
            "–" if v.actual is None else f"{v.actual:g}" if isinstance(v.actual, float) else str(v.actual),
            v.note,
        )
    console.print(table)
    if not summary.get("complete", False):
        err.print("[yellow]warning: these results are partial (the run was interrupted or cut short)[/]")
    failed = [v for v in verdicts if not v.ok]
    if failed:
        err.print(f"[red]{len(failed)} check(s) failed[/]")
        raise typer.Exit(1)
    console.print(f"[green]all {len(verdicts)} checks hold[/]")


@app.command()
def report(results_dir: Annotated[Path, typer.Argument(help="A results folder to re-render.")]) -> None:
    """Re-render report.md and report.html from a results folder."""
    import pandas as pd

    from progressbench.app.results import EVENTS, load_summary
    from progressbench.core.ledger import EventRow
    from progressbench.reports.render import html_report, markdown

    summary = load_summary(results_dir)
    events_path = results_dir / EVENTS
    events = (
        pd.read_csv(events_path)
        if events_path.exists()
        else pd.DataFrame(columns=list(EventRow.__dataclass_fields__))
    )
    (results_dir / "report.md").write_text(markdown(summary))
    (results_dir / "report.html").write_text(html_report(summary, events))
    console.print(f"wrote {results_dir}/report.md and report.html")


@app.command()
def locust(
    transport: Annotated[str, typer.Option(help="One transport to drive from the web UI.")] = "polling",
    profile: Annotated[str, typer.Option(help="Fault profile.")] = "clean",
    time_scale: Annotated[float, typer.Option(help="Multiplies every duration.")] = 1.0,
    jobs_per_user: Annotated[int, typer.Option(help="Jobs per phone before it stops.")] = 1000,
    web_port: Annotated[int, typer.Option(help="Locust web UI port (0: any free port).")] = 8089,
    out: Annotated[Path, typer.Option(help="Where sessions and logs go.")] = Path("results/locust"),
) -> None:
    """Start the stack and open Locust's web UI on the same scenario."""
    from progressbench.app.cell import CELL_ENV, CellPlan
    from progressbench.app.supervisor import Stack, StackSettings
    from progressbench.chaos.profiles import get_profile
    from progressbench.kit.database import free_port
    from progressbench.transports import resolve

    resolve(transport)
    get_profile(profile)
    config = _run_config(timing={"time_scale": time_scale})
    (out / "raw").mkdir(parents=True, exist_ok=True)
    port = web_port or free_port()
    with Stack(StackSettings(run_dir=out, timing=config.timing, database_url=config.database_url)) as stack:
        plan = CellPlan(
            run_id="web",
            transport=transport,
            profile=profile,
            users=1,
            jobs_per_user=jobs_per_user,
            spawn_rate=1,
            seed=config.seed,
            shape=config.job,
            timing=config.timing,
            cell_endpoints=[stack.endpoints()],
            sessions_path=(out / "raw" / "web.jsonl").resolve(),
        )
        env = dict(os.environ, **{CELL_ENV: plan.model_dump_json()})
        locustfile = _locustfile()
        console.print(
            f"Locust web UI: http://127.0.0.1:{port}  (sessions -> {plan.sessions_path}); Ctrl-C to stop"
        )
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(locustfile),
                "--web-host",
                "127.0.0.1",
                "--web-port",
                str(port),
            ],
            env=env,
            # Its own session: a terminal's Ctrl-C reaches only us (Locust would print a traceback
            # if it came mid start-up), and we stop Locust with SIGTERM, which it handles in full.
            start_new_session=True,
        )
        try:
            proc.wait()
        except KeyboardInterrupt:
            terminate(proc, grace_s=15)


@app.command("chaos-proxy")
def chaos_proxy(
    port: Annotated[int, typer.Option(help="API port (Toxiproxy's default 8474; 0: any free port).")] = 8474,
    host: Annotated[str, typer.Option(help="API host.")] = "127.0.0.1",
    config: Annotated[Path | None, typer.Option(help="Proxies to create (/populate format).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for toxicity rolls and jitter.")] = None,
) -> None:
    """Run the Toxiproxy-compatible chaos proxy standalone, until Ctrl-C."""
    args = [sys.executable, "-m", "progressbench.chaos.proxy", "--host", host, "--port", str(port)]
    if config is not None:
        args += ["--config", str(config)]
    if seed is not None:
        args += ["--seed", str(seed)]
    proc = subprocess.Popen(args)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        terminate(proc, grace_s=15)
        code = proc.returncode
    if code:
        raise typer.Exit(code)


@app.command()
def bench(
    transport: Annotated[str, typer.Argument(help="Transport to load.")] = "polling",
    phones: Annotated[int, typer.Option(help="Concurrent phones.")] = 200,
    jobs_per_user: Annotated[int, typer.Option(help="Jobs per phone.")] = 1,
    time_scale: Annotated[float, typer.Option(help="Time scale.")] = 0.05,
    spawn_rate: Annotated[float, typer.Option(help="Phones started per second.")] = 200.0,
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("results/bench"),
) -> None:
    """Benchmark one transport: phones created per second and per-event latency."""
    from progressbench.app.bench import print_bench, run_bench

    config = _run_config(
        transports=(transport,),
        profiles=("clean",),
        users=phones,
        jobs_per_user=jobs_per_user,
        spawn_rate=spawn_rate,
        out=out,
        timing={"time_scale": time_scale},
    )
    print_bench(run_bench(config, console), console)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # SIGTERM (CI, `timeout`, containers) stops a run the way Ctrl-C does; see app/interrupts.py.
    interrupts.install(lambda note: err.print(f"[yellow]{note}[/]"))
    code = _run_app()
    interrupts.settle()
    sys.exit(code)


def _run_app() -> int:
    """The command's exit code; errors become one line."""
    try:
        code = app(standalone_mode=False)
    except ProgressbenchError as exc:
        err.print(f"[red]error:[/] {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except _ClickException as exc:  # usage errors: click prints them, exit 2
        exc.show()
        return exc.exit_code
    except _Abort:
        return 130
    return code if isinstance(code, int) else 0
