"""The relay benchmark's readers time a message only when it is the event they expect next."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def instruments() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "relay_instruments", ROOT / "benchmarks" / "relay_instruments.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
