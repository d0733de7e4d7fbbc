"""Shared test helpers: one scaled time unit, waiting on conditions with a deadline, and the
benchmark scripts loaded as modules (they are scripts, not a package).

Every timeout a test sets is a multiple of :data:`UNIT`, read once from
``PROGRESSBENCH_TEST_UNIT`` (default 1): on a slow or crowded machine raise it
(``PROGRESSBENCH_TEST_UNIT=3 python3 dev.py test``) and every deadline, and
pytest-timeout's per-test limit, stretches by the same factor. Durations that
are part of a scenario (a 5 s tunnel, a 1 s outage) are not timeouts and are
not scaled: they define what is being tested.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import os
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

T = TypeVar("T")

UNIT_ENV = "PROGRESSBENCH_TEST_UNIT"


def _read_unit() -> float:
    raw = os.environ.get(UNIT_ENV, "1")
    try:
        unit = float(raw)
    except ValueError:
        raise RuntimeError(f"{UNIT_ENV}: expected a positive number, got {raw!r}") from None
    if not unit > 0:
        raise RuntimeError(f"{UNIT_ENV}: expected a positive number, got {raw!r}")
    return unit


#: Every test timeout is a multiple of this (seconds per second); see the module docstring.
UNIT = _read_unit()


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """Poll ``condition`` until it returns something truthy (and return that), or fail naming ``what``."""
    deadline = time.monotonic() + timeout * UNIT
    last: T = condition()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout * UNIT:.1f}s waiting for {what}")
        time.sleep(interval)
        last = condition()
    return last


async def wait_until(
    condition: Callable[[], T | Awaitable[T]], timeout: float, what: str, interval: float = 0.02
) -> T:
    """The asyncio :func:`wait_for`: ``condition`` may be a plain or an async callable.

    The event loop keeps running between polls, so the code under test (a
    watcher task, a proxy) makes progress while the test waits.
    """
    deadline = time.monotonic() + timeout * UNIT
    while True:
        result = condition()
        last = await result if inspect.isawaitable(result) else result
        if last:
            return last  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout * UNIT:.1f}s waiting for {what}")
        await asyncio.sleep(interval)


def run_process(args: Sequence[str], timeout: float, **popen: Any) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(args, capture_output=True, text=True)`` that stops the child gently.

    On a timeout (``timeout`` is scaled by UNIT), pytest-timeout or Ctrl-C the
    child gets SIGTERM first, which a ``progressbench run`` turns into an
    orderly stop of its stack, and SIGKILL only if it is still there 30 s
    later: a killed run would leave its service processes behind.
    """
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen) as proc:
        try:
            out, err = proc.communicate(timeout=timeout * UNIT)
        except BaseException:
            proc.terminate()
            try:
                proc.communicate(timeout=30 * UNIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            raise
    return subprocess.CompletedProcess(list(args), proc.returncode, out, err)


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str, run: bool = True) -> ModuleType:
    """``benchmarks/<name>.py`` as a module named ``name``; ``run=False`` leaves it unexecuted, for
    a caller that must put it (or a sibling it imports) in ``sys.modules`` first."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    if run:
        spec.loader.exec_module(module)
    return module
