"""Intervals and the noise rule: known values, edge cases, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from progressbench.reports.uncertainty import (
    Proportion,
    bootstrap_ci,
    cluster_percentile_change,
    cluster_percentile_ci,
    cluster_ratio_change,
    cluster_ratio_ci,
    percentile_change,
    percentile_ci,
    ratio_change,
    significant_change,
    small_sample,
    wilson,
)


def test_wilson_matches_published_values() -> None:
    """8 of 10 gives Wilson's [0.490, 0.943] (Newcombe 1998, table I); 0 of 10 gives [0, 0.278]
    (Brown, Cai & DasGupta 2001)."""
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3)
    assert high == pytest.approx(0.9433, abs=1e-3)
    assert wilson(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-3))


def test_wilson_edges_stay_inside_unit_interval() -> None:
    """All or nothing is not certainty: 20/20 keeps a lower bound near 0.84; n=0 says nothing."""
    low, high = wilson(20, 20)
    assert high == 1.0
    assert low == pytest.approx(0.839, abs=2e-3)
    assert wilson(0, 20)[0] == 0.0
    assert wilson(0, 0) == (0.0, 1.0)
    assert wilson(25, 20) == wilson(20, 20)


def test_ratio_change_matches_newcombe_example() -> None:
    """Newcombe's example 56/70 vs 48/80: difference 0.2, interval [0.0524, 0.3339]."""
    change = ratio_change(Proportion(48, 80), Proportion(56, 70))
    assert change.delta == pytest.approx(0.2)
    assert change.low == pytest.approx(0.0524, abs=1e-3)
    assert change.high == pytest.approx(0.3339, abs=1e-3)
    assert change.significant and change.direction == "better"


def test_ratio_noise_is_not_a_regression() -> None:
    """19/20 → 17/20 is within noise; 40/40 → 20/40 is a significant worsening."""
    assert significant_change(Proportion(19, 20), Proportion(17, 20)).direction == "same"
    assert not significant_change(Proportion(40, 40), Proportion(39, 40)).significant
    worse = significant_change(Proportion(40, 40), Proportion(20, 40))
    assert worse.significant and worse.direction == "worse"


def test_min_effect_suppresses_tiny_but_certain_moves() -> None:
    """A large-sample move below the practical threshold is reported as the same."""
    base, new = Proportion(99_000, 100_000), Proportion(98_800, 100_000)
    assert ratio_change(base, new).significant
    assert not ratio_change(base, new, min_effect=0.01).significant


def test_percentile_interval_is_seeded_and_covers_the_estimate() -> None:
    """Same data, same interval; the sample median lies inside it."""
    values = list(np.random.default_rng(1).exponential(3.0, size=40))
    first, second = percentile_ci(values, 50), percentile_ci(values, 50)
    assert first == second and first is not None
    assert first[0] <= float(np.median(values)) <= first[1]
    assert bootstrap_ci(values, lambda a: float(np.median(a))) == pytest.approx(first)
    assert percentile_ci([], 50) is None
    assert percentile_ci([2.0], 95) == (2.0, 2.0)


def test_percentile_change_direction_and_noise() -> None:
    """Doubling times is worse (lower is better by default); two draws of one law are the same."""
    rng = np.random.default_rng(7)
    base = rng.normal(10, 1, size=60)
    assert percentile_change(base, base * 2).direction == "worse"
    assert significant_change(list(base), list(rng.normal(10, 1, size=60))).direction == "same"
    assert percentile_change(base, base * 2, higher_is_better=True).direction == "better"
    assert not percentile_change([], base).significant


def test_small_samples_are_flagged_and_mixed_kinds_refused() -> None:
    """Fewer than ten samples is small; a ratio cannot be compared with a sample."""
    assert small_sample(9) and not small_sample(10)
    assert ratio_change(Proportion(5, 5), Proportion(0, 5)).small
    with pytest.raises(TypeError):
        significant_change(Proportion(1, 2), [1.0, 2.0])


def test_a_change_describes_itself_in_one_line() -> None:
    """The diff line names the move, its interval and the decision; noise is called noise."""
    worse = ratio_change(Proportion(40, 40), Proportion(20, 40))
    line = worse.describe("terminal_ratio")
    assert line.startswith("terminal_ratio 1 → 0.5 (Δ -0.5, 95% CI ") and line.endswith("): worse")
    assert ratio_change(Proportion(19, 20), Proportion(17, 20)).describe("t").endswith("within noise")
    assert percentile_change([], [1.0]).describe("p50") == "p50: no data on one side"


def test_cluster_bootstrap_is_wider_than_pretending_events_are_independent() -> None:
    """Two sessions lost most of their events: resampling sessions shows how unsure 0.5 is."""
    received, expected = [16, 16, 2, 16, 0, 16], [16] * 6
    low, high = cluster_ratio_ci(received, expected) or (0.0, 0.0)
    assert low < sum(received) / 96 < high
    naive = wilson(sum(received), 96)
    assert high - low > naive[1] - naive[0]
    assert cluster_ratio_ci([], []) is None
    groups = [[40.0, 41.0, 42.0], [400.0, 410.0], [39.0]]
    ci = cluster_percentile_ci(groups, 50)
    assert ci is not None and ci[0] <= 42.0 <= ci[1]
    assert cluster_percentile_ci(groups, 50) == ci  # seeded
    assert cluster_percentile_ci([[]], 50) is None


def test_session_bootstrap_counts_one_bad_session_once_not_per_event() -> None:
    """Forty events from one slow session widen the p95 interval as one session would, not as
    forty independent draws; a change that one session could explain is within noise."""
    clustered = [[10.0] * 40 for _ in range(9)] + [[500.0] * 40]
    flat = [v for group in clustered for v in group]
    by_session, by_event = cluster_percentile_ci(clustered, 95), percentile_ci(flat, 95)
    assert by_session is not None and by_event is not None
    assert by_session[1] - by_session[0] > by_event[1] - by_event[0]
    slower = [[v * 1.1 for v in group] for group in clustered]
    assert percentile_change(flat, [v for g in slower for v in g], 95).direction == "worse"
    change = cluster_percentile_change(clustered, slower, 95)
    assert change.direction == "same" and change == cluster_percentile_change(clustered, slower, 95)
    assert change.base_interval == by_session


def test_session_bootstrap_of_a_difference_finds_a_real_move() -> None:
    """Latency tripled in every session is worse; per-session losses rising from 0 to 4 are worse;
    an empty run says there is no data."""
    rng = np.random.default_rng(5)
    base = [list(rng.normal(100, 10, size=16)) for _ in range(30)]
    worse = cluster_percentile_change(base, [[3 * v for v in g] for g in base], 50)
    assert worse.direction == "worse" and worse.low is not None and worse.low > 0
    ones = [1.0] * 30
    lost = cluster_ratio_change(([0.0] * 30, ones), ([4.0] * 15 + [0.0] * 15, ones), higher_is_better=False)
    assert (lost.base, lost.new, lost.direction) == (0.0, 2.0, "worse")
    assert cluster_percentile_change([], base, 50).delta is None
    assert cluster_ratio_change(([], []), ([1.0], [1.0])).describe("d") == "d: no data on one side"
