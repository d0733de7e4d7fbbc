"""Fixtures for the chaos proxy's unit tests (fakes live in ``proxy_fakes``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from progressbench.chaos.proxy.toxics import Toxic

from tests.unit.chaos.proxy_fakes import FakeClock, Harness, settle


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def run_toxic(clock: FakeClock) -> AsyncIterator[Callable[..., Harness]]:
    """Factory: ``run_toxic(toxic, seed=..., state=...)``; tasks are cancelled afterwards."""
    made: list[Harness] = []

    def make(toxic: Toxic, **kwargs: object) -> Harness:
        harness = Harness(toxic, clock, **kwargs)  # type: ignore[arg-type]
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.task.cancel()
    await settle()
