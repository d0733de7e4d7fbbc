"""Probe 14: bounded logs: no per-poll decoding LOG lines, one line per aborted handshake, capped repeats.

Before the fixes the embedded Postgres logged "starting logical decoding for
slot" (with DETAIL and STATEMENT) on every realtime poll, 1.3 MB in 26 min;
every aborted websocket handshake logged a three-deep traceback; nothing
capped a flood of one message.
"""

from __future__ import annotations

import asyncio
import io
import logging
import uuid
from collections.abc import Iterator

import pytest
from progressbench.transports.realtime.feed import ChangeFeed
from progressbench.transports.relay.rooms.config import RoomsConfig
from progressbench.transports.relay.rooms.connection import connection_class
from progressbench.transports.relay.rooms.hub import RoomHub
from progressbench.transports.relay.rooms.meters import RoomMeters
from websockets.asyncio.server import serve

from progressbench.kit import logbounds
from progressbench.kit.meters import Meters
from tests.databases import Databases


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The root logger writing to a buffer through the service log filters."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(logbounds.OneLineHandshakes())
    handler.addFilter(logbounds.RepeatCap(burst=3, window_s=3600))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_an_aborted_handshake_is_one_line(captured: io.StringIO) -> None:
    hub = RoomHub("s" * 32, RoomsConfig(), RoomMeters(Meters("rooms", 1)))
    async with serve(
        hub.handler,
        "127.0.0.1",
        0,
        process_request=hub.admit,
        create_connection=connection_class(hub.publish),
    ) as server:
        host, port = next(iter(server.sockets)).getsockname()[:2]
        for _ in range(2):
            _, writer = await asyncio.open_connection(host, port)
            writer.write(b"GET /parties/main/x HTTP/1.1\r\nHost: x\r\n")
            await writer.drain()
            writer.close()
        for _ in range(200):
            if captured.getvalue().count("handshake failed") >= 2:
                break
            await asyncio.sleep(0.02)
    lines = [line for line in captured.getvalue().splitlines() if "handshake" in line or "Traceback" in line]
    assert "Traceback" not in captured.getvalue()
    assert len(lines) == 2 and all(line.startswith("WARNING websockets.server") for line in lines), lines


def test_a_flood_of_one_message_is_capped(captured: io.StringIO) -> None:
    log = logging.getLogger("tests.flood")
    for i in range(100):
        log.warning("queue full for %s", i)
    log.warning("another message")
    lines = captured.getvalue().splitlines()
    assert len([line for line in lines if "queue full" in line]) == 3
    assert "WARNING tests.flood: another message" in lines


def test_repeats_come_back_with_a_count_after_the_window() -> None:
    now = [0.0]
    cap = logbounds.RepeatCap(burst=1, window_s=10, clock=lambda: now[0])
    record = lambda: logging.LogRecord("x", logging.WARNING, "f", 1, "same %s", (1,), None)  # noqa: E731
    assert [cap.filter(record()) for _ in range(3)] == [True, False, False]
    now[0] = 11.0
    again = record()
    assert cap.filter(again) and "2 similar lines suppressed" in again.getMessage()


async def test_polling_a_logical_slot_leaves_no_log_lines(databases: Databases, database_url: str) -> None:
    slot = f"pb_sec_{uuid.uuid4().hex[:8]}"
    feed = ChangeFeed(database_url, slot=slot)
    await feed.start()
    try:
        for _ in range(5):
            await feed.drain_once()
    finally:
        await feed.stop()
    text = databases.server.log_path.read_text(errors="replace")
    assert f'starting logical decoding for slot "{slot}"' not in text


def test_a_process_log_has_a_hard_budget() -> None:
    budget = logbounds.Budget(max_bytes=1000)
    kept = []
    for i in range(100):
        record = logging.LogRecord("x", logging.INFO, "f", 1, "line %d of a long story", (i,), None)
        if budget.filter(record):
            kept.append(record.getMessage())
    assert len(kept) < 15 and "log budget of 1000 bytes spent" in kept[-1]
