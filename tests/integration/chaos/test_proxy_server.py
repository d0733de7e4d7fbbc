"""Running the proxy: in-process (ChaosProxyServer, serve) and as a process (CLI flags)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from progressbench.chaos.client import AsyncProxyControl, ProxyControl
from progressbench.chaos.proxy import ChaosProxyServer, serve

from tests.helpers import UNIT, wait_for, wait_until
from tests.integration.chaos.proxy_harness import Clients, Servers, echo, outcome, round_trip
from tests.integration.chaos.proxy_process import REPO, start_proxy_process, stop_proxy_process

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def test_in_process_server_serves_and_stops_cleanly(servers: Servers, clients: Clients) -> None:
    """start() serves the API and proxies in this loop; stop() closes live connections (EOF)."""
    upstream = await servers.start(echo)
    async with ChaosProxyServer() as server:
        actl = AsyncProxyControl(server.url, timeout=5 * UNIT)
        proxy = await actl.create_proxy("inproc", upstream)
        reader, writer = await clients.open(proxy)
        assert await round_trip(reader, writer, b"ping", 5) < 1
    assert await outcome(reader, 5) == ("eof", b"")
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(*server.address)


async def test_serve_reports_ready_and_returns_when_stopped() -> None:
    """serve(): ready(url) once listening, config proxies exist, returns when `stop` is set."""
    urls: list[str] = []
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(
            port=0,
            config=[{"name": "cfg", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:9"}],
            ready=urls.append,
            stop=stop,
        )
    )
    try:
        await wait_until(lambda: urls or task.done(), 10, "serve() to report ready", interval=0.01)
        assert urls and urls[0].startswith("http://127.0.0.1:")
        names = await AsyncProxyControl(urls[0], timeout=5 * UNIT).proxies()
        assert list(names) == ["cfg"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 10 * UNIT)


def test_cli_inherits_fd_loads_config_and_exits_on_sigint(tmp_path: Path) -> None:
    """`--fd N --config FILE`: the API is served on the inherited socket with the config's
    proxies; SIGINT exits 0."""
    config = tmp_path / "proxies.json"
    config.write_text(json.dumps([{"name": "svc", "listen": "127.0.0.1:0", "upstream": "x:1"}]))
    with socket.create_server(("127.0.0.1", 0)) as sock:
        sock.set_inheritable(True)
        fd = sock.fileno()
        process, url = start_proxy_process(
            "--fd", str(fd), "--config", str(config), log_path=tmp_path / "log", pass_fds=(fd,)
        )
        try:
            assert url == f"http://127.0.0.1:{sock.getsockname()[1]}"
            assert list(ProxyControl(url, timeout=5 * UNIT).proxies()) == ["svc"]
        finally:
            code = stop_proxy_process(process, signal.SIGINT)
    assert code == 0, (tmp_path / "log").read_text()


def test_cli_rejects_a_bad_config_with_exit_2(tmp_path: Path) -> None:
    """A malformed --config is a one-line error and exit code 2, not a traceback."""
    config = tmp_path / "bad.json"
    config.write_text('[{"name": "no-upstream"}]')
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "progressbench.chaos.proxy",
            "--port",
            "0",
            "--config",
            str(config),
            "--parent-pid",
            str(os.getpid()),
        ],
        cwd=REPO,
        capture_output=True,
        timeout=30 * UNIT,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.decode().strip().splitlines() == [
        "chaos-proxy: proxy config: missing required field: upstream at proxy 1"
    ]


def test_a_proxy_whose_parent_is_killed_hard_exits_and_leaves_no_orphan(tmp_path: Path) -> None:
    """A supervisor SIGKILLed (CI's timeout, the OOM killer) runs no cleanup: the proxy must go itself."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, subprocess, sys, time\n"
            "p = subprocess.Popen([sys.executable, '-m', 'progressbench.chaos.proxy', '--port', '0',"
            " '--parent-pid', str(os.getpid())], stdout=subprocess.PIPE, text=True)\n"
            "print(p.pid, p.stdout.readline().strip(), flush=True)\n"
            "time.sleep(600)\n",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    pid, _, ready = parent.stdout.readline().partition(" ")
    proxy_pid = int(pid)
    assert ready.startswith("chaos-proxy listening on "), ready  # it ran, and serves
    try:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)

        def gone() -> bool:
            try:
                os.kill(proxy_pid, 0)
            except ProcessLookupError:
                return True
            # a zombie is gone for our purpose: it runs nothing and holds no port
            stat = Path(f"/proc/{proxy_pid}/stat")
            return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"

        wait_for(gone, 10 * UNIT, "the orphaned proxy to exit")
    finally:
        parent.stdout.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(proxy_pid, signal.SIGKILL)
