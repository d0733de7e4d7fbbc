"""The `progressbench` command. Errors become one line and an exit code.

Exit codes (RESULTS.md): 0 the run completed (whatever it measured), 2 bad
arguments, 1 the testbed itself failed, 130 interrupted (partial results
are still written). ``check`` exits 1 when a rule or baseline regressed.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from progressbench.app import interrupts
from progressbench.app.configure import model_call_range, run_config, step_range
from progressbench.app.processes import python_module, terminate
from progressbench.core.config import DEFAULT_PROFILES, DEFAULT_TIME_SCALE, benchmark_waves, split_list
from progressbench.core.errors import ProgressbenchError, StackError

_Abort = typer.Abort
try:  # typer >= 0.20 vendors click
    from typer._click.core import ParameterSource
    from typer._click.exceptions import ClickException as _ClickException
except ImportError:  # pragma: no cover - older typer on plain click
    from click.core import ParameterSource  # type: ignore[assignment]
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


TransportsOpt = Annotated[
    str,
    typer.Option(
        "--transports",
        help="Comma list of transports, NAME or NAME:VARIANT (default: every registered transport).",
    ),
]
ProfilesOpt = Annotated[
    str, typer.Option("--profiles", help="Comma list of fault profiles (see `profiles`).")
]


#: Options of `run` a parallel run sets per part instead of passing on.
PER_PART = ("transports", "out", "parallel", "part")


def given_options(ctx: typer.Context, leave_out: tuple[str, ...]) -> list[str]:
    """The options the user gave on the command line, spelled back as arguments (flags as flags).

    A ``run --parallel`` part gets exactly these, so a new option of `run`
    reaches the parts without being listed anywhere.
    """
    args: list[str] = []
    for param in ctx.command.params:
        name = param.name or ""
        if name in leave_out or param.param_type_name != "option":
            continue
        if ctx.get_parameter_source(name) is not ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[name]
        if isinstance(value, bool) and param.secondary_opts:
            args.append(param.opts[0] if value else param.secondary_opts[0])
        elif isinstance(value, bool):
            args += [param.opts[0]] if value else []
        elif value is not None:
            args += [param.opts[0], str(value)]
    return args


@app.command()
def run(
    ctx: typer.Context,
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
    api_concurrency: Annotated[
        int, typer.Option(help="Requests (open streams included) per API instance (Cloud Run default 80).")
    ] = 80,
    max_instances: Annotated[
        int, typer.Option(help="Most instances the autoscaler runs per service (api, worker).")
    ] = 20,
    autoscale: Annotated[
        bool,
        typer.Option(help="Run api and worker behind a round-robin front that starts and stops instances."),
    ] = True,
    step_seconds: Annotated[
        str, typer.Option(help="Step duration range MIN,MAX in seconds at time scale 1.")
    ] = "2,5",
    prices: Annotated[
        Path | None, typer.Option(help="Price table TOML instead of the packaged reports/prices.toml.")
    ] = None,
    model_call: Annotated[
        str,
        typer.Option(
            help="The job's silent model call: MIN,MAX seconds at time scale 1, no progress event "
            "until it returns (0: none)."
        ),
    ] = "30,90",
    browser_phones: Annotated[
        int,
        typer.Option(
            help="Phones of each sse:browser cell that are headless-Chromium pages (the rest run the "
            "Python client)."
        ),
    ] = 4,
    session_deadline: Annotated[
        float,
        typer.Option(
            help="Seconds (at time scale 1) a phone waits for its result before it gives up; "
            "scaled like every duration.",
            min=1.0,
        ),
    ] = 300.0,
    parallel: Annotated[
        int,
        typer.Option(
            help="Split the transports over this many child runs, each with its own stack, at once; "
            "results merged into OUT (parts in OUT/parts/K). On a small machine the parts compete for "
            "its CPU: see `saturated` in the results."
        ),
    ] = 1,
    part: Annotated[
        bool, typer.Option("--part", hidden=True, help="Run as one part of a --parallel run: no report.")
    ] = False,
) -> None:
    """Run the (transport × profile) matrix under Locust and write a report."""
    low, high = step_range(step_seconds)
    waves = [w.model_dump() for w in benchmark_waves(model_call_range(model_call))]
    config = run_config(
        transports=split_list(transports) or None,
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
        api_concurrency=api_concurrency,
        max_instances=max_instances,
        autoscale=autoscale,
        job={"step_seconds_min": low, "step_seconds_max": high, "waves": waves},
        timing={"time_scale": time_scale, "session_deadline_s": session_deadline},
        prices=prices,
        browser_phones=browser_phones,
        parallel=parallel,
    )
    from progressbench.app.progress_ui import RichRunView
    from progressbench.app.run import execute
    from progressbench.app.tables import cells_table

    if part:  # a part whose parent is killed outright stops too (see interrupts.stop_when_parent_dies)
        interrupts.stop_when_parent_dies()
    if config.parallel > 1:
        from progressbench.app.parallel import execute_parallel

        outcome = execute_parallel(config, given_options(ctx, PER_PART), RichRunView(console))
    else:
        outcome = execute(config, RichRunView(console), report=not part)
    console.print(cells_table(outcome.summary.cells))
    for cell in outcome.summary.cells:
        if cell.saturated and cell.saturation is not None:
            err.print(
                f"[yellow]saturated: {cell.label} measured this machine's capacity, not the pattern "
                f"({'; '.join(cell.saturation.reasons)})[/]"
            )
    console.print(f"results: {outcome.out}/summary.json, report: {outcome.out}/report.html")
    for problem in outcome.problems:
        err.print(f"[red]error:[/] {problem}", highlight=False)
    if outcome.interrupted:
        raise typer.Exit(130)
    if outcome.problems:
        raise StackError(f"{len(outcome.problems)} part(s) of the run failed; what they wrote is merged")
    if empty := outcome.empty_cells():
        raise StackError(
            f"no phone session was collected for {', '.join(c.label for c in empty)}: the testbed failed "
            f"to drive the phones (see {outcome.logs}/locust-*.log); what was collected is written"
        )
    if not outcome.complete:
        short = [c.label for c in outcome.short_cells()]
        err.print(
            f"[yellow]note: cells without every session: {', '.join(short) or 'none'} (see "
            f"session_outcomes in summary.json and {outcome.logs}/locust-*.log)[/]"
        )


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
    from progressbench.app.tables import endpoints_table

    config = run_config(
        database_url=database_url, worker_instances=worker_instances, timing={"time_scale": time_scale}
    )
    settings = StackSettings(
        run_dir=run_dir,
        timing=config.timing,
        database_url=config.database_url,
        worker_instances=config.worker_instances,
    )
    with Stack(settings) as stack:
        console.print(endpoints_table(stack.endpoints(), stack.database_url))
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
        if profile.conditions is not None:
            for key, value in profile.conditions.model_dump(exclude_defaults=True).items():
                console.print(f"   server condition (whole cell): {key} = {value}")
        for source in profile.sources:
            console.print(f"   [dim]source: {source}[/]")


@app.command()
def check(
    results_dir: Annotated[Path, typer.Argument(help="A results folder (or its summary.json).")],
    baseline: Annotated[
        Path | None,
        typer.Option(
            help="A previous run to compare against: its folder, a saved baseline, or a summary.json."
        ),
    ] = None,
    rules: Annotated[Path | None, typer.Option(help="A TOML rules file (default: built-in rules).")] = None,
    junit: Annotated[
        Path | None, typer.Option(help="Also write the verdicts as JUnit XML (one testcase per rule × cell).")
    ] = None,
    summary_md: Annotated[
        Path | None,
        typer.Option(
            "--summary-md",
            help="Also write a Markdown summary for a PR comment; appended when the file exists "
            "(e.g. $GITHUB_STEP_SUMMARY).",
        ),
    ] = None,
) -> None:
    """Judge results against rules (and a baseline); exit 1 on any regression."""
    from progressbench.app.judging import judge, write_ci_files
    from progressbench.app.tables import verdicts_table

    judgement = judge(results_dir, baseline, rules)
    if judgement.other_machine:
        err.print("[yellow]warning: baseline comes from another machine; latency comparisons may mislead[/]")
    console.print(verdicts_table(f"progressbench check {results_dir}", judgement.verdicts))
    if judgement.partial:
        err.print("[yellow]warning: these results are partial (the run was interrupted or cut short)[/]")
    for written in write_ci_files(judgement, results_dir, junit, summary_md):
        console.print(f"wrote {written}")
    if failed := judgement.failed:
        if warning := judgement.saturation_warning():
            err.print(f"[yellow]warning: {warning}[/]")
        err.print(f"[red]{len(failed)} check(s) failed[/]")
        raise typer.Exit(1)
    console.print(f"[green]all {len(judgement.verdicts)} checks hold[/]")


baseline_app = typer.Typer(no_args_is_help=True, help="Keep a run as the baseline `check --baseline` reads.")
app.add_typer(baseline_app, name="baseline")


@baseline_app.command("save")
def baseline_save(
    results_dir: Annotated[Path, typer.Argument(help="A complete results folder.")],
    to: Annotated[Path, typer.Option(help="The baseline folder to write.")] = Path(".progressbench/baseline"),
) -> None:
    """Store a run's summary.json, sessions.csv and events.csv as a baseline folder."""
    from progressbench.app.comparing import save_baseline

    folder = save_baseline(results_dir, to)
    console.print(
        f"baseline saved in {folder}; use it with `progressbench check RESULTS --baseline {folder}`"
    )


