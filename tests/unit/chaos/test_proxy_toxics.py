"""Toxic logic on a fake clock: values in, (time, chunk) out, no sockets."""

from __future__ import annotations

import itertools
import random

import pytest
from progressbench.chaos.proxy.toxics.bandwidth import BandwidthToxic
from progressbench.chaos.proxy.toxics.blackhole import BlackholeToxic, next_retransmission
from progressbench.chaos.proxy.toxics.idle_timeout import IdleState, IdleTimeoutToxic
from progressbench.chaos.proxy.toxics.latency import LatencyToxic
from progressbench.chaos.proxy.toxics.limit_data import LimitDataToxic
from progressbench.chaos.proxy.toxics.noop import NoopToxic
from progressbench.chaos.proxy.toxics.pause_reader import PauseReaderToxic
from progressbench.chaos.proxy.toxics.reset_peer import ResetPeerToxic
from progressbench.chaos.proxy.toxics.slicer import SlicerToxic
from progressbench.chaos.proxy.toxics.slow_close import SlowCloseToxic
from progressbench.chaos.proxy.toxics.timeout import TimeoutToxic

from tests.unit.chaos.proxy_fakes import FakeClock, settle

pytestmark = pytest.mark.timeout(10)

# -- noop / latency -------------------------------------------------------------


async def test_noop_passes_chunks_and_eof_unchanged(run_toxic, clock: FakeClock) -> None:
    """noop forwards every chunk at once and then end-of-stream."""
    h = run_toxic(NoopToxic())
    h.feed(b"ab")
    h.feed(b"cd")
    h.eof()
    await settle()
    assert h.out.data == b"abcd"
    assert h.out.closed and h.done


async def test_latency_releases_each_chunk_at_read_time_plus_latency(run_toxic, clock) -> None:
    """Chunks read 50 ms apart under 500 ms latency leave 500 ms after their reads (pipelined)."""
    h = run_toxic(LatencyToxic(latency=500))
    for i in range(5):
        h.feed(bytes([i]))
        await clock.advance(0.05)
    await clock.advance(1.0)
    assert h.out.times() == pytest.approx([0.5, 0.55, 0.6, 0.65, 0.7])
    assert h.out.data == bytes(range(5))


async def test_latency_jitter_stays_within_bounds_and_keeps_order(run_toxic, clock) -> None:
    """latency 100 ± 50 gives delays in [50, 150) ms and never reorders chunks."""
    h = run_toxic(LatencyToxic(latency=100, jitter=50), seed=3)
    for i in range(200):
        h.feed(i.to_bytes(2, "big"), at=i * 0.2)
    await clock.advance(41.0)
    delays = [t - i * 0.2 for i, t in enumerate(h.out.times())]
    assert len(delays) == 200
    assert min(delays) >= 0.05 - 1e-9 and max(delays) < 0.15
    assert h.out.data == b"".join(i.to_bytes(2, "big") for i in range(200))


def test_latency_delay_draws_integer_ms_in_half_open_range() -> None:
    """delay() is latency + U where U is an integer in [-jitter, +jitter)."""
    toxic = LatencyToxic(latency=10, jitter=3)
    rng = random.Random(1)
    seen = {round(toxic.delay(rng) * 1000) for _ in range(500)}
    assert seen == {7, 8, 9, 10, 11, 12}


async def test_latency_interrupt_releases_the_held_chunk_at_once(run_toxic, clock) -> None:
    """An interrupted latency toxic passes its held chunk on without the rest of its delay."""
    h = run_toxic(LatencyToxic(latency=2000))
    h.feed(b"x")
    await clock.advance(0.3)
    assert h.out.items == []
    await h.interrupt()
    assert h.out.times() == [0.3]
    assert h.interrupted


async def test_chained_latency_restamps_so_delays_add_up(run_toxic, clock) -> None:
    """A chunk leaving a latency toxic is stamped with its release time, so a second adds on top."""
    first = run_toxic(LatencyToxic(latency=200))
    first.feed(b"x")
    await clock.advance(0.25)
    ((_, chunk),) = first.out.items
    assert chunk is not None and chunk.time == pytest.approx(0.2)
    second = run_toxic(LatencyToxic(latency=150))
    second.input.put(chunk)
    await clock.advance(0.5)
    assert second.out.times() == [pytest.approx(0.35)]


