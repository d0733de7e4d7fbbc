"""The chaos controller on a real stack: faults applied, and always cleaned up."""

from __future__ import annotations

from pathlib import Path

import pytest
from progressbench.chaos.client import ProxyControl
from progressbench.chaos.controller import ChaosController, validate_against
from progressbench.chaos.profiles import FaultStep, Profile

from progressbench.app.supervisor import Stack
from progressbench.core.errors import UnsupportedToxic
from tests.helpers import wait_for
from tests.integration.chaos.proxy_process import start_proxy_process, stop_proxy_process
from tests.integration.chaos.toxiproxy_process import (
    missing_reason,
    start_toxiproxy,
    stop_toxiproxy,
    toxiproxy_binary,
)
from tests.integration.conftest import running_stack


def long_profile() -> Profile:
    return Profile(
        name="long",
        description="",
        cells=2,
        stagger=0,
        steps=(
            FaultStep.model_validate({"at": 0, "fault": "blackhole", "for": 600}),
            FaultStep.model_validate({"at": 0, "fault": "down", "for": 600}),
            FaultStep.model_validate({"at": 0, "fault": "latency", "attributes": {"latency": 1000}}),
        ),
    )


def test_stopping_mid_window_removes_every_toxic_and_reenables_proxies(stack: Stack) -> None:
    """A run interrupted inside a fault window never leaves a proxy poisoned."""
    assert stack.control is not None
    names = stack.cell_proxy_names(2)
    controller = ChaosController(
        control=stack.control,
        profile=long_profile(),
        time_scale=1.0,
        cell_proxies=names,
        dispatch_proxy=stack.dispatch_proxy,
        server_fault=lambda step: (0, 0),
        progress=lambda: 0,
    )
    controller.start()
    proxies = [n for cell in names for n in cell]
    wait_for(lambda: all(len(stack.control.toxics(p)) == 2 for p in proxies), 10, "toxics applied")  # type: ignore[union-attr]
    assert not any(stack.control.get_proxy(p).enabled for p in proxies)
    windows = controller.stop()
    assert all(stack.control.toxics(p) == [] for p in proxies)
    assert all(stack.control.get_proxy(p).enabled for p in proxies)
    assert len(windows) == 6 and all(w.end_wall_ns >= w.start_wall_ns for w in windows)
    assert controller.errors == []


def test_a_proxy_server_without_a_toxic_is_reported_before_the_run() -> None:
    """Profiles are checked against the proxy server first: unsupported toxics are an error."""

    class NoMobileToxics:
        def require(self, toxic: str) -> None:
            if toxic in {"blackhole", "idle_timeout", "pause_reader"}:
                raise UnsupportedToxic(f"the proxy server does not implement the {toxic!r} toxic")

    with pytest.raises(UnsupportedToxic, match="blackhole"):
        validate_against(NoMobileToxics(), [long_profile()])  # type: ignore[arg-type]


def test_runs_can_drive_an_external_toxiproxy_api(tmp_path: Path, database_url: str) -> None:
    """With toxiproxy_url the stack drives that server and removes its proxies at the end."""
    proc, url = start_proxy_process("--port", "0", log_path=tmp_path / "external-proxy.log")
    try:
        control = ProxyControl(url)
        with running_stack(tmp_path, database_url, toxiproxy_url=url, transports=("polling",)) as stack:
            assert stack.chaos_process is None
            stack.cell_endpoints(2)
            assert {"pb-dispatch", "pb-c0-api", "pb-c1-api"} <= set(control.proxies())
        wait_for(lambda: not control.proxies(), 5, "the stack's proxies to be deleted")
        assert control.proxies() == {}
    finally:
        stop_proxy_process(proc)


def test_runs_can_drive_a_real_toxiproxy(tmp_path: Path, database_url: str) -> None:
    """The same against a real Toxiproxy 2.12, which refuses the mobile toxics up front."""
    binary = toxiproxy_binary()
    if binary is None:
        pytest.skip(missing_reason())
    proc, url = start_toxiproxy(binary, log_path=tmp_path / "toxiproxy.log")
    try:
        control = ProxyControl(url)
        with pytest.raises(UnsupportedToxic, match="blackhole"):
            validate_against(control, [long_profile()])
        with running_stack(tmp_path, database_url, toxiproxy_url=url, transports=("polling",)) as stack:
            assert stack.chaos_process is None
            stack.cell_endpoints(2)
            assert {"pb-dispatch", "pb-c0-api", "pb-c1-api"} <= set(control.proxies())
        wait_for(lambda: not control.proxies(), 5, "the stack's proxies to be deleted")
    finally:
        assert stop_toxiproxy(proc) == 0
