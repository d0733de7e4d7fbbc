"""Integration fixtures: real stacks through the same supervisor the CLI uses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from progressbench.app.supervisor import Stack, StackSettings
from progressbench.core.config import Timing
from progressbench.kit.database import EmbeddedPostgres

#: Jobs in integration tests run at this time scale (a 14-step job takes ~2.5 s).
SCALE = 0.05
#: Transports that need no service beyond the API and workers: the default test stack.
BASE = ("polling", "sse", "sse-naive")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    settings = StackSettings(run_dir=tmp_path, timing=Timing(time_scale=SCALE), transports=BASE)
    with Stack(settings) as running:
        yield running


@pytest.fixture
def two_worker_stack(tmp_path: Path) -> Iterator[Stack]:
    settings = StackSettings(
        run_dir=tmp_path, timing=Timing(time_scale=SCALE), worker_instances=2, transports=BASE
    )
    with Stack(settings) as running:
        yield running


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Postgres owned by the test, for runs given --database-url (it outlives the run)."""
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "postgres.log")
    url = server.start()
    try:
        yield url
    finally:
        server.stop()