# -- bandwidth -------------------------------------------------------------------


async def test_bandwidth_rate_1_sends_100_bytes_every_100ms(run_toxic, clock) -> None:
    """rate 1 KB/s cuts a 500-byte chunk into 100-byte slices, one per 100 ms."""
    h = run_toxic(BandwidthToxic(rate=1))
    h.feed(b"x" * 500)
    await clock.advance(1.0)
    sizes = [len(item.data) for _, item in h.out.items if item is not None]
    assert sizes == [100] * 5
    assert h.out.times() == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])


async def test_bandwidth_averages_the_configured_rate(run_toxic, clock) -> None:
    """1 MB at 500 KB/s (KB = 1000 B) takes 2 s of clock time."""
    h = run_toxic(BandwidthToxic(rate=500))
    for _ in range(32):
        h.feed(b"x" * 32_768)
    await clock.advance(5.0)
    assert len(h.out.data) == 32 * 32_768
    assert h.out.times()[-1] == pytest.approx(32 * 32_768 / 500_000, abs=0.01)


async def test_bandwidth_rate_0_stalls_forever(run_toxic, clock) -> None:
    """rate 0 delivers nothing (Toxiproxy 2.12's measured behaviour)."""
    h = run_toxic(BandwidthToxic(rate=0))
    h.feed(b"data")
    await clock.advance(10.0)
    assert h.out.items == []


async def test_bandwidth_interrupt_flushes_the_rest(run_toxic, clock) -> None:
    """Interrupting mid-chunk passes the unsent remainder on at once."""
    h = run_toxic(BandwidthToxic(rate=1))
    h.feed(b"y" * 350)
    await clock.advance(0.15)
    await h.interrupt()
    assert h.out.data == b"y" * 350


# -- slow_close / timeout / reset_peer ---------------------------------------------


async def test_slow_close_delays_only_end_of_stream(run_toxic, clock) -> None:
    """Data passes at once; EOF leaves `delay` ms after it arrived."""
    h = run_toxic(SlowCloseToxic(delay=1000))
    h.feed(b"bye")
    h.eof()
    await clock.advance(0.5)
    assert h.out.data == b"bye" and not h.out.closed
    await clock.advance(0.6)
    assert h.out.items[-1] == (1.0, None)


async def test_slow_close_interrupt_keeps_the_eof(run_toxic, clock) -> None:
    """An interrupted slow_close gives the EOF back instead of losing it (Toxiproxy loses it)."""
    h = run_toxic(SlowCloseToxic(delay=1000))
    h.eof()
    await clock.advance(0.2)
    await h.interrupt()
    assert len(h.input) == 1
    h.start(NoopToxic())
    await settle()
    assert h.out.closed


async def test_timeout_drops_data_and_closes_after_idle(run_toxic, clock) -> None:
    """timeout 1000: every chunk is dropped; the stream closes 1 s after the last chunk."""
    h = run_toxic(TimeoutToxic(timeout=1000))
    for _ in range(10):
        h.feed(b"ping")
        await clock.advance(0.3)
    assert h.out.items == []
    await clock.advance(0.69)
    assert not h.out.closed
    await clock.advance(0.02)
    assert h.out.items == [(pytest.approx(3.7), None)]


async def test_timeout_zero_blackholes_forever(run_toxic, clock) -> None:
    """timeout 0 drops data and never closes by itself."""
    h = run_toxic(TimeoutToxic(timeout=0))
    h.feed(b"x")
    await clock.advance(60)
    assert h.out.items == [] and not h.done


async def test_timeout_cleanup_closes_the_stream(run_toxic, clock) -> None:
    """Removing a timeout toxic (its cleanup) closes the connection."""
    toxic = TimeoutToxic(timeout=0)
    h = run_toxic(toxic)
    await h.interrupt()
    toxic.cleanup(h.stub)
    assert h.out.closed


