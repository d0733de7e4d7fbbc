"""The relay benchmark's readers time a message only when it is the event they expect next."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest

from tests.helpers import load_benchmark


@pytest.fixture(scope="module")
def instruments() -> ModuleType:
    return load_benchmark("relay_instruments")


def event(**fields: object) -> bytes:
    base: dict[str, object] = {"type": "event", "seq": 4, "job_id": "r1", "payload": {"sent_ns": 17}}
    return json.dumps({**base, **fields}).encode()


def test_the_expected_event_gives_its_send_stamp(instruments: ModuleType) -> None:
    """The next seq of this socket's room, with an integer stamp: the stamp is what gets timed."""
    assert instruments.verify(event(), "r1", 4) == 17


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe", "not JSON text"),
        (b"[1, 2]", "not an event"),
        (event(type="presence"), "not an event"),
        (event(job_id="r2"), "an event of room 'r2'"),
        (event(seq=5), "seq 5 where 4 was next"),
        (event(seq=3), "seq 3 where 4 was next"),
        (event(payload={"sent_ns": True}), "no sent_ns stamp"),
        (event(payload="x"), "no sent_ns stamp"),
    ],
)
def test_anything_else_is_named_not_timed(instruments: ModuleType, data: bytes, reason: str) -> None:
    """Garbage, another room's event, a gap, a replay or a missing stamp: a reason, never a latency."""
    assert instruments.verify(data, "r1", 4) == reason


@pytest.fixture(scope="module")
def bench(instruments: ModuleType) -> Iterator[ModuleType]:
    """bench_relay.py, which imports its sibling ``relay_instruments`` as a script does."""
    module = load_benchmark("bench_relay", run=False)
    assert module.__spec__ is not None and module.__spec__.loader is not None
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "relay_instruments", instruments)
        patch.setitem(sys.modules, "bench_relay", module)  # dataclasses look their module up
        module.__spec__.loader.exec_module(module)
        yield module


def test_the_p99_counts_every_expected_message_and_refuses_wrong_ones(bench: ModuleType) -> None:
    """Missing messages count as infinitely late, so more than 1 % missing leaves no figure; one
    wrong message leaves no figure at all."""
    full = bench.Reading(expected=100, latency_ms=[float(i) for i in range(100)])
    assert full.p99() == pytest.approx(98.01)
    assert bench.Reading(expected=100, latency_ms=[1.0] * 99).p99() is None  # 1 missing: p99 is it
    assert bench.Reading(expected=1000, latency_ms=[1.0] * 995).p99() == 1.0  # 0.5 % missing
    assert bench.Reading(expected=1000, latency_ms=[1.0] * 985).p99() is None
    assert bench.Reading(expected=100, latency_ms=[1.0] * 99, bad=1).p99() is None
