"""The polling phone's pacing at a time scale: the round trip is real time, so it comes off the wait."""

from __future__ import annotations

import pytest
from progressbench.transports.polling.client import next_wait


def test_the_round_trips_stretch_comes_off_the_wait() -> None:
    """1 s interval at 0.1 (0.1 s), a 45 ms round trip: wait 0.1 − 0.045 × 0.9 = 0.0595 s.

    The period on the testbed's clock, 0.0595 + 0.045 = 0.1045 s, stands for
    1.045 s: the 1 s interval plus the 45 ms round trip, as a real phone polls.
    Without it the period (0.145 s) would stand for 1.45 s.
    """
    wait = next_wait(0.1, 0.045, 0.1)
    assert wait == pytest.approx(0.0595)
    assert (wait + 0.045) / 0.1 == pytest.approx(1.045)


def test_at_scale_one_nothing_changes_and_the_wait_never_goes_negative() -> None:
    assert next_wait(1.0, 0.045, 1.0) == pytest.approx(1.0)
    assert next_wait(0.5, 0.2, 0.5) == pytest.approx(0.4)  # 0.5 − 0.2 × 0.5
    assert next_wait(0.1, 0.3, 0.1) == 0.0  # a round trip too slow to compress: a distortion, not < 0
    assert next_wait(0.1, -1.0, 0.1) == pytest.approx(0.1)
