"""Fixtures: one chaos proxy *process* per session, driven through progressbench.chaos.client.

The server runs as ``python -m progressbench.chaos.proxy --port 0`` (so the CLI, its ready
line and its SIGTERM shutdown are exercised too) on its own process, which
also keeps its timing apart from the test's event loop. Each test makes its
own uniquely named proxies; teardown resets the server and deletes them.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from progressbench.chaos.client import AsyncProxyControl, ProxyControl

from tests.helpers import UNIT
from tests.integration.chaos.proxy_harness import Clients, Servers

REPO = Path(__file__).resolve().parents[3]
READY_PREFIX = "chaos-proxy listening on "


def start_proxy_process(
    *args: str, log_path: Path, pass_fds: tuple[int, ...] = ()
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``python -m progressbench.chaos.proxy`` and wait for its ready line (URL)."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "progressbench.chaos.proxy", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            pass_fds=pass_fds,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    assert process.stdout is not None
    deadline = time.monotonic() + 20 * UNIT
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                stop_proxy_process(process)
                raise AssertionError(f"no ready line from chaos proxy; log:\n{log_path.read_text()}")
            line = process.stdout.readline().decode()
            if line.startswith(READY_PREFIX):
                return process, line[len(READY_PREFIX) :].strip()
            if not line:
                stop_proxy_process(process)
                raise AssertionError(f"chaos proxy exited early; log:\n{log_path.read_text()}")


def stop_proxy_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        code = process.wait(timeout=15 * UNIT)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    if process.stdout is not None:
        process.stdout.close()
    return code


@pytest.fixture(scope="session")
def chaos_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a chaos proxy process shared by the session; it must exit 0 on SIGTERM."""
    log_path = tmp_path_factory.mktemp("chaos") / "chaos-proxy.log"
    process, url = start_proxy_process("--host", "127.0.0.1", "--port", "0", log_path=log_path)
    try:
        yield url
    finally:
        code = stop_proxy_process(process)
    assert code == 0, f"chaos proxy exited {code}; log:\n{log_path.read_text()}"


@pytest.fixture
def control(chaos_url: str) -> Iterator[ProxyControl]:
    """The adapter; afterwards the server is reset and every proxy deleted."""
    ctl = ProxyControl(chaos_url, timeout=10 * UNIT)
    try:
        yield ctl
    finally:
        ctl.reset()
        for name in ctl.proxies():
            ctl.delete_proxy(name)


@pytest.fixture
def actl(control: ProxyControl) -> AsyncProxyControl:
    return AsyncProxyControl(control.url, timeout=10 * UNIT)


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    running = Servers()
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    opened = Clients()
    try:
        yield opened
    finally:
        await opened.close()
