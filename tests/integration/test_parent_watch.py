"""A part of a ``--parallel`` run outlives no parent: killed outright (SIGKILL, the OOM killer),
the parent sends no SIGTERM, so the part must notice by itself and stop the way Ctrl-C stops it.

Real processes, no stack: a wrapper starts a child that installs the CLI's stop handling and
the parent watch, the test SIGKILLs the wrapper, and the child must stop through its handler
(it writes what it was doing, as a part writes its partial results), not run on alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil

from progressbench.app.interrupts import orphaned
from tests.helpers import wait_for

CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from progressbench.app import interrupts

    interrupts.install(lambda note: None)
    interrupts.stop_when_parent_dies(interval_s=0.05)
    out = Path(sys.argv[1])
    out.write_text("running")
    try:
        time.sleep(120)  # the part's matrix
        out.write_text("ran alone to its end")
    except KeyboardInterrupt:
        out.write_text("stopped: partial results written")
    """
)

WRAPPER = textwrap.dedent(
    """
    import subprocess, sys
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
    print(child.pid, flush=True)
    child.wait()
    """
)


def test_a_part_stops_through_its_handler_when_its_parent_is_killed(tmp_path: Path) -> None:
    out = tmp_path / "state"
    wrapper = subprocess.Popen(
        [sys.executable, "-c", WRAPPER, CHILD, str(out)], stdout=subprocess.PIPE, text=True
    )
    child = None
    try:
        assert wrapper.stdout is not None
        child = psutil.Process(int(wrapper.stdout.readline()))
        wait_for(lambda: out.exists() and out.read_text() == "running", 60, "the child to start")
        os.kill(wrapper.pid, signal.SIGKILL)
        wrapper.wait(timeout=10)
        wait_for(
            lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, 30, "the child to stop"
        )
        assert out.read_text() == "stopped: partial results written"
    finally:
        if child is not None and child.is_running():
            child.kill()
        if wrapper.poll() is None:
            wrapper.kill()
            wrapper.wait()
        if wrapper.stdout is not None:
            wrapper.stdout.close()


def test_a_parent_that_is_still_there_is_not_mistaken_for_gone() -> None:
    assert not orphaned(1234, lambda: 1234)
    assert orphaned(1234, lambda: 1)
