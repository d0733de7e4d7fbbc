"""The supervisor's child processes: one way to start them, one way to stop them.

Every child (service instance, chaos proxy, job runner task) starts through
:func:`spawn`: output appended to a log file in the run folder, stdin closed,
in a session of its own. Its own session keeps a terminal's Ctrl-C (sent to
the foreground process group) away from it: the supervisor alone receives it
and stops its children in order — services before the database they write to.

Stopping is bounded: :func:`stop_all` and :func:`terminate` send SIGTERM,
wait until a deadline, then SIGKILL and reap, so a teardown always ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

#: How long a child may take to leave after SIGKILL before we stop waiting for it.
REAP_S = 10.0


def python_module(module: str) -> list[str]:
    """The command that runs ``python -m module`` in a child, with this interpreter and without
    the working directory on its path (``-P``): a run started inside another checkout (a folder
    with its own ``progressbench/``) would otherwise mix that checkout's modules with these."""
    return [sys.executable, "-P", "-m", module]


def listen_socket() -> socket.socket:
    """A TCP socket on 127.0.0.1, port chosen by the OS, listening and inheritable."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def socket_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


def spawn(
    argv: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    pass_fds: Sequence[int] = (),
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, output appended to ``log_path``.

    ``env`` adds to (or overrides) the supervisor's environment; the child
    inherits only the file descriptors named in ``pass_fds``.
    """
    child_env = dict(os.environ)
    child_env.update(env or {})
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            list(argv),
            env=child_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            pass_fds=tuple(pass_fds),
            start_new_session=True,
        )


def stop_all(procs: Iterable[subprocess.Popen[bytes]], grace_s: float) -> None:
    """SIGTERM every process at once, SIGKILL those still running after ``grace_s``, reap all."""
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in running:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
        if proc.poll() is None:
            _kill(proc)


def terminate(proc: subprocess.Popen[bytes], grace_s: float) -> str:
    """SIGTERM, wait ``grace_s``, then SIGKILL: ``"exited"`` or ``"killed"`` (which one it needed)."""
    if proc.poll() is not None:
        return "exited"
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        _kill(proc)
        return "killed"
    return "exited"


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL without warning, and reap."""
    if proc.poll() is None:
        _kill(proc)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=REAP_S)


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log, to quote in an error message ("" if unreadable)."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])