@app.command()
def compare(
    base: Annotated[
        Path, typer.Argument(help="The earlier run: a results folder, a baseline or a summary.json.")
    ],
    new: Annotated[Path, typer.Argument(help="The later run: a results folder.")],
    out: Annotated[
        Path | None, typer.Option(help="Where compare.md and compare.html go (default: NEW's folder).")
    ] = None,
) -> None:
    """Per cell, what moved between two runs, by how much, and whether it is outside the noise."""
    from rich.markup import escape

    from progressbench.app.comparing import compare_folders
    from progressbench.reports.compare import headline, sentence

    target = out if out is not None else (new if new.is_dir() else new.parent)
    comparison, md_path, html_path = compare_folders(base, new, target)
    for warning in comparison.warnings:
        err.print(f"[yellow]warning: {warning}[/]")
    console.print(headline(comparison))
    for cell in comparison.cells:
        for move in cell.moves:
            if move.significant:
                colour = "red" if move.direction == "worse" else "green"
                console.print(f"  [{colour}]{escape(sentence(cell, move))}[/]", highlight=False)
    console.print(f"wrote {md_path} and {html_path}")


@app.command()
def report(
    results_dir: Annotated[Path, typer.Argument(help="A results folder to re-render.")],
    baseline: Annotated[
        Path | None, typer.Option(help="Also compare with this earlier run (compare.html, linked).")
    ] = None,
) -> None:
    """Re-render report.md and report.html from a results folder."""
    from progressbench.app.rendering import render_folder

    if baseline is not None:
        from progressbench.app.comparing import compare_folders

        compare_folders(baseline, results_dir, results_dir)
    render_folder(results_dir)
    extra = f", compare.md and compare.html (against {baseline})" if baseline is not None else ""
    console.print(f"wrote {results_dir}/report.md and report.html{extra}")


