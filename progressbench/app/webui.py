"""`progressbench locust`: the stack plus Locust's own web UI on one transport and profile.

Locust runs as a child process (it patches its process for gevent) and finds
the phones in ``loadtests/locustfile.py`` wherever the package is installed.

Distributed (``--master``): Locust runs as a master that holds no phones, and
``progressbench locust-worker`` processes, on this host or others, run them.
A worker needs only the cell's plan (``plan.json``, written beside the
sessions): it names the stack's URLs, and a worker's phones call them as
written, so a worker on another host reaches the stack through whatever
makes those URLs answer there (an SSH tunnel of the same ports, see the
README). Each worker sends every session to the master, which writes them.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from progressbench.app.cell import CELL_ENV, CellPlan
from progressbench.app.processes import python_module, terminate
from progressbench.app.supervisor import Stack, StackSettings
from progressbench.chaos.profiles import get_profile
from progressbench.core.config import RunConfig
from progressbench.core.errors import ConfigError
from progressbench.kit.database import free_port
from progressbench.reports.related import LOCUST_DIR
from progressbench.transports.registry import resolve


def locustfile() -> Path:
    """Where Locust finds the phones, wherever the package is installed (Locust wants a file path)."""
    spec = importlib.util.find_spec("progressbench.loadtests.locustfile")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin)


def serve_web_ui(
    config: RunConfig,
    transport: str,
    profile: str,
    jobs_per_user: int,
    web_port: int,
    out: Path,
    announce: Callable[[str], None],
    master: tuple[str, int] | None = None,
) -> None:
    """Run the stack and Locust's web UI until Ctrl-C; ``announce`` is told where to point a browser.

    ``master``: run Locust as a master bound to (host, port), for ``locust-worker`` processes.
    """
    resolve(transport)
    get_profile(profile)
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
            database_url=stack.database_url,
            locust_stats=(out / LOCUST_DIR / "web").resolve(),
        )
        stats = plan.locust_stats
        assert stats is not None
        stats.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, **{CELL_ENV: plan.model_dump_json()})
        announce(
            f"Locust web UI: http://127.0.0.1:{port}  (sessions -> {plan.sessions_path}; Locust's "
            f"statistics -> {stats}_stats.csv and {stats}.html); Ctrl-C to stop"
        )
        role: list[str] = []
        if master is not None:
            plan_file = (out / "plan.json").resolve()
            plan_file.write_text(plan.model_dump_json(indent=2))
            role = ["--master", "--master-bind-host", master[0], "--master-bind-port", str(master[1])]
            announce(
                f"Locust master on {master[0]}:{master[1]}; start workers with `progressbench locust-worker "
                f"--plan {plan_file} --master-host HOST --master-port {master[1]}` "
                f"(their phones call {plan.cell_endpoints[0]})"
            )
        proc = subprocess.Popen(
            [
                *python_module("locust"),
                "-f",
                str(locustfile()),
                "--web-host",
                "127.0.0.1",
                "--web-port",
                str(port),
                # Locust's own statistics as CSV while it runs (its HTML report: the locustfile's quit hook)
                "--csv",
                str(stats),
                *role,
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


def read_plan(path: Path) -> CellPlan:
    """A cell plan written by ``locust --master`` (``plan.json``); one clear error when it is not one."""
    try:
        return CellPlan.model_validate_json(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the cell plan {path}: {exc.strerror or exc}") from None
    except ValidationError as exc:
        raise ConfigError(
            f"{path} is not a cell plan written by `progressbench locust --master`: {exc}"
        ) from None


def serve_worker(plan_path: Path, master_host: str, master_port: int) -> int:
    """One Locust worker for a ``locust --master`` elsewhere, until its master quits or Ctrl-C; its exit code.

    Its phones run the plan's transport against the plan's URLs; its sessions go to the master.
    """
    plan = read_plan(plan_path)
    env = dict(os.environ, **{CELL_ENV: plan.model_dump_json()})
    argv = [*python_module("locust"), "-f", str(locustfile()), "--worker"]
    argv += ["--master-host", master_host, "--master-port", str(master_port)]
    proc = subprocess.Popen(argv, env=env, start_new_session=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        terminate(proc, grace_s=15)
        return 130
