"""How sure a number is: intervals for ratios and percentiles, and when a change is not noise.

A cell holds 5–50 sessions, so "terminal 0.95" may be 19 of 20 and "p50 3.1 s"
the median of a dozen values. Everything here is pure (values in, intervals
out) and deterministic (bootstraps use a seeded generator and a bounded
number of resamples), so a report and a comparison render the same twice.

- :func:`wilson`: the Wilson score interval of ``successes`` out of ``n``.
  Unlike the normal approximation it stays inside [0, 1] and is honest at
  0/n and n/n (20 of 20 is not "certainly 1.0": about [0.84, 1.0]).
- :func:`bootstrap_ci` / :func:`percentile_ci`: percentile bootstrap of a
  statistic (e.g. the 95th percentile) over ``resamples`` resamples;
  :func:`cluster_percentile_ci` / :func:`cluster_ratio_ci` resample whole
  sessions when the values within one are not independent (per-event latency,
  events received over events committed).
- :func:`significant_change` (with :func:`ratio_change` and
  :func:`percentile_change`) and, for values that come in sessions,
  :func:`cluster_ratio_change` / :func:`cluster_percentile_change`: does a
  metric differ between a base run and a new run by more than the noise? One
  rule for all of them: the 95 % interval of the *difference* (new − base)
  must exclude zero (Newcombe's interval from the two Wilson intervals for a
  share of sessions; a seeded bootstrap of the difference, each run resampled
  on its own, for everything else). The report's ranking and ``progressbench
  compare`` both decide this way.
- :func:`small_sample`: cells below :data:`SMALL_N` samples are marked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

#: z for a two-sided 95 % interval.
Z95: Final = 1.959963984540054
#: Below this many samples (sessions for a ratio, values for a percentile) a cell is marked small.
SMALL_N: Final = 10
#: Bootstrap resamples by default; bounded so a report stays fast (a few ms per interval).
RESAMPLES: Final = 1000
#: The generator's seed by default: the same data gives the same interval every time.
SEED: Final = 20261130
#: At most this many values enter a bootstrap; a larger sample is thinned evenly after sorting
#: (its percentiles barely move, and the interval would be far narrower than any other noise).
MAX_VALUES: Final = 5000

Interval = tuple[float, float]
Direction = Literal["better", "worse", "same"]


class Proportion(NamedTuple):
    """``successes`` out of ``n`` (e.g. sessions that saw the terminal event out of sessions)."""

    successes: int
    n: int

    @property
    def ratio(self) -> float | None:
        return self.successes / self.n if self.n else None


def small_sample(n: int, minimum: int = SMALL_N) -> bool:
    """True when ``n`` samples are too few to read a number as more than a hint."""
    return n < minimum


def wilson(successes: int, n: int, z: float = Z95) -> Interval:
    """Wilson score interval for ``successes`` of ``n``; ``(0.0, 1.0)`` when ``n`` is 0.

    ``successes`` is clamped to ``[0, n]`` so a rounding slip upstream cannot give a
    bound outside [0, 1].
    """
    if n <= 0:
        return (0.0, 1.0)
    k = min(max(successes, 0), n)
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return (low, high)


def _array(values: Sequence[float] | npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    data: npt.NDArray[np.float64] = np.asarray(values, dtype=float)
    data = data[np.isfinite(data)]
    if data.size > MAX_VALUES:
        data = np.sort(data)[np.linspace(0, data.size - 1, MAX_VALUES).round().astype(int)]
    return data


def _resample_index(n: int, resamples: int, seed: int) -> npt.NDArray[np.intp]:
    rng = np.random.default_rng(seed)
    index: npt.NDArray[np.intp] = rng.integers(0, n, size=(max(1, resamples), n))
    return index


def _tails(stats: npt.NDArray[np.float64], level: float) -> Interval:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(stats, [tail, 100 - tail])
    return (float(low), float(high))


def bootstrap_ci(
    values: Sequence[float] | npt.NDArray[np.float64],
    stat: Callable[[npt.NDArray[np.float64]], float],
    *,
    level: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Interval | None:
    """Percentile-bootstrap interval of ``stat`` over ``values``; None without a value.

    ``stat`` gets a 1-D float array. Non-finite values are dropped first. One value
    gives a zero-width interval (there is nothing to resample): pair it with
    :func:`small_sample` when showing it.
    """
    data = _array(values)
    if data.size == 0:
        return None
    index = _resample_index(data.size, resamples, seed)
    stats = np.fromiter((stat(data[row]) for row in index), dtype=float, count=len(index))
    return _tails(stats, level)


def percentile_ci(
    values: Sequence[float] | npt.NDArray[np.float64],
    q: float,
    *,
    level: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Interval | None:
    """Bootstrap interval of the ``q``-th percentile (0–100) of ``values``; vectorised."""
    data = _array(values)
    if data.size == 0:
        return None
    return _tails(np.percentile(data[_resample_index(data.size, resamples, seed)], q, axis=1), level)


def _groups(groups: Sequence[Sequence[float]]) -> list[npt.NDArray[np.float64]]:
    return [a for a in (_array(list(g)) for g in groups) if a.size]


#: Cells (resamples × values) one batch of a session bootstrap holds at once: bounds memory.
_BATCH: Final = 4_000_000


def _cluster_percentile_stats(
    arrays: Sequence[npt.NDArray[np.float64]], q: float, resamples: int, seed: int
) -> npt.NDArray[np.float64]:
    """The ``q``-th percentile of each of ``resamples`` resamples of whole groups (sessions).

    A resample is how often each group is drawn (a multinomial draw), so no value is
    copied: the pooled values are sorted once, each weighted by its group's count, and
    the percentile (linear interpolation, as :func:`numpy.percentile`) is read off the
    cumulative weights.
    """
    sizes = np.array([a.size for a in arrays])
    pooled = np.concatenate(arrays)
    order = np.argsort(pooled, kind="stable")
    ordered, owner = pooled[order], np.repeat(np.arange(len(arrays)), sizes)[order]
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(arrays), np.full(len(arrays), 1 / len(arrays)), size=max(1, resamples))
    stats = np.empty(len(draws))
    step = max(1, _BATCH // pooled.size)
    for start in range(0, len(draws), step):
        weights = np.cumsum(draws[start : start + step][:, owner], axis=1)
        pos = (weights[:, -1] - 1) * q / 100
        below, above = np.floor(pos), np.ceil(pos)
        last = pooled.size - 1
        at_below = ordered[np.minimum((weights <= below[:, None]).sum(axis=1), last)]
        at_above = ordered[np.minimum((weights <= above[:, None]).sum(axis=1), last)]
        stats[start : start + step] = at_below + (at_above - at_below) * (pos - below)
    return stats


def cluster_percentile_ci(
    groups: Sequence[Sequence[float]],
    q: float,
    *,
    level: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Interval | None:
    """Bootstrap interval of the ``q``-th percentile of values that come in groups (sessions).

    The events of one session are not independent draws (a dropped stream delays a run
    of them), so the bootstrap resamples whole sessions, each with all its values. A
    session with more than :data:`MAX_VALUES` values is thinned evenly first.
    """
    arrays = _groups(groups)
    if not arrays:
        return None
    return _tails(_cluster_percentile_stats(arrays, q, resamples, seed), level)


def _ratio_groups(
    successes: Sequence[float], totals: Sequence[float]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    k = np.asarray(successes, dtype=float)
    n = np.asarray(totals, dtype=float)
    keep = np.isfinite(k) & np.isfinite(n) & (n > 0)
    return k[keep], n[keep]


def _cluster_ratio_stats(
    k: npt.NDArray[np.float64], n: npt.NDArray[np.float64], resamples: int, seed: int
) -> npt.NDArray[np.float64]:
    index = _resample_index(n.size, resamples, seed)
    ratios: npt.NDArray[np.float64] = k[index].sum(axis=1) / n[index].sum(axis=1)
    return ratios


def cluster_ratio_ci(
    successes: Sequence[float],
    totals: Sequence[float],
    *,
    level: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Interval | None:
    """Bootstrap interval of ``sum(successes) / sum(totals)`` over groups (e.g. events per session).

    For a ratio of sums (delivery = events received / events committed) the trials are
    not independent, so Wilson over events would be far too narrow; whole groups are
    resampled instead. None when no group has a positive total.
    """
    k, n = _ratio_groups(successes, totals)
    if n.size == 0:
        return None
    return _tails(_cluster_ratio_stats(k, n, resamples, seed), level)


@dataclass(frozen=True)
class Change:
    """A metric in two runs, the interval of new − base, and what that means.

    ``significant`` is True only when the whole interval of the difference lies on one
    side of zero *and* ``|delta|`` reaches the caller's ``min_effect``; ``direction`` is
    then "better" or "worse" by ``higher_is_better``, otherwise "same" (within noise).
    """

    base: float | None
    new: float | None
    delta: float | None
    low: float | None
    high: float | None
    significant: bool
    direction: Direction
    #: Either side had fewer than :data:`SMALL_N` samples.
    small: bool
    #: One sentence: how it was decided (for a report or a CI log).
    method: str
    #: Each run's own 95 % interval (Wilson, or the same resamples' percentiles), for showing.
    base_interval: Interval | None = None
    new_interval: Interval | None = None

    def describe(self, name: str, unit: str = "") -> str:
        """One line for a diff report: ``terminal_ratio 1 → 0.5 (Δ -0.5, 95% CI -0.78…-0.19): worse``."""
        if self.delta is None or self.low is None or self.high is None:
            return f"{name}: no data on one side"
        verdict = self.direction if self.significant else "within noise"
        small = "; small sample" if self.small else ""
        return (
            f"{name} {self.base:.3g}{unit} → {self.new:.3g}{unit} (Δ {self.delta:+.3g}{unit}, "
            f"95% CI {self.low:+.3g}…{self.high:+.3g}): {verdict}{small}"
        )


def _decide(
    base: float | None,
    new: float | None,
    interval: Interval | None,
    *,
    higher_is_better: bool,
    min_effect: float,
    small: bool,
    method: str,
    runs: tuple[Interval, Interval] | None = None,
) -> Change:
    if base is None or new is None or interval is None:
        return Change(base, new, None, None, None, False, "same", small, method + "; no data on one side")
    delta = new - base
    low, high = interval
    outside = low > 0 or high < 0
    significant = outside and abs(delta) >= min_effect
    direction: Direction = "same"
    if significant:
        direction = "better" if (delta > 0) == higher_is_better else "worse"
    b_int, n_int = runs if runs is not None else (None, None)
    return Change(base, new, delta, low, high, significant, direction, small, method, b_int, n_int)


def _bootstrap_change(
    base: float,
    new: float,
    base_stats: npt.NDArray[np.float64],
    new_stats: npt.NDArray[np.float64],
    *,
    level: float,
    higher_is_better: bool,
    min_effect: float,
    small: bool,
    method: str,
) -> Change:
    """Decide from each run's bootstrap statistics (drawn independently): the interval of
    their differences, and each run's own interval from the same resamples."""
    if min_effect:
        method += f" and |Δ| ≥ {min_effect:g}"
    return _decide(
        base,
        new,
        _tails(new_stats - base_stats, level),
        higher_is_better=higher_is_better,
        min_effect=min_effect,
        small=small,
        method=method,
        runs=(_tails(base_stats, level), _tails(new_stats, level)),
    )


