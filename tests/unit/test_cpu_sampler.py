"""The cell's CPU sampler finds a target's whole process tree, grandchildren included."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from progressbench.app import cpu_sampler
from progressbench.app.cpu_sampler import CpuSampler, Target
from tests.helpers import wait_for

#: A parent that starts a busy child and waits: the sampler is pointed at the parent only.
TREE = (
    "import subprocess, sys; "
    "kid = subprocess.Popen([sys.executable, '-c', 'while True: pass']); "
    "print(kid.pid, flush=True); kid.wait()"
)


@pytest.fixture
def tree() -> Iterator[tuple[int, int]]:
    parent = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        kid = int(parent.stdout.readline())
        yield parent.pid, kid
    finally:
        parent.kill()
        parent.wait(timeout=10)
        if parent.stdout is not None:
            parent.stdout.close()
        with contextlib.suppress(ProcessLookupError):  # the busy child outlives its killed parent
            os.kill(kid, signal.SIGKILL)


def test_a_target_with_children_brings_its_descendants_and_their_cpu(tree: tuple[int, int]) -> None:
    parent, kid = tree
    with CpuSampler(
        lambda: [Target("generator", "locust", parent, children=True)], interval_s=0.1
    ) as sampler:
        wait_for(
            lambda: any(s.name.endswith(f"-{kid}") and len(s.samples) >= 3 for s in sampler.series()),
            10,
            "the child's samples",
        )
    series = {s.name: s for s in sampler.series()}
    busy = next(s for name, s in series.items() if name.endswith(f"-{kid}"))
    assert busy.group == "generator"
    assert busy.name.startswith("locust/")
    assert max(busy.samples) > 20.0  # a spinning loop, not an idle parent's zeros
    # every series lines up with the machine's timeline (the busiest stretch is read across them)
    machine = sampler.machine()
    assert all(s.first_tick + len(s.samples) <= len(machine) for s in series.values())


def test_the_process_table_read_without_proc_finds_the_same_tree(
    tree: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    parent, kid = tree
    from_proc = cpu_sampler._descendants(cpu_sampler._parents(), parent)
    monkeypatch.setattr(cpu_sampler, "PROC", Path("/nonexistent-proc"))
    from_psutil = cpu_sampler._descendants(cpu_sampler._parents(), parent)
    assert from_proc == from_psutil == [kid]
