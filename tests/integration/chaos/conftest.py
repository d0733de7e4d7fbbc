"""Fixtures: one chaos proxy *process* per session, driven through progressbench.chaos.client.

The server runs as ``python -m progressbench.chaos.proxy --port 0`` (so the CLI, its ready
line and its SIGTERM shutdown are exercised too) on its own process, which
also keeps its timing apart from the test's event loop. Each test makes its
own uniquely named proxies; teardown resets the server and deletes them.
``toxiproxy_url`` is the same for a real Toxiproxy binary, when one is given
(``TOXIPROXY_BIN``); without it the tests that use it skip and say why.
Both serve ``/metrics`` (``--proxy-metrics`` / ``-proxy-metrics``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from progressbench.chaos.client import AsyncProxyControl, ProxyControl

from tests.helpers import UNIT
from tests.integration.chaos.proxy_harness import Clients, Servers
from tests.integration.chaos.proxy_process import start_proxy_process, stop_proxy_process
from tests.integration.chaos.toxiproxy_process import (
    missing_reason,
    start_toxiproxy,
    stop_toxiproxy,
    toxiproxy_binary,
)


@pytest.fixture(scope="session")
def chaos_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a chaos proxy process shared by the session; it must exit 0 on SIGTERM."""
    log_path = tmp_path_factory.mktemp("chaos") / "chaos-proxy.log"
    process, url = start_proxy_process(
        "--host", "127.0.0.1", "--port", "0", "--proxy-metrics", log_path=log_path
    )
    try:
        yield url
    finally:
        code = stop_proxy_process(process)
    assert code == 0, f"chaos proxy exited {code}; log:\n{log_path.read_text()}"


@pytest.fixture(scope="session")
def toxiproxy_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real ``toxiproxy-server`` shared by the session; skips when there is none."""
    binary = toxiproxy_binary()
    if binary is None:
        pytest.skip(missing_reason())
    log_path = tmp_path_factory.mktemp("toxiproxy") / "toxiproxy.log"
    process, url = start_toxiproxy(binary, "-proxy-metrics", log_path=log_path)
    try:
        yield url
    finally:
        code = stop_toxiproxy(process)
    assert code == 0, f"toxiproxy exited {code}; log:\n{log_path.read_text()}"


def managed_control(url: str) -> Iterator[ProxyControl]:
    """The adapter on ``url``; afterwards the server is reset and every proxy deleted."""
    ctl = ProxyControl(url, timeout=10 * UNIT)
    try:
        yield ctl
    finally:
        ctl.reset()
        for name in ctl.proxies():
            ctl.delete_proxy(name)


@pytest.fixture
def control(chaos_url: str) -> Iterator[ProxyControl]:
    """The adapter on the bundled proxy (reset afterwards)."""
    yield from managed_control(chaos_url)


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
