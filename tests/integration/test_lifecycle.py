"""Stopping `progressbench` the way CI, `timeout`, containers and people do: promptly, leaving nothing behind.

Each test starts the real command in a session of its own (as a terminal
would), watches its whole process tree while it runs, sends stop signals,
and then requires that the command exited within a bound and that no
process it ever started — services, chaos proxy, Locust, session agent,
embedded PostgreSQL and its workers — is still alive.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.helpers import UNIT, wait_for

CLI = [sys.executable, "-m", "progressbench"]
#: Environment variable that marks every process a test's command starts (children inherit it).
MARK = "PROGRESSBENCH_LIFECYCLE_TEST"
#: From the first stop signal to the command's exit, teardown and partial results included.
PROMPT_S = 30.0


class Watched:
    """A command, and every descendant it has had (sampled every 50 ms while it runs)."""

    def __init__(self, args: list[str], folder: Path) -> None:
        self.mark = uuid.uuid4().hex
        self.stdout = folder / "stdout.txt"
        self.stderr = folder / "stderr.txt"
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                [*CLI, *args],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env={**os.environ, MARK: self.mark, "COLUMNS": "160"},
                start_new_session=True,
            )
        self.seen: dict[int, psutil.Process] = {}
        #: Command line of each process seen, read when first seen (a dead process has none).
        self.names: dict[int, str] = {}
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        root = psutil.Process(self.proc.pid)
        while not self._done.is_set() and self.proc.poll() is None:
            try:
                for child in root.children(recursive=True):
                    if child.pid not in self.seen:
                        self.seen[child.pid] = child
                    # a child first seen between fork and exec still shows its parent's command line:
                    # keep every command line a pid has shown
                    with contextlib.suppress(psutil.Error):
                        shown = _command(child)
                        if shown not in self.names.get(child.pid, ""):
                            self.names[child.pid] = f"{self.names.get(child.pid, '')}\n{shown}".strip()
            except psutil.Error:
                pass
            self._done.wait(0.05)

    def output(self) -> str:
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")

    def commands(self) -> str:
        """Every process seen, one command line each (for assertions about what ran)."""
        return "\n".join(self.names.values())

    def signal(self, sig: signal.Signals, group: bool = False) -> None:
        if group:  # what a terminal's Ctrl-C does: the whole foreground process group
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)

    def wait_exit(self, timeout: float, keep_sending: signal.Signals | None = None) -> float:
        """Seconds until exit; with ``keep_sending``, that signal every 0.1 s meanwhile (impatience)."""
        start = time.monotonic()
        deadline = start + timeout * UNIT
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"still running {timeout * UNIT:.0f}s after the stop signal")
            if keep_sending is not None:
                self.signal(keep_sending)
            time.sleep(0.1)
        self._done.set()
        self._sampler.join(timeout=5)
        return time.monotonic() - start

    def left_behind(self) -> list[str]:
        """Processes of this command still alive: descendants seen, plus anything carrying its mark."""
        alive = {p.pid: p for p in self.seen.values() if _alive(p)}
        for process in psutil.process_iter():
            try:
                if process.pid not in alive and process.environ().get(MARK) == self.mark and _alive(process):
                    alive[process.pid] = process
            except psutil.Error:
                continue
        return [_describe(p) for p in alive.values()]

    def close(self) -> None:
        """After a failure: take everything down, so one broken test does not starve the next."""
        self._done.set()
        for process in self.seen.values():
            if _alive(process):
                try:
                    process.kill()
                except psutil.Error:
                    pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _command(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline()) or process.name()
    except psutil.Error:
        return f"pid {process.pid}"


def _describe(process: psutil.Process) -> str:
    try:
        return f"{process.pid} (parent {process.ppid()}): {' '.join(process.cmdline())[:120]}"
    except psutil.Error:
        return f"{process.pid}"


@pytest.fixture
def watch(tmp_path: Path) -> Iterator[list[Watched]]:
    started: list[Watched] = []
    yield started
    for watched in started:
        watched.close()


def _started(watched: Watched, text: str, timeout: float) -> None:
    def ready() -> bool:
        if watched.proc.poll() is not None:
            raise AssertionError(f"exited early with {watched.proc.returncode}:\n{watched.output()}")
        return text in watched.output()

    wait_for(ready, timeout, repr(text), interval=0.1)


def stop_with_sigterm(run: Watched, out: Path) -> dict[str, Any]:
    """SIGTERM the run: it exits 130 within the bound, leaves no child, and writes an interrupted,
    incomplete summary (returned)."""
    run.signal(signal.SIGTERM)
    took = run.wait_exit(PROMPT_S)
    assert run.left_behind() == [], f"after {took:.1f}s"
    assert run.proc.returncode == 130, run.output()
    assert "Traceback" not in run.output()
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False and summary["interrupted"] is True
    return summary


def long_run(out: Path, transports: str, *options: str) -> list[str]:
    """A run of two phones × 30 jobs of polling-like work: ~75 s at this scale (per part), so only
    a prompt stop ends it within the test's bound."""
    return [
        "run",
        *options,
        "--transports",
        transports,
        "--profiles",
        "clean",
        "--users",
        "2",
        "--jobs-per-user",
        "30",
        "--time-scale",
        "0.05",
        "--out",
        str(out),
    ]