def _no_data(method: str, higher_is_better: bool) -> Change:
    return _decide(
        None, None, None, higher_is_better=higher_is_better, min_effect=0.0, small=True, method=method
    )


def ratio_change(
    base: Proportion,
    new: Proportion,
    *,
    higher_is_better: bool = True,
    min_effect: float = 0.0,
    z: float = Z95,
) -> Change:
    """Change of a ratio between two runs, decided by Newcombe's hybrid score interval.

    The 95 % interval of ``new.ratio − base.ratio`` is built from each side's Wilson
    interval (Newcombe 1998, method 10): ``delta ± sqrt(…)`` of the distances from each
    ratio to its Wilson bounds. The change is significant when that interval excludes 0
    and ``|delta| >= min_effect``. 19/20 → 17/20 is noise; 40/40 → 20/40 is not.
    """
    method = "Newcombe interval of the difference (from Wilson intervals) excludes 0"
    if min_effect:
        method += f" and |Δ| ≥ {min_effect:g}"
    p1, p2 = base.ratio, new.ratio
    if p1 is None or p2 is None:
        return _decide(
            p1, p2, None, higher_is_better=higher_is_better, min_effect=min_effect, small=True, method=method
        )
    l1, u1 = wilson(base.successes, base.n, z)
    l2, u2 = wilson(new.successes, new.n, z)
    delta = p2 - p1
    low = delta - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    high = delta + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    return _decide(
        p1,
        p2,
        (low, high),
        higher_is_better=higher_is_better,
        min_effect=min_effect,
        small=small_sample(base.n) or small_sample(new.n),
        method=method,
        runs=((l1, u1), (l2, u2)),
    )


