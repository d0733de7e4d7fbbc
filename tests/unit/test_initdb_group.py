"""A stop signal while initdb runs takes initdb's whole process tree down, not initdb alone.

initdb runs ``postgres --boot`` under a shell. ``subprocess.run`` SIGKILLs
only its own child when interrupted, and does not wait: a CI job cancelled
during start-up left the bootstrap backend behind (seen in CI, 2026-12-01).
Here a shell with a child of its own stands in for initdb, and the
interruption is a signal handled in the main thread, as the CLI's is.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import threading
from collections.abc import Iterator
from types import FrameType

import psutil
import pytest

from progressbench.kit.database import _run_group
from tests.helpers import wait_for


class Stopped(BaseException):
    """What the CLI's handler raises (KeyboardInterrupt), under a name no one else raises."""


@pytest.fixture
def stop_on_usr1() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Stopped

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, previous)


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_an_interrupted_run_kills_and_reaps_the_whole_tree(stop_on_usr1: None) -> None:
    me = psutil.Process()
    tree: list[int] = []
    # This test's processes only: a test process may have other children (a session's Postgres).
    mark = f"60.{secrets.randbelow(10**6):06d}"

    def interrupt_once_the_grandchild_runs() -> None:
        def grandchild() -> list[int] | None:
            kids = [k.pid for k in me.children(recursive=True) if mark in " ".join(_cmdline(k))]
            return kids if len(kids) >= 2 else None

        tree.extend(wait_for(grandchild, 20, "the stand-in's own child"))
        me.send_signal(signal.SIGUSR1)

    trigger = threading.Thread(target=interrupt_once_the_grandchild_runs, daemon=True)
    trigger.start()
    with pytest.raises(Stopped):
        _run_group(["sh", "-c", f"sleep {mark} & wait"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    trigger.join(timeout=20)
    assert len(tree) >= 2
    wait_for(lambda: not any(_alive(pid) for pid in tree), 10, "initdb's stand-in and its child to be gone")


def test_a_run_to_its_end_gives_the_exit_status() -> None:
    assert _run_group(["sh", "-c", "exit 3"]) == 3
