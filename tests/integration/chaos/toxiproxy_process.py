"""A real Toxiproxy server (``toxiproxy-server`` 2.12) as a process, when one is installed.

The conformance suite runs against it beside the project's proxy so that the
behaviour pinned in the tests is checked against the program it imitates.
Toxiproxy is not a Python package: the binary is found through the
``TOXIPROXY_BIN`` environment variable or as ``toxiproxy-server`` on PATH
(chaos/README.md says how to build one). Without it the tests that need it
skip, naming what is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx

from tests.helpers import UNIT

TOXIPROXY_BIN_ENV = "TOXIPROXY_BIN"
MISSING = (
    "no real Toxiproxy: set TOXIPROXY_BIN to a toxiproxy-server 2.12 binary or put "
    "toxiproxy-server on PATH (chaos/README.md, 'Checking against a real Toxiproxy')"
)


def missing_reason() -> str:
    """Why there is no binary to run, for a skip message."""
    configured = os.environ.get(TOXIPROXY_BIN_ENV)
    if configured:
        return f"{TOXIPROXY_BIN_ENV}={configured} is not an executable file; {MISSING}"
    return MISSING


def toxiproxy_binary() -> str | None:
    """The configured or installed ``toxiproxy-server``; None if there is none (or it is not runnable)."""
    configured = os.environ.get(TOXIPROXY_BIN_ENV)
    if configured:
        path = Path(configured)
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which("toxiproxy-server")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_toxiproxy(binary: str, *args: str, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``binary`` on a free loopback port and wait until ``/version`` answers; (process, URL).

    Toxiproxy does not report a port it picked itself, so a free port is chosen
    here; if another process takes it first, the start is retried on a new one.
    """
    for _ in range(3):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [binary, "-host", "127.0.0.1", "-port", str(port), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "LOG_LEVEL": "warn"},
            )
        deadline = time.monotonic() + 10 * UNIT
        while process.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/version", timeout=1).status_code == 200:
                    return process, url
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        stop_toxiproxy(process)
    raise AssertionError(f"{binary} did not start; log:\n{log_path.read_text()}")


def stop_toxiproxy(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM (Toxiproxy shuts down gracefully), SIGKILL after a deadline; the exit code."""
    if process.poll() is None:
        process.terminate()
    try:
        return process.wait(timeout=10 * UNIT)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()
