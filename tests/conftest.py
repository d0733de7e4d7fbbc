"""Session-wide test plumbing: the scaled per-test timeout and the shared PostgreSQL.

Fixtures here cost nothing until a test asks for them: a unit-test run never
starts a database. Under ``pytest-xdist`` every worker is its own session,
with its own PostgreSQL; how tests are spread over workers is
``tests/scheduling.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.databases import Databases
from tests.helpers import UNIT

pytest_plugins = ("tests.scheduling",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Stretch pytest-timeout's limit of every test (ini default or marker) by ``UNIT``."""
    if UNIT == 1:
        return
    default = float(config.getini("timeout") or 0)
    for item in items:
        marker = item.get_closest_marker("timeout")
        seconds = default
        if marker is not None:
            seconds = float(marker.args[0] if marker.args else marker.kwargs.get("timeout", default))
        if seconds > 0:
            item.add_marker(pytest.mark.timeout(seconds * UNIT), append=False)


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    """One embedded server per session (per xdist worker) with a migrated template database."""
    running = Databases.start(tmp_path_factory.mktemp("postgres") / "postgres.log")
    try:
        yield running
    finally:
        running.stop()


def label(node: pytest.Item | pytest.Collector) -> str:
    """A database-name-safe label for a test or module, so a leftover database says whose it was."""
    return re.sub(r"[^a-z0-9]+", "_", node.name.lower().removesuffix(".py")).strip("_") or "t"


@pytest.fixture
def database_url(databases: Databases, request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated database of the test's own, dropped afterwards."""
    with databases.clone(label(request.node)) as url:
        yield url


@pytest.fixture(scope="module")
def module_database_url(databases: Databases, request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated database shared by one module's tests (for module-scoped stacks)."""
    with databases.clone(label(request.node)) as url:
        yield url