@app.command()
def locust(
    transport: Annotated[str, typer.Option(help="One transport to drive from the web UI.")] = "polling",
    profile: Annotated[str, typer.Option(help="Fault profile.")] = "clean",
    time_scale: Annotated[float, typer.Option(help="Multiplies every duration.")] = 1.0,
    jobs_per_user: Annotated[int, typer.Option(help="Jobs per phone before it stops.")] = 1000,
    web_port: Annotated[int, typer.Option(help="Locust web UI port (0: any free port).")] = 8089,
    out: Annotated[Path, typer.Option(help="Where sessions and logs go.")] = Path("results/locust"),
    master: Annotated[
        bool, typer.Option(help="Run Locust as a master: phones run in `locust-worker` processes.")
    ] = False,
    master_bind_host: Annotated[
        str, typer.Option(help="With --master: the address workers connect to (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    master_port: Annotated[int, typer.Option(help="With --master: Locust's master port.")] = 5557,
) -> None:
    """Start the stack and open Locust's web UI on the same scenario."""
    from progressbench.app.webui import serve_web_ui

    config = run_config(timing={"time_scale": time_scale})
    serve_web_ui(
        config,
        transport,
        profile,
        jobs_per_user,
        web_port,
        out,
        announce=console.print,
        master=(master_bind_host, master_port) if master else None,
    )


@app.command("locust-worker")
def locust_worker(
    plan: Annotated[Path, typer.Option(help="The plan.json `locust --master` wrote (copy it to this host).")],
    master_host: Annotated[str, typer.Option(help="Where the Locust master listens.")] = "127.0.0.1",
    master_port: Annotated[int, typer.Option(help="Locust's master port.")] = 5557,
) -> None:
    """A Locust worker whose phones run the plan's scenario against its stack URLs, for a remote master."""
    from progressbench.app.webui import serve_worker

    code = serve_worker(plan, master_host, master_port)
    if code:
        raise typer.Exit(code)


@app.command("chaos-proxy")
def chaos_proxy(
    port: Annotated[int, typer.Option(help="API port (Toxiproxy's default 8474; 0: any free port).")] = 8474,
    host: Annotated[str, typer.Option(help="API host.")] = "127.0.0.1",
    config: Annotated[Path | None, typer.Option(help="Proxies to create (/populate format).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for toxicity rolls and jitter.")] = None,
) -> None:
    """Run the Toxiproxy-compatible chaos proxy standalone, until Ctrl-C."""
    args = [*python_module("progressbench.chaos.proxy"), "--host", host, "--port", str(port)]
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
    all_benchmarks: Annotated[
        bool,
        typer.Option(
            "--all", help="Run every script in benchmarks/ and write bench.json with anchors and ratios."
        ),
    ] = False,
) -> None:
    """Benchmark one transport (phones created per second, per-event latency), or everything with --all."""
    if all_benchmarks:
        from progressbench.app.bench_all import bench_all
        from progressbench.app.tables import bench_table

        figures, runs = bench_all(out, Path.cwd())
        console.print(bench_table(figures))
        for script in runs:
            if script.returncode != 0:
                state = (
                    "ran out of its time budget" if script.returncode is None else f"exit {script.returncode}"
                )
                err.print(f"[yellow]{script.benchmark}: {state} (log: {script.log})[/]")
        console.print(f"figures: {out}/bench.json")
        return
    from progressbench.app.bench import print_bench, run_bench

    config = run_config(
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
