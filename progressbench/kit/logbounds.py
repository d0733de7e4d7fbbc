"""Bounded service logs (issue #13, probe 14): one line per failed handshake, repeats capped.

Two :class:`logging.Filter` s, installed on the root handlers by
:func:`install`:

* :class:`OneLineHandshakes`: ``websockets`` logs every aborted opening
  handshake (a port scan, a phone that lost its radio mid-upgrade) as an
  ERROR with a three-deep traceback. It becomes one WARNING line naming
  the innermost cause.
* :class:`RepeatCap`: at most ``burst`` records of one (logger, message
  template) per ``window_s``; the rest are counted and reported in one line
  when the window rolls over. A flood of the same warning then costs a few
  lines a minute, not a line per event.
* :class:`Budget`: a hard cap on what one process writes to its log
  (:data:`LOG_BUDGET_BYTES`); past it, one last line says so and the rest is
  dropped. Service logs are files the process writes through its stderr, so
  this cap stands in for rotation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

HANDSHAKE_LOGGERS = ("websockets.server", "websockets.asyncio.server")
#: The most one service process writes to its log (a healthy run writes kilobytes).
LOG_BUDGET_BYTES = 64 * 1024 * 1024


class OneLineHandshakes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name in HANDSHAKE_LOGGERS and record.exc_info and "handshake failed" in record.getMessage():
            exc = record.exc_info[1]
            causes: list[str] = []
            while exc is not None and len(causes) < 4:
                causes.append(f"{type(exc).__name__}: {exc}")
                exc = exc.__cause__ or exc.__context__
            record.msg = f"{record.getMessage()}: {' <- '.join(causes)}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class RepeatCap(logging.Filter):
    def __init__(
        self, burst: int = 20, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.burst = burst
        self.window_s = window_s
        self.clock = clock
        self._seen: dict[tuple[str, object], list[float | int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.msg)
        now = self.clock()
        entry = self._seen.get(key)
        if entry is None or now - float(entry[0]) >= self.window_s:
            dropped = int(entry[2]) if entry is not None else 0
            self._seen[key] = [now, 1, 0]
            if len(self._seen) > 10_000:
                self._seen = {key: self._seen[key]}
            if dropped:
                record.msg = f"{record.msg} [and {dropped} similar lines suppressed in the last window]"
            return True
        if int(entry[1]) < self.burst:
            entry[1] = int(entry[1]) + 1
            return True
        entry[2] = int(entry[2]) + 1
        return False


class Budget(logging.Filter):
    def __init__(self, max_bytes: int = LOG_BUDGET_BYTES) -> None:
        super().__init__()
        self.max_bytes = max_bytes
        self.used = 0
        self.spent = False

    def filter(self, record: logging.LogRecord) -> bool:
        if self.spent:
            return False
        self.used += len(record.getMessage()) + 80  # the message plus the line's prefix
        if record.exc_info:
            self.used += 4096
        if self.used > self.max_bytes:
            self.spent = True
            record.msg, record.args = f"log budget of {self.max_bytes} bytes spent; logging stops here", ()
            record.exc_info, record.exc_text, record.levelno, record.levelname = None, None, 40, "ERROR"
        return True


def install(burst: int = 20, window_s: float = 60.0, max_bytes: int = LOG_BUDGET_BYTES) -> None:
    """Add the filters to every handler of the root logger (call after ``basicConfig``)."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(OneLineHandshakes())
        handler.addFilter(RepeatCap(burst, window_s))
        handler.addFilter(Budget(max_bytes))