async def test_reset_peer_is_inert_until_the_first_chunk(run_toxic, clock) -> None:
    """With no traffic nothing happens; the first chunk is dropped and the close follows."""
    h = run_toxic(ResetPeerToxic(timeout=1000))
    await clock.advance(5)
    assert h.out.items == []
    h.feed(b"first")
    await clock.advance(0.99)
    assert h.out.items == []
    await clock.advance(0.02)
    assert h.out.items == [(pytest.approx(6.0), None)]


async def test_reset_peer_wait_ignores_interrupts(run_toxic, clock) -> None:
    """Once triggered, reset_peer finishes its wait and closes even if interrupted."""
    h = run_toxic(ResetPeerToxic(timeout=500))
    h.feed(b"x")
    await clock.advance(0.1)
    await h.interrupt()
    assert not h.done
    await clock.advance(0.5)
    assert h.out.closed and not h.interrupted


# -- slicer / limit_data -------------------------------------------------------------


def test_slicer_pieces_cover_the_chunk_in_order() -> None:
    """Pieces are contiguous, in order, and with no variation sized in (avg/2, avg]."""
    toxic = SlicerToxic(average_size=10, size_variation=0)
    pieces = toxic.pieces(1000, random.Random(1))
    assert pieces[0][0] == 0 and pieces[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in itertools.pairwise(pieces))
    assert all(5 < end - start <= 10 for start, end in pieces)


def test_slicer_handles_degenerate_sizes() -> None:
    """average 0 or a variation larger than the piece still terminates with non-empty pieces."""
    for toxic in (SlicerToxic(0, 0), SlicerToxic(2, 50)):
        pieces = toxic.pieces(64, random.Random(2))
        assert sum(end - start for start, end in pieces) == 64
        assert all(end > start for start, end in pieces)


async def test_slicer_spaces_pieces_by_delay_microseconds(run_toxic, clock) -> None:
    """delay 20000 µs puts 20 ms between consecutive pieces."""
    h = run_toxic(SlicerToxic(average_size=10, size_variation=0, delay=20_000))
    h.feed(bytes(range(40)))
    await clock.advance(1)
    assert h.out.data == bytes(range(40))
    times = h.out.times()
    assert [round(b - a, 3) for a, b in itertools.pairwise(times)] == [0.02] * 3


async def test_limit_data_passes_exact_bytes_then_closes(run_toxic, clock) -> None:
    """limit 10: the chunk crossing the limit is cut, then end-of-stream."""
    h = run_toxic(LimitDataToxic(bytes=10))
    h.feed(b"123456")
    h.feed(b"7890abc")
    await settle()
    assert h.out.data == b"1234567890" and h.out.closed


async def test_limit_data_count_survives_a_restart(run_toxic, clock) -> None:
    """The per-connection byte count is state, so an update does not reset it."""
    h = run_toxic(LimitDataToxic(bytes=10))
    h.feed(b"123456")
    await settle()
    await h.interrupt()
    h.start(LimitDataToxic(bytes=8))
    h.feed(b"abcdef")
    await settle()
    assert h.out.data == b"123456ab" and h.out.closed


# -- mobile toxics ---------------------------------------------------------------------


async def test_blackhole_holds_everything_in_order(run_toxic, clock) -> None:
    """A blackhole reads nothing: chunks and EOF stay queued, in order, for later delivery."""
    h = run_toxic(BlackholeToxic())
    h.feed(b"1")
    h.feed(b"2")
    h.eof()
    await clock.advance(30)
    assert h.out.items == []
    await h.interrupt()
    assert [item.data if item else None for item in h.input.drain()] == [b"1", b"2", None]


def test_retransmissions_double_from_the_first_send_and_stop_at_the_cap() -> None:
    """RFC 6298: RTO 1 s doubling -> sends at 1, 3, 7, 15, 31, 63 s after the first; capped at 8 s
    the intervals go 1, 2, 4, 8, 8, ...; a path that never broke resumes at once."""
    assert next_retransmission(0.0, 60.0, 1.0, 120.0) == 63.0
    assert next_retransmission(0.0, 7.0, 1.0, 120.0) == 7.0
    assert next_retransmission(10.0, 41.5, 1.0, 120.0) == 73.0
    assert next_retransmission(0.0, 40.0, 1.0, 8.0) == 47.0  # 1+2+4+8+8+8+8+8
    assert next_retransmission(0.0, 60.0, 0.0, 120.0) == 60.0
    assert next_retransmission(5.0, 3.0, 1.0, 120.0) == 5.0