def test_sigterm_mid_cell_stops_the_run_and_writes_partial_results(
    tmp_path: Path, watch: list[Watched]
) -> None:
    """SIGTERM during a cell: exit 130 within the bound, summary.json marked incomplete, no child left."""
    out = tmp_path / "results"
    run = Watched(long_run(out, "polling"), tmp_path)
    watch.append(run)
    locust_log = out / "logs" / "locust-polling__clean.log"
    wait_for(
        lambda: (
            run.proc.poll() is not None
            or (locust_log.exists() and "All users spawned" in locust_log.read_text(errors="replace"))
        ),
        120,
        "the phones to start",
        interval=0.1,
    )
    assert run.proc.poll() is None, run.output()
    wait_for(lambda: (out / "raw" / "polling__clean.jsonl").exists(), 30, "a first session", interval=0.1)
    summary = stop_with_sigterm(run, out)
    [cell] = summary["cells"]
    assert 0 < cell["sessions"] < 60 and cell["complete"] is False
    # every planned session accounted for: recorded (the sessions in flight, when their agent
    # flushed them, as interrupted) or counted as unreported
    outcomes = cell["session_outcomes"]
    assert cell["sessions_planned"] == sum(outcomes.values()) == 60, outcomes
    assert outcomes["unreported"] == 60 - cell["sessions"], outcomes
    assert "postgres" in run.commands() and "progressbench.loadtests.agent" in run.commands()


def test_up_survives_a_storm_of_stop_signals_without_orphans(tmp_path: Path, watch: list[Watched]) -> None:
    """SIGTERM, then SIGTERM again and again during the teardown: it still finishes, leaving nothing."""
    up = Watched(["up", "--time-scale", "0.05", "--run-dir", str(tmp_path / "up")], tmp_path)
    watch.append(up)
    _started(up, "Ctrl-C to stop", 120)
    up.signal(signal.SIGTERM)
    up.wait_exit(PROMPT_S, keep_sending=signal.SIGTERM)

    assert up.left_behind() == []
    assert up.proc.returncode == 0, up.output()
    assert "Traceback" not in up.output()
    assert "already stopping" in up.output()
    assert "postgres" in up.commands() and "progressbench.chaos.proxy" in up.commands()


def test_sigterm_during_start_up_stops_what_was_started(tmp_path: Path, watch: list[Watched]) -> None:
    """A CI job cancelled while the stack is still coming up: exit 130, Postgres and the rest gone."""
    up = Watched(["up", "--time-scale", "0.05", "--run-dir", str(tmp_path / "up")], tmp_path)
    watch.append(up)
    wait_for(lambda: "bin/postgres" in up.commands(), 120, "the embedded Postgres to start", interval=0.05)
    up.signal(signal.SIGTERM)
    up.wait_exit(PROMPT_S)

    assert up.left_behind() == []
    assert up.proc.returncode == 130, up.output()
    assert "Ctrl-C to stop" not in up.output() and "Traceback" not in up.output()


def test_locust_stopped_with_ctrl_c_then_sigterm_leaves_no_postgres(
    tmp_path: Path, watch: list[Watched]
) -> None:
    """Ctrl-C to the terminal's process group, then SIGTERMs: Locust, its agent and Postgres are all gone."""
    web = Watched(
        [
            "locust",
            "--transport",
            "polling",
            "--time-scale",
            "0.05",
            "--web-port",
            "0",
            "--out",
            str(tmp_path),
        ],
        tmp_path,
    )
    watch.append(web)
    _started(web, "Locust web UI", 120)
    wait_for(lambda: "progressbench.loadtests.agent" in web.commands(), 60, "Locust's session agent")
    [locust] = [web.seen[pid] for pid, command in web.names.items() if "-m locust" in command]
    web.signal(signal.SIGINT, group=True)
    wait_for(lambda: not _alive(locust), 30, "Locust to stop")  # the stack's teardown starts now
    web.wait_exit(PROMPT_S, keep_sending=signal.SIGTERM)

    assert web.left_behind() == []
    assert web.proc.returncode in (0, 130), web.output()
    assert "Traceback" not in web.output()
    assert "postgres" in web.commands()


def test_sigterm_to_a_parallel_run_stops_every_part_and_merges_what_they_wrote(
    tmp_path: Path, watch: list[Watched]
) -> None:
    """`run --parallel 2` stopped by SIGTERM: every part stops, its partial cell is merged, the run is
    marked interrupted, and no process of either part (stack, Postgres, Locust) is left."""
    out = tmp_path / "results"
    run = Watched(long_run(out, "polling,polling:log", "--parallel", "2"), tmp_path)
    watch.append(run)
    raws = [
        out / "parts" / "1" / "raw" / "polling__clean.jsonl",
        out / "parts" / "2" / "raw" / "polling-log__clean.jsonl",
    ]
    wait_for(
        lambda: run.proc.poll() is not None or all(raw.exists() for raw in raws),
        180,
        "a first session in each part",
        interval=0.1,
    )
    assert run.proc.poll() is None, run.output()
    summary = stop_with_sigterm(run, out)
    assert [(c["transport"], c["complete"]) for c in summary["cells"]] == [
        ("polling", False),
        ("polling:log", False),
    ]
    assert all(0 < c["sessions"] < 60 for c in summary["cells"])
    assert run.commands().count("progressbench.loadtests.agent") >= 2
