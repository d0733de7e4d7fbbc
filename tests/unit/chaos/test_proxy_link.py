"""Chain edits on a live link (add, update, remove) with fake sockets and a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from progressbench.chaos.proxy.entry import ToxicEntry
from progressbench.chaos.proxy.link import Link
from progressbench.chaos.proxy.stub import BACKLOG_HIGH
from progressbench.chaos.proxy.toxics import REGISTRY, Toxic
from progressbench.chaos.proxy.toxics.blackhole import BlackholeToxic
from progressbench.chaos.proxy.toxics.latency import LatencyToxic
from progressbench.chaos.proxy.toxics.limit_data import LimitDataToxic
from progressbench.chaos.proxy.toxics.timeout import TimeoutToxic
from progressbench.chaos.proxy.types import Direction

from tests.unit.chaos.proxy_fakes import FakeClock, FakeEndpoint, FakeHost, settle

pytestmark = pytest.mark.timeout(10)


def entry(name: str, toxic: Toxic, type: str) -> ToxicEntry:
    return ToxicEntry(name, type, "downstream", Direction.DOWNSTREAM, 1.0, toxic, REGISTRY[type])


@pytest.fixture
async def make_link(clock: FakeClock) -> AsyncIterator[Callable[[], tuple[Link, FakeEndpoint, FakeEndpoint]]]:
    links: list[Link] = []

    def make() -> tuple[Link, FakeEndpoint, FakeEndpoint]:
        source, dest = FakeEndpoint(), FakeEndpoint()
        link = Link(FakeHost(clock), Direction.DOWNSTREAM, source, dest)  # type: ignore[arg-type]
        links.append(link)
        return link, source, dest

    yield make
    for link in links:
        link.stop()
    await settle()


async def test_without_toxics_reads_go_straight_to_the_destination(make_link) -> None:
    """The fast path: no chain, every read is written at once."""
    link, _, dest = make_link()
    link.feed(b"abc")
    assert dest.written == b"abc" and link.sink.sent == 3 and link.received == 3


async def test_added_latency_applies_to_live_link_and_removal_releases(make_link, clock) -> None:
    """Adding latency delays later reads; removing it releases the held chunk at once."""
    link, _, dest = make_link()
    latency = entry("lat", LatencyToxic(latency=1000), "latency")
    await link.add(latency)
    link.feed(b"late")
    await clock.advance(0.4)
    assert dest.written == b""
    await link.remove(latency)
    assert dest.written == b"late"
    assert link.head is link.sink
    link.feed(b"!")
    assert dest.written == b"late!"


async def test_update_restarts_the_stage_with_new_attributes(make_link, clock) -> None:
    """PATCH-like update: the held chunk is released and new chunks use the new latency."""
    link, _, dest = make_link()
    latency = entry("lat", LatencyToxic(latency=1000), "latency")
    await link.add(latency)
    link.feed(b"a")
    await clock.advance(0.1)
    latency.toxic = LatencyToxic(latency=200)
    await link.update(latency)
    assert dest.written == b"a"
    link.feed(b"b")
    await clock.advance(0.19)
    assert dest.written == b"a"
    await clock.advance(0.02)
    assert dest.written == b"ab"


async def test_two_latency_toxics_add_up(make_link, clock) -> None:
    """A chain of 200 ms and 150 ms latency delays a chunk by 350 ms."""
    link, _, dest = make_link()
    await link.add(entry("a", LatencyToxic(latency=200), "latency"))
    await link.add(entry("b", LatencyToxic(latency=150), "latency"))
    link.feed(b"x")
    await clock.advance(0.34)
    assert dest.written == b""
    await clock.advance(0.02)
    assert dest.written == b"x"


async def test_blackhole_removal_delivers_everything_in_order(make_link, clock) -> None:
    """Bytes and EOF held by a blackhole reach the destination, in order, once it is removed."""
    link, _, dest = make_link()
    hole = entry("hole", BlackholeToxic(), "blackhole")
    link.feed(b"0")
    await link.add(hole)
    for i in range(1, 5):
        link.feed(str(i).encode())
    link.feed_eof()
    await clock.advance(30)
    assert dest.written == b"0" and not dest.closed
    await link.remove(hole)
    assert dest.written == b"01234" and dest.closed


async def test_removing_a_middle_toxic_passes_its_queue_on(make_link, clock) -> None:
    """Chunks queued at a removed stage go on to the next stage, not lost or reordered."""
    link, _, dest = make_link()
    hole = entry("hole", BlackholeToxic(), "blackhole")
    await link.add(hole)
    await link.add(entry("lat", LatencyToxic(latency=100), "latency"))
    link.feed(b"ab")
    link.feed(b"cd")
    await clock.advance(1)
    await link.remove(hole)
    await clock.advance(0.2)
    assert dest.written == b"abcd"


async def test_removing_timeout_closes_the_stream(make_link, clock) -> None:
    """timeout's cleanup closes the destination; the dropped bytes never arrive."""
    link, _, dest = make_link()
    timeout = entry("t", TimeoutToxic(timeout=0), "timeout")
    await link.add(timeout)
    link.feed(b"dropped")
    await clock.advance(1)
    await link.remove(timeout)
    assert dest.closed and dest.written == b""


async def test_backlog_pauses_and_resumes_the_source(make_link, clock) -> None:
    """Over the backlog mark the source is held; once drained it is released."""
    link, source, dest = make_link()
    hole = entry("hole", BlackholeToxic(), "blackhole")
    await link.add(hole)
    chunk = b"x" * 65_536
    for _ in range(BACKLOG_HIGH // len(chunk) + 1):
        link.feed(chunk)
    assert "backlog" in source.holds
    await link.remove(hole)
    assert "backlog" not in source.holds
    assert len(dest.written) == (BACKLOG_HIGH // len(chunk) + 1) * len(chunk)


async def test_adding_after_the_stream_ended_is_harmless(make_link, clock) -> None:
    """A toxic added after a limit_data closed the stream is inert (no crash, no data)."""
    link, _, dest = make_link()
    await link.add(entry("limit", LimitDataToxic(bytes=2), "limit_data"))
    link.feed(b"abc")
    await settle()
    assert dest.closed and dest.written == b"ab"
    await link.add(entry("lat", LatencyToxic(latency=10), "latency"))
    link.feed(b"more")
    await clock.advance(1)
    assert dest.written == b"ab"


async def test_silenced_link_drops_everything_and_closes_only_its_source(make_link, clock) -> None:
    """After go_silent nothing is written, and a later EOF closes only our end of the source."""
    link, source, dest = make_link()
    await link.add(entry("lat", LatencyToxic(latency=10), "latency"))
    link.go_silent()
    link.feed(b"lost")
    link.feed_eof()
    await clock.advance(1)
    assert dest.written == b"" and not dest.closed and source.closed
