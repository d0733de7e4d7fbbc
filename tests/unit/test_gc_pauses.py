"""The garbage collector's pauses as meters: per generation, counted, summed and bucketed."""

from __future__ import annotations

import gc

from progressbench.kit import gcpauses
from progressbench.kit.meters import Meters


def test_pauses_are_counted_summed_and_bucketed_per_generation_and_read_back_from_a_scrape() -> None:
    pauses = gcpauses.Pauses()
    pauses.record(2, 0.004)
    pauses.record(2, 0.040)
    pauses.record(0, 0.0001)
    pauses.record(1, 5.0)  # above every bound
    collector = gcpauses.PauseCollector(pauses, "api")
    alone = gcpauses.tallies(_only(collector))
    full = alone[2]
    assert full.count == 2 and abs(full.total_s - 0.044) < 1e-9
    assert full.longest_at_most_s == 0.05, "0.040 s lies in the bucket up to 50 ms"
    assert alone[0].longest_at_most_s == 0.0005 and alone[1].longest_at_most_s == float("inf")
    later = gcpauses.Pauses()
    later.record(2, 0.004)
    later.record(2, 0.040)
    later.record(2, 0.012)
    between = gcpauses.tallies(_only(gcpauses.PauseCollector(later, "api")))[2].since(full)
    assert between.count == 1 and between.longest_at_most_s == 0.015 and abs(between.total_s - 0.012) < 1e-9


def test_every_service_s_meters_time_the_collections_of_its_process() -> None:
    meters = Meters("api", 1)
    before = gcpauses.tallies(meters.exposition().decode())[2]
    gc.collect()
    after = gcpauses.tallies(meters.exposition().decode())[2]
    assert after.since(before).count >= 1
    assert gcpauses.install() is gcpauses.install(), "one hook per process"
    assert gc.callbacks.count(gcpauses.install().callback) == 1


def _only(collector: gcpauses.PauseCollector) -> str:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()
