"""`progressbench locust`: the stack plus Locust's own web UI on one transport and profile.

Locust runs as a child process (it patches its process for gevent) and finds
the phones in ``loadtests/locustfile.py`` wherever the package is installed.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from progressbench.app.cell import CELL_ENV, CellPlan
from progressbench.app.processes import python_module, terminate
from progressbench.app.supervisor import Stack, StackSettings
from progressbench.chaos.profiles import get_profile
from progressbench.core.config import RunConfig
from progressbench.kit.database import free_port
from progressbench.reports.related import LOCUST_DIR
from progressbench.transports import resolve


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
) -> None:
    """Run the stack and Locust's web UI until Ctrl-C; ``announce`` is told where to point a browser."""
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
