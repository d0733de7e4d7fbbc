"""Choosing the victim of a server fault: on purpose, or not at all."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from progressbench.app.faults import ServerFaults, pick_victim
from progressbench.app.instances import Fleet, Instance
from progressbench.app.metering import MeterBook
from progressbench.core.config import ServiceConfig, Timing
from progressbench.core.errors import StackError


class FakeProcess:
    """Stands in for a live Popen and records every signal it is sent."""

    pid = 4242
    returncode = None

    def __init__(self) -> None:
        self.signals: list[str] = []

    def poll(self) -> None:
        return None

    def send_signal(self, sig: int) -> None:
        self.signals.append(f"signal {sig}")

    def kill(self) -> None:
        self.signals.append("kill")

    def terminate(self) -> None:
        self.signals.append("terminate")

    def wait(self, timeout: float | None = None) -> int:
        return 0


def worker(name: str) -> Instance:
    process: Any = FakeProcess()
    return Instance(name, "worker", process, socket.socket(), Path(name), Path(name))


@pytest.fixture
def workers() -> Any:
    made = [worker("worker-1"), worker("worker-2"), worker("worker-3")]
    yield made
    for instance in made:
        instance.admin.close()


def test_the_victim_holds_the_most_running_jobs(workers: list[Instance]) -> None:
    """Killing the busiest instance is what makes a fault hit jobs mid-flight."""
    assert pick_victim(workers, {"worker-1": 1, "worker-2": 4, "worker-3": 2}).name == "worker-2"


def test_ties_and_idle_workers_go_to_the_first_started(workers: list[Instance]) -> None:
    """Equal counts (or no job anywhere) pick the oldest instance: reproducible, never random."""
    assert pick_victim(workers, {"worker-2": 3, "worker-3": 3}).name == "worker-2"
    assert pick_victim(workers, {}).name == "worker-1"
    assert pick_victim(list(reversed(workers)), {"someone-else": 9}).name == "worker-3"


def test_no_live_worker_is_an_error() -> None:
    with pytest.raises(StackError, match="no live worker"):
        pick_victim([], {"worker-1": 2})


def test_a_failed_lease_query_is_an_error_and_kills_nobody(workers: list[Instance], tmp_path: Path) -> None:
    """When the store cannot say who holds the jobs, the fault fails loudly instead of guessing."""
    fleet = Fleet(tmp_path, startup_timeout_s=1.0)
    service = fleet.add(
        "worker",
        socket.socket(),
        ServiceConfig(role="worker", instance="w", database_url="unused", token_secret="x" * 16),
        "unused",
    )
    service.instances.extend(workers)
    faults = ServerFaults(fleet, MeterBook(), Timing(time_scale=0.01), database_url="not a url")
    try:
        with pytest.raises(StackError, match="cannot tell which worker holds the running jobs"):
            faults.server_fault("sigkill")
    finally:
        service.socket.close()
    assert all(not i.process.signals for i in workers)  # type: ignore[attr-defined]