def percentile_change(
    base: Sequence[float] | npt.NDArray[np.float64],
    new: Sequence[float] | npt.NDArray[np.float64],
    q: float = 50.0,
    *,
    higher_is_better: bool = False,
    min_effect: float = 0.0,
    level: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Change:
    """Change of the ``q``-th percentile between two samples, decided by a bootstrap.

    Each run is resampled independently (``resamples`` times, seeded); the interval of
    ``percentile(new*) − percentile(base*)`` at ``level`` must exclude 0, and ``|delta|``
    must reach ``min_effect`` (in the values' unit). Lower is better by default
    (latencies, times).
    """
    method = f"bootstrap ({resamples} resamples, seeded) interval of the p{q:g} difference excludes 0"
    return cluster_percentile_change(
        [[v] for v in _array(base)],
        [[v] for v in _array(new)],
        q,
        higher_is_better=higher_is_better,
        min_effect=min_effect,
        level=level,
        resamples=resamples,
        seed=seed,
        method=method,
    )


def cluster_percentile_change(
    base: Sequence[Sequence[float]],
    new: Sequence[Sequence[float]],
    q: float = 50.0,
    *,
    higher_is_better: bool = False,
    min_effect: float = 0.0,
    level: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    method: str = "",
) -> Change:
    """Change of the ``q``-th percentile of values that come in groups (per-event latency by session).

    As :func:`percentile_change` (which is this with one value a group), but each run's
    resamples draw whole sessions with all their values (see :func:`cluster_percentile_ci`):
    the interval of ``percentile(new*) − percentile(base*)`` must exclude 0. ``small``
    counts sessions, not values. ``method`` overrides how the decision is described.
    """
    method = method or (
        f"session bootstrap ({resamples} resamples, seeded) interval of the p{q:g} difference excludes 0"
    )
    a, b = _groups(base), _groups(new)
    if not a or not b:
        return _no_data(method, higher_is_better)
    return _bootstrap_change(
        float(np.percentile(np.concatenate(a), q)),
        float(np.percentile(np.concatenate(b), q)),
        _cluster_percentile_stats(a, q, resamples, seed),
        _cluster_percentile_stats(b, q, resamples, seed + 1),
        level=level,
        higher_is_better=higher_is_better,
        min_effect=min_effect,
        small=small_sample(len(a)) or small_sample(len(b)),
        method=method,
    )


def cluster_ratio_change(
    base: tuple[Sequence[float], Sequence[float]],
    new: tuple[Sequence[float], Sequence[float]],
    *,
    higher_is_better: bool = True,
    min_effect: float = 0.0,
    level: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Change:
    """Change of ``sum(successes) / sum(totals)`` over sessions; each run is ``(successes, totals)``.

    Delivery (events received over events committed, one pair per session) resamples whole
    sessions (see :func:`cluster_ratio_ci`); with every total 1 it is the mean per session
    (lost events per session). The interval of the difference must exclude 0.
    """
    method = f"session bootstrap ({resamples} resamples, seeded) interval of the difference excludes 0"
    (k1, n1), (k2, n2) = _ratio_groups(*base), _ratio_groups(*new)
    if n1.size == 0 or n2.size == 0:
        return _no_data(method, higher_is_better)
    return _bootstrap_change(
        float(k1.sum() / n1.sum()),
        float(k2.sum() / n2.sum()),
        _cluster_ratio_stats(k1, n1, resamples, seed),
        _cluster_ratio_stats(k2, n2, resamples, seed + 1),
        level=level,
        higher_is_better=higher_is_better,
        min_effect=min_effect,
        small=small_sample(n1.size) or small_sample(n2.size),
        method=method,
    )


def significant_change(
    base: Proportion | Sequence[float],
    new: Proportion | Sequence[float],
    *,
    q: float = 50.0,
    higher_is_better: bool | None = None,
    min_effect: float = 0.0,
) -> Change:
    """Is the move from ``base`` to ``new`` outside the noise? One entry point for both kinds.

    - Two :class:`Proportion` (successes, n): :func:`ratio_change` — Newcombe's interval
      of the difference, from Wilson intervals (higher is better unless told otherwise).
    - Two samples of values (per-session seconds, per-event ms): :func:`percentile_change`
      at percentile ``q`` — seeded bootstrap of the difference (lower is better unless
      told otherwise).

    Significant means the 95 % interval of (new − base) excludes zero and the move is at
    least ``min_effect``; anything else is reported as "same" (within noise), never as
    a regression. Small samples (< :data:`SMALL_N`) are flagged in ``Change.small``.
    """
    if isinstance(base, Proportion) and isinstance(new, Proportion):
        hib = True if higher_is_better is None else higher_is_better
        return ratio_change(base, new, higher_is_better=hib, min_effect=min_effect)
    if isinstance(base, Proportion) or isinstance(new, Proportion):
        raise TypeError("significant_change: compare two Proportions or two samples, not one of each")
    hib = False if higher_is_better is None else higher_is_better
    return percentile_change(base, new, q, higher_is_better=hib, min_effect=min_effect)
