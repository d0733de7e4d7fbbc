"""Stop signals: SIGTERM means what Ctrl-C means, and a teardown is never cut halfway.

CI runners, ``timeout`` and container runtimes stop a process with SIGTERM; a
person presses Ctrl-C (SIGINT). Both mean the same: stop what runs, tear the
stack down, write what was measured (marked partial), exit 130.

:func:`install` (the CLI's, once) makes the *first* SIGINT or SIGTERM raise
``KeyboardInterrupt`` in the main thread, which unwinds whatever blocking
wait it is in. Later ones are acknowledged, not obeyed: a second
``KeyboardInterrupt`` raised inside the teardown would skip the rest of it —
that is how an embedded Postgres outlived ``progressbench locust`` stopped
with Ctrl-C and then SIGTERM. Every wait of a teardown ends in a SIGKILL
after a deadline, so a patient stop is still a prompt one.

:func:`held` and :func:`deferred` cover what the rule above cannot: a
*first* signal that lands while children are being stopped (a run that ends
just as CI cancels it), or between starting a child and recording it.
Inside them a stop signal is recorded instead of acted on; :func:`deferred`
delivers it again, to the handler it held it from, once the block is over.
:func:`settle` ends it all: once a command is done, stop signals are ignored.

Python runs signal handlers in the main thread only, so both are no-ops in
any other thread (nothing there can be interrupted by a signal anyway).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """The CLI's handler: the first stop signal interrupts, later ones only call ``note``."""

    def __init__(self, note: Callable[[str], None]) -> None:
        self.note = note
        self.received = 0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.received += 1
        if self.received == 1:
            raise KeyboardInterrupt
        self.note(f"{signal.Signals(signum).name}: already stopping (child processes first)")


def install(note: Callable[[str], None]) -> StopSignals:
    """Handle SIGINT and SIGTERM alike for the rest of the process (call from the main thread)."""
    handler = StopSignals(note)
    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)
    return handler


def settle() -> None:
    """The work is over: ignore stop signals from now on.

    While the interpreter shuts down, Python puts the default action back on
    every signal it handled, so a late SIGTERM would turn a finished
    command's exit code into "killed by SIGTERM". Ignored signals stay ignored.
    """
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


@dataclass
class HeldSignals:
    """The stop signals that arrived inside a :func:`held` block, in order."""

    received: list[int] = field(default_factory=list)

    def deliver(self) -> None:
        """Raise the first held signal again (to whatever handler is installed now)."""
        if self.received:
            signal.raise_signal(self.received[0])


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def held() -> Iterator[HeldSignals]:
    """Record stop signals instead of acting on them for the block; the caller decides what they mean."""
    signals = HeldSignals()
    if not _in_main_thread():
        yield signals
        return
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

    def hold(signum: int, frame: FrameType | None) -> None:
        signals.received.append(signum)

    for sig in STOP_SIGNALS:
        signal.signal(sig, hold)
    try:
        yield signals
    finally:
        for sig, handler in previous.items():
            # None: a handler not installed from Python, which cannot be put back; default is closest.
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Run the block to its end whatever stop signal arrives, then deliver the first one."""
    signals = HeldSignals()
    try:
        with held() as signals:
            yield
    finally:
        signals.deliver()


#: How often a part of a ``--parallel`` run looks for its parent.
PARENT_CHECK_S = 0.5


def orphaned(parent: int, current: Callable[[], int]) -> bool:
    """The process that started us is gone: we were handed to init (or a subreaper)."""
    return current() != parent


def stop_when_parent_dies(interval_s: float = PARENT_CHECK_S) -> threading.Thread:
    """SIGTERM ourselves once the parent exits, however it died.

    A part of a ``--parallel`` run is stopped by its parent's SIGTERM; a parent
    killed without warning (SIGKILL, the OOM killer) sends none, and the part
    would run its whole matrix alone. Polling the parent's pid is portable (no
    prctl) and costs nothing; the part then stops as it would on Ctrl-C,
    writing its partial results in its own folder.
    """
    parent = os.getppid()

    def watch() -> None:
        while not orphaned(parent, os.getppid):
            time.sleep(interval_s)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread
