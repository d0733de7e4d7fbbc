"""The front's slot accounting (no sockets): round-robin, weights by the time scale, queue then 429."""

from __future__ import annotations

import asyncio

from progressbench.app.front import Backend, Front, FrontSettings

A, B = Backend("api-1", "127.0.0.1", 1), Backend("api-2", "127.0.0.1", 2)


def front(concurrency: int, short_weight: float, backends: list[Backend]) -> Front:
    settings = FrontSettings(
        concurrency=concurrency,
        queue_s=0.05,
        retry_after="0.1",
        header_timeout_s=1.0,
        short_weight=short_weight,
    )
    return Front("api", settings, lambda: backends)


def test_short_requests_weigh_the_time_scale_and_streams_a_whole_slot() -> None:
    """At scale 0.1 ten polls fit in one slot's worth; a request that turns out to be a stream
    takes a whole slot; requests go round-robin to instances with room."""

    async def scenario() -> None:
        f = front(2, 0.1, [A, B])
        slots = [await f._acquire(set()) for _ in range(40)]
        assert all(s is not None for s in slots)
        assert round(f.load("api-1"), 6) == round(f.load("api-2"), 6) == 2.0
        assert await f._acquire(set()) is None  # full: queued for the queue time, then None (a 429)
        assert f.stats.queued == 1
        for s in slots[:20]:
            assert s is not None
            await f._release(s)
        first = slots[20]
        assert first is not None
        f._hold(first)  # a stream: a whole slot
        assert (
            round(f.load(first.backend.name) + f.load("api-1" if first.backend is B else "api-2"), 6) == 2.9
        )

    asyncio.run(scenario())


def test_a_waiting_request_gets_the_slot_a_finished_one_frees() -> None:
    """Full instance: the next request waits, and is served the moment a slot is released."""

    async def scenario() -> None:
        f = front(1, 1.0, [A])
        f.settings.queue_s = 5.0
        held = await f._acquire(set())
        assert held is not None
        waiter = asyncio.create_task(f._acquire(set()))
        while f.waiting == 0:
            await asyncio.sleep(0)
        await f._release(held)
        got = await asyncio.wait_for(waiter, 5.0)
        assert got is not None and got.backend == A and f.waiting == 0

    asyncio.run(scenario())
