"""Handing tests to pytest-xdist workers: one at a time, except tests that share a fixture.

A test that uses a module-scoped fixture (a running stack, a built wheel)
must run on the worker that holds the fixture, or each worker builds its own
copy; every other test can go wherever a worker is free. xdist's
``--dist loadgroup`` was made for this, but it renames items through an
attribute pytest 9 no longer reads, so its groups are silently ignored; and
``--dist loadscope`` keeps whole modules together, so three independent
minute-long scenario runs would queue behind each other on one worker.

So with ``--dist loadscope`` this plugin swaps in :class:`SharedFixtureScheduling`.
Only the workers see fixtures and only the controller schedules, so each
worker writes down, after collection, the ids of its tests that share a
module-scoped fixture; the controller reads that list when it first splits
the collection into work units: a listed test's unit is its module, any
other test is a unit of its own.

Workers also collect the slowest tier first (scenarios, then integration,
then unit; ``--no-loadscope-reorder`` keeps that order), so the long tests
start at once and the millisecond ones fill the gaps at the end.

``-n auto`` means one worker more than there are CPUs: integration tests
spend much of their time waiting on scaled job steps and fault windows, so
a spare worker keeps the CPUs busy while another waits.
``PYTEST_XDIST_AUTO_NUM_WORKERS`` still wins when set.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

#: The folder where workers leave their lists, passed to them in ``workerinput``.
FOLDER_KEY = "progressbench_shared_fixture_lists"
SHARED_SCOPES = frozenset({"class", "module", "package"})
#: Slowest first: the order xdist workers hand tests out in.
TIERS = ("tests/scenarios/", "tests/integration/", "tests/security/", "tests/unit/")

_folder = pytest.StashKey[Path]()


def shares_a_fixture(item: pytest.Item) -> bool:
    """Whether ``item`` uses a fixture that outlives it but not the session."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(d.scope in SHARED_SCOPES for defs in info.name2fixturedefs.values() for d in defs)


def _tier(item: pytest.Item) -> int:
    return next((i for i, tier in enumerate(TIERS) if item.nodeid.startswith(tier)), 0)


@pytest.hookimpl(optionalhook=True, wrapper=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> Any:
    cpus = yield
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return cpus
    return cpus + 1


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or config.getoption("dist", "no") != "loadscope":
        return
    config.stash[_folder] = Path(tempfile.mkdtemp(prefix="progressbench-xdist-"))


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(_folder, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    folder = node.config.stash.get(_folder, None)
    if folder is not None:
        node.workerinput[FOLDER_KEY] = str(folder)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is None or FOLDER_KEY not in workerinput:
        return
    items.sort(key=_tier)  # stable: a module's tests stay together
    shared = [item.nodeid for item in items if shares_a_fixture(item)]
    target = Path(workerinput[FOLDER_KEY]) / f"{workerinput['workerid']}.json"
    target.write_text(json.dumps(shared))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    folder = config.stash.get(_folder, None)
    if folder is None:
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):  # type: ignore[misc]
        """``loadscope`` whose units are modules only for tests that share a module fixture."""

        _shared: frozenset[str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self._shared is None:  # first called once every worker has collected
                self._shared = frozenset(
                    nodeid for path in folder.glob("*.json") for nodeid in json.loads(path.read_text())
                )
            return nodeid.split("::", 1)[0] if nodeid in self._shared else nodeid

    return SharedFixtureScheduling(config, log)