async def test_blackhole_release_waits_for_the_next_retransmission(run_toxic, clock) -> None:
    """Data stuck since t=2 in a tunnel that ends at t=60 flows at t=2+63=65, not at 60; in order."""
    state = BlackholeToxic().new_state()
    h = run_toxic(BlackholeToxic(rto_initial=1000), state=state)
    await clock.advance(2)
    h.feed(b"1")
    await clock.advance(10)
    h.feed(b"2")
    await clock.advance(48)
    assert h.out.items == []
    await h.interrupt()
    h.start(BlackholeToxic(rto_initial=1000, released=1))
    await clock.advance(4.9)
    assert h.out.items == []
    await clock.advance(0.2)
    assert h.out.data == b"12" and h.out.times() == pytest.approx([65.0, 65.0])
    h.feed(b"3")
    await settle()
    assert h.out.data == b"123"


async def test_blackhole_release_is_instant_for_an_idle_connection_or_without_backoff(
    run_toxic, clock
) -> None:
    """No byte sent during the tunnel: no timer runs, so nothing waits; rto_initial 0 is the old restore."""
    idle = run_toxic(BlackholeToxic(rto_initial=1000))
    plain = run_toxic(BlackholeToxic())
    plain.feed(b"x")
    await clock.advance(30)
    for h, toxic in (
        (idle, BlackholeToxic(rto_initial=1000, released=1)),
        (plain, BlackholeToxic(released=1)),
    ):
        await h.interrupt()
        h.start(toxic)
    idle.feed(b"y")
    await settle()
    assert plain.out.data == b"x" and idle.out.data == b"y"


async def test_idle_timeout_silences_after_idle(run_toxic, clock) -> None:
    """No chunk for `timeout` ms: the connection is silenced (no close is sent)."""
    h = run_toxic(IdleTimeoutToxic(timeout=2000))
    h.feed(b"hello")
    await clock.advance(1.99)
    assert h.out.data == b"hello" and not h.control.silenced
    await clock.advance(0.02)
    assert h.control.silenced and not h.out.closed


async def test_idle_timeout_heartbeats_keep_it_alive(run_toxic, clock) -> None:
    """A chunk every second resets the 2 s idle clock; traffic keeps flowing."""
    h = run_toxic(IdleTimeoutToxic(timeout=2000))
    for _ in range(6):
        h.feed(b"hb")
        await clock.advance(1.0)
    assert not h.control.silenced and h.out.data == b"hb" * 6


async def test_idle_timeout_counts_both_directions(run_toxic, clock) -> None:
    """Activity seen by the other direction's stage (shared state) postpones the timeout."""
    state = IdleState()
    toxic = IdleTimeoutToxic(timeout=2000)
    up = run_toxic(toxic, state=state)
    down = run_toxic(toxic, state=state)
    for _ in range(4):
        down.feed(b"event")
        await clock.advance(1.0)
    assert not up.control.silenced and not down.control.silenced
    await clock.advance(2.1)
    assert up.control.silenced and down.control.silenced


async def test_pause_reader_holds_the_source_until_interrupted(run_toxic, clock) -> None:
    """pause_reader stops source reads and holds queued data; interruption releases both."""
    h = run_toxic(PauseReaderToxic())
    h.feed(b"queued")
    await clock.advance(5)
    assert h.control.holds and h.out.items == []
    await h.interrupt()
    assert not h.control.holds and len(h.input) == 1


async def test_pause_reader_close_after_counts_across_restarts(run_toxic, clock) -> None:
    """close_after 3000 closes 3 s after the pause began, even if the stage restarted."""
    h = run_toxic(PauseReaderToxic(close_after=3000))
    await clock.advance(2.0)
    await h.interrupt()
    h.start()
    await clock.advance(0.9)
    assert not h.out.closed
    await clock.advance(0.2)
    assert h.out.items == [(pytest.approx(3.0), None)]
