"""The chaos proxy as its own process: start it, read its ready line (with a deadline), stop it."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import UNIT

REPO = Path(__file__).resolve().parents[3]
READY_PREFIX = "chaos-proxy listening on "


def start_proxy_process(
    *args: str, log_path: Path, pass_fds: tuple[int, ...] = ()
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``python -m progressbench.chaos.proxy`` and wait for its ready line (URL)."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "progressbench.chaos.proxy", "--parent-pid", str(os.getpid()), *args],
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
