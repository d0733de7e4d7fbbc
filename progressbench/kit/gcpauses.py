"""The cyclic garbage collector's pauses in this process, as meters.

A collection stops the event loop for its whole duration: every open
stream's next write waits behind it. A full (generation 2) collection walks
every tracked object that is not frozen (:func:`~progressbench.kit.runtime.freeze_startup_heap`),
so its pause grows with what the process holds (a thousand open streams),
and it runs when enough objects have survived into the oldest generation
since the last one. A latency tail that no request explains is often one of
these; this module makes them visible instead of guessed.

:class:`Pauses` times each collection through ``gc.callbacks`` (two clock
reads per collection, hundreds of collections a second at most) and keeps,
per generation, a histogram of pause lengths. :func:`install` hooks one
:class:`Pauses` per process (the collector is process-wide, so is this);
:class:`PauseCollector` exports it on a service's Prometheus registry as
``pb_gc_pause_seconds{generation}`` (``_count`` is the number of
collections, ``_sum`` their total pause). A reader takes two scrapes and
subtracts: collections and pause time in between, and the largest pause
bounded by the highest bucket that gained a count.
"""

from __future__ import annotations

import bisect
import gc
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

#: Upper bounds of the pause buckets, seconds: fine around the tens of milliseconds a tail shows.
BUCKETS_S = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    1.0,
)
GENERATIONS = 3


class Pauses:
    """Per generation: how many collections, their total pause and a histogram of their lengths."""

    __slots__ = ("_started", "buckets", "count", "total_s")

    def __init__(self) -> None:
        self.count = [0] * GENERATIONS
        self.total_s = [0.0] * GENERATIONS
        #: ``buckets[g][i]``: collections of generation g whose pause was at most ``BUCKETS_S[i]``
        #: and above the bucket before (the last slot: above every bound). Not cumulative.
        self.buckets = [[0] * (len(BUCKETS_S) + 1) for _ in range(GENERATIONS)]
        self._started = 0.0

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        """``gc.callbacks`` entry: the clock at ``start``, the pause recorded at ``stop``."""
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.record(info["generation"], time.perf_counter() - self._started)

    def record(self, generation: int, seconds: float) -> None:
        self.count[generation] += 1
        self.total_s[generation] += seconds
        self.buckets[generation][bisect.bisect_left(BUCKETS_S, seconds)] += 1


_PROCESS: Pauses | None = None


def install() -> Pauses:
    """This process's :class:`Pauses`, hooked into the collector on the first call."""
    global _PROCESS
    if _PROCESS is None:
        _PROCESS = Pauses()
        gc.callbacks.append(_PROCESS.callback)
    return _PROCESS


class PauseCollector(Collector):
    """``pb_gc_pause_seconds{service, generation}``: a Prometheus histogram of :class:`Pauses`."""

    def __init__(self, pauses: Pauses, service: str) -> None:
        self._pauses = pauses
        self._service = service

    def collect(self) -> Iterable[HistogramMetricFamily]:
        p = self._pauses
        family = HistogramMetricFamily(
            "pb_gc_pause_seconds",
            "Pauses of the cyclic garbage collector by generation (2: full collections)",
            labels=["service", "generation"],
        )
        for generation in range(GENERATIONS):
            cumulative, rows = 0, []
            for bound, n in zip((*BUCKETS_S, float("inf")), p.buckets[generation], strict=True):
                cumulative += n
                rows.append((_bound(bound), float(cumulative)))
            family.add_metric([self._service, str(generation)], rows, p.total_s[generation])
        yield family


def _bound(seconds: float) -> str:
    return "+Inf" if seconds == float("inf") else repr(seconds)


class Tally:
    """One generation's collections as a scrape shows them: count, total pause, cumulative buckets.

    ``buckets[i]`` counts the pauses of at most ``BUCKETS_S[i]``; the last slot is every pause.
    :meth:`since` is what happened between two scrapes.
    """

    __slots__ = ("buckets", "count", "total_s")

    def __init__(self, count: int, total_s: float, buckets: tuple[int, ...]) -> None:
        self.count = count
        self.total_s = total_s
        self.buckets = buckets

    def since(self, earlier: Tally) -> Tally:
        return Tally(
            self.count - earlier.count,
            self.total_s - earlier.total_s,
            tuple(a - b for a, b in zip(self.buckets, earlier.buckets, strict=True)),
        )

    @property
    def longest_at_most_s(self) -> float | None:
        """The bucket bound the longest pause is within (inf: above every bound; None: no pause)."""
        if self.count <= 0:
            return None
        for bound, cumulative in zip((*BUCKETS_S, float("inf")), self.buckets, strict=True):
            if cumulative >= self.count:
                return bound
        return float("inf")  # pragma: no cover - the last slot always holds every pause


def tallies(exposition: str) -> dict[int, Tally]:
    """Per generation, the ``pb_gc_pause_seconds`` of a Prometheus text page (summed over services)."""
    from prometheus_client.parser import text_string_to_metric_families

    bounds = [*(_bound(b) for b in BUCKETS_S), "+Inf"]
    count: dict[int, float] = {}
    total: dict[int, float] = {}
    buckets: dict[int, list[float]] = {}
    for family in text_string_to_metric_families(exposition):
        if family.name != "pb_gc_pause_seconds":
            continue
        for sample in family.samples:
            generation = int(sample.labels["generation"])
            if sample.name.endswith("_count"):
                count[generation] = count.get(generation, 0.0) + sample.value
            elif sample.name.endswith("_sum"):
                total[generation] = total.get(generation, 0.0) + sample.value
            elif sample.name.endswith("_bucket"):
                slots = buckets.setdefault(generation, [0.0] * len(bounds))
                le = sample.labels["le"]
                index = bounds.index(le) if le in bounds else _nearest(bounds, float(le))
                slots[index] += sample.value
    return {
        g: Tally(int(count.get(g, 0)), total.get(g, 0.0), tuple(int(v) for v in buckets.get(g, [])))
        for g in sorted(set(count) | set(buckets))
    }


def _nearest(bounds: list[str], value: float) -> int:
    """The index of ``value`` among the bounds however the exposition spelled it (``0.5`` vs ``5e-01``)."""
    return min(range(len(bounds)), key=lambda i: abs(float(bounds[i]) - value))
