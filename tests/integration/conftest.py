"""Integration fixtures: real stacks through the same supervisor the CLI uses.

Every stack runs against a database cloned from the session's migrated
template (``tests/databases.py``), so no stack pays for ``initdb``. A stack
that tests only read from is module-scoped (``module_stack``); a test that
kills, replaces or reconfigures instances gets a stack of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from progressbench.app.supervisor import Stack, StackSettings
from progressbench.core.config import ServerConditions, Timing
from tests.helpers import UNIT

#: Jobs in integration tests run at this time scale (a 14-step job takes ~2.5 s).
SCALE = 0.05
#: Transports that need no service beyond the API and workers: the default test stack.
BASE = ("polling", "sse", "sse-naive")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@contextmanager
def running_stack(run_dir: Path, database_url: str, **settings: Any) -> Iterator[Stack]:
    """A started :class:`Stack` on ``database_url``, at :data:`SCALE` unless ``timing`` is given."""
    settings.setdefault("timing", Timing(time_scale=SCALE))
    settings.setdefault("transports", BASE)
    settings.setdefault("startup_timeout_s", 30.0 * UNIT)
    with Stack(StackSettings(run_dir=run_dir, database_url=database_url, **settings)) as stack:
        yield stack


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[Stack]:
    """The default stack, the test's own (it may kill instances)."""
    with running_stack(tmp_path, database_url) as running:
        yield running


@pytest.fixture(scope="module")
def module_stack(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Iterator[Stack]:
    """The default stack shared by a module whose tests only create jobs and read."""
    with running_stack(tmp_path_factory.mktemp("stack"), module_database_url) as running:
        yield running


@pytest.fixture
def two_worker_stack(tmp_path: Path, database_url: str) -> Iterator[Stack]:
    with running_stack(tmp_path, database_url, worker_instances=2) as running:
        yield running


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """A synchronous HTTP client whose timeout is scaled like every other."""
    with httpx.Client(timeout=10 * UNIT) as client:
        yield client


@pytest.fixture
def misdeployed_stack(tmp_path: Path, database_url: str) -> Iterator[Stack]:
    """No job resource configured (seeds/004), for every pattern that dispatches; the API's request
    timeout at 40 s real (2 s scaled), so a long job outlives the request that runs it."""
    with running_stack(
        tmp_path,
        database_url,
        transports=("relay", "realtime", "sse", "polling"),
        timing=Timing(time_scale=SCALE, request_timeout_s=40.0),
        conditions=ServerConditions(misdeployed=True),
    ) as running:
        yield running
