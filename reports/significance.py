"""When is a difference between two runs more than noise? A small, swappable interface.

A run measures a few dozen sessions per cell, so a ratio of 0.95 against
0.975 may be one session. The comparison (``compare.py``) asks this module
one question per metric, and the rule is deliberately simple:

- a **ratio over sessions** (terminal ratio, share of sessions with a silent
  stall or a progress regression) gets a Wilson score interval at 95 %
  (Wilson 1927; the interval recommended by Brown, Cai & DasGupta 2001,
  "Interval Estimation for a Binomial Proportion", for small n and ratios
  near 0 or 1, where the normal approximation fails);
- a **percentile or mean of per-event or per-session values** (latency,
  time to result, resume time, lost events per session, and the delivery
  ratio, which is a ratio of sums over sessions) gets a percentile-bootstrap
  95 % interval that resamples *sessions*, each with all its values (a
  cluster bootstrap): the events of one session are not independent draws —
  a dropped stream loses a run of them — so resampling events one by one
  would make the interval far too narrow;
- with fewer than :data:`MIN_SESSIONS` sessions there is no bootstrap interval
  (nothing is called significant from a handful of sessions);
- a change is **significant when the two intervals do not overlap**. This is
  conservative (two 95 % intervals can overlap while the difference is
  significant at 5 %), which is the right side to err on for a CI gate.

Everything is pure and deterministic (the bootstrap's generator is seeded),
so a report renders the same twice. The ``report`` work adds a richer
uncertainty module; :func:`wilson`, the three ``bootstrap_*`` functions
and :func:`significant` are what the comparison calls, kept small so they
can be swapped for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Two-sided 95 %: the standard normal's 0.975 quantile.
Z95 = 1.959963984540054
#: Bootstrap resamples; enough for stable 2.5/97.5 % quantiles at report precision.
RESAMPLES = 1000
SEED = 20261130


@dataclass(frozen=True, slots=True)
class Interval:
    """A point estimate with its 95 % interval and how it was obtained."""

    value: float
    low: float
    high: float
    #: "wilson" or "bootstrap"
    method: str
    #: The sample behind it: sessions (or trials for Wilson).
    n: int

    def overlaps(self, other: Interval) -> bool:
        return self.low <= other.high and other.low <= self.high


def wilson(successes: int, trials: int, z: float = Z95) -> Interval | None:
    """Wilson score interval for ``successes`` of ``trials``; None without trials."""
    if trials <= 0:
        return None
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), "wilson", trials)


#: Fewer sessions than this: no bootstrap interval (with a handful of sessions the resamples
#: cannot show how much another handful would differ, and the interval comes out far too narrow).
MIN_SESSIONS = 10
#: Values per batch of resamples held at once (resamples × values), to bound memory on big cells.
_BATCH_CELLS = 4_000_000


def _counts(clusters: int, resamples: int, seed: int) -> np.ndarray:
    """How often each cluster is drawn in each resample (resamples × clusters): resampling with
    replacement is a multinomial draw of the cluster counts."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(clusters, np.full(clusters, 1.0 / clusters), size=resamples).astype(float)


def _interval(value: float, stats: np.ndarray, n: int) -> Interval | None:
    stats = stats[np.isfinite(stats)]
    if not len(stats) or not math.isfinite(value):
        return None
    low, high = np.percentile(stats, [2.5, 97.5])
    return Interval(value, float(low), float(high), "bootstrap", n)


def bootstrap_percentile(
    clusters: Sequence[Sequence[float]], q: float, resamples: int = RESAMPLES, seed: int = SEED
) -> Interval | None:
    """The ``q``-th percentile of the pooled values, resampling clusters (sessions) with replacement.

    Linear interpolation, as the summary computes percentiles. A resample is represented by how
    often each session was drawn: its pooled values are the sorted values each repeated by that
    count, and the percentile is read off the cumulative counts without copying any value.
    """
    if len(clusters) < MIN_SESSIONS:
        return None
    sizes = np.array([len(c) for c in clusters], dtype=np.int64)
    total = int(sizes.sum())
    if total == 0:
        return None
    flat = np.fromiter((v for c in clusters for v in c), dtype=float, count=total)
    owner = np.repeat(np.arange(len(clusters)), sizes)
    order = np.argsort(flat, kind="stable")
    ordered, owner = flat[order], owner[order]
    counts = _counts(len(clusters), resamples, seed)
    stats = np.empty(resamples)
    step = max(1, _BATCH_CELLS // total)
    for start in range(0, resamples, step):
        cumulative = np.cumsum(counts[start : start + step][:, owner], axis=1)
        n = cumulative[:, -1]
        pos = (n - 1) * q / 100.0
        low, high = np.floor(pos), np.ceil(pos)
        # the value at index k of the repeated array: the first sorted value whose cumulative count > k
        at_low = ordered[np.minimum((cumulative <= low[:, None]).sum(axis=1), total - 1)]
        at_high = ordered[np.minimum((cumulative <= high[:, None]).sum(axis=1), total - 1)]
        stats[start : start + step] = np.where(n > 0, at_low + (at_high - at_low) * (pos - low), np.nan)
    return _interval(float(np.percentile(flat, q)), stats, len(clusters))


def bootstrap_mean(values: Sequence[float], resamples: int = RESAMPLES, seed: int = SEED) -> Interval | None:
    """The mean of one value per session (e.g. lost events per session), resampling sessions."""
    data = np.asarray(values, dtype=float)
    if len(data) < MIN_SESSIONS:
        return None
    counts = _counts(len(data), resamples, seed)
    return _interval(float(data.mean()), counts @ data / len(data), len(data))


def bootstrap_ratio(
    numerators: Sequence[float], denominators: Sequence[float], resamples: int = RESAMPLES, seed: int = SEED
) -> Interval | None:
    """Sum of numerators over sum of denominators, one pair per session (events received / expected)."""
    num, den = np.asarray(numerators, dtype=float), np.asarray(denominators, dtype=float)
    if len(num) < MIN_SESSIONS or not den.sum():
        return None
    counts = _counts(len(num), resamples, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        stats = (counts @ num) / (counts @ den)
    return _interval(float(num.sum() / den.sum()), stats, len(num))


def significant(base: Interval | None, new: Interval | None) -> bool:
    """The change from ``base`` to ``new`` is outside the noise: both intervals exist and do not overlap."""
    return base is not None and new is not None and not base.overlaps(new)
