"""The queue's per-batch costs: ID tokens reused until near expiry, attempts written together,
claims sized to the rate limiter. Pure parts and the dispatcher over a stand-in table."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import pytest
from progressbench.transports.relay.queue.dispatcher import MIN_CLAIM, AttemptLog, Dispatcher, QueueMeters
from progressbench.transports.relay.queue.oidc import (
    LEEWAY_S,
    OidcRejected,
    SigningKey,
    TokenCache,
    refresh_margin,
    verify,
)
from progressbench.transports.relay.queue.push import PushAnswer
from progressbench.transports.relay.queue.retry import QueueConfig
from progressbench.transports.relay.queue.tasks import AttemptOutcome, TaskRow, write_batches
from prometheus_client import CollectorRegistry

from progressbench.core.config import Timing

ISS, AUD = "http://queue", "http://worker"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


def test_a_token_is_reused_until_its_refresh_margin_then_replaced(key: SigningKey) -> None:
    """One signature per audience per token life, not per push; never sent with less than the margin left."""
    cache = TokenCache(key, ISS, ttl_s=3600)
    margin = refresh_margin(3600)
    first = cache.token(AUD, 1_000.0)
    assert cache.token(AUD, 1_000.0 + 3600 - margin - 1) == first
    assert cache.signed == 1
    renewed = cache.token(AUD, 1_000.0 + 3600 - margin)
    assert renewed != first and cache.signed == 2
    assert cache.token("http://other", 1_000.0 + 3600 - margin) != renewed, "one token per audience"
    assert cache.signed == 3


def test_a_reused_token_still_verifies_at_its_last_reuse(key: SigningKey) -> None:
    """The oldest token the cache hands out has the margin left: the worker accepts it."""
    ttl = 3600
    margin = refresh_margin(ttl)
    now = time.time()
    cache = TokenCache(key, ISS, ttl_s=ttl)
    minted_at = now - (ttl - margin - 2)  # minted long ago: 2 s of reuse left
    old = cache.token(AUD, minted_at)
    assert cache.token(AUD, now) == old
    claims = verify(old, {key.kid: key.public_jwk}, issuer=ISS, audience=AUD)
    assert claims["exp"] - now >= margin
    with pytest.raises(OidcRejected) as refused:  # the same token past exp (+ leeway) is refused
        expired = TokenCache(key, ISS, ttl_s=ttl).token(AUD, now - ttl - LEEWAY_S - 2)
        verify(expired, {key.kid: key.public_jwk}, issuer=ISS, audience=AUD)
    assert refused.value.status == 401


def test_the_margin_is_at_most_half_a_short_token_life() -> None:
    """A 60 s token (the shortest allowed) is reused for 30 s; an hour's token until 5 min before exp."""
    assert refresh_margin(60) == 30
    assert refresh_margin(3600) == 300


def test_a_clock_behind_the_tokens_issue_time_gets_a_new_token(key: SigningKey) -> None:
    """Reuse needs iat <= now: a wall clock stepped back never sends a token 'from the future'."""
    cache = TokenCache(key, ISS, ttl_s=3600)
    cache.token(AUD, 10_000.0)
    cache.token(AUD, 9_000.0)
    assert cache.signed == 2


def outcome(name: str, done: str | None = "succeeded") -> AttemptOutcome:
    return AttemptOutcome(name, 204, None, True, done, 0.0)


def test_write_batches_name_each_task_once_per_statement_in_order() -> None:
    """A task recorded twice goes to a later statement (its attempts stay in order), rows sorted."""
    batches = write_batches([outcome("b"), outcome("a"), outcome("b", None), outcome("c"), outcome("b")])
    assert [[o.name for o in batch] for batch in batches] == [["a", "b", "c"], ["b"], ["b"]]
    assert [o.done for o in (batches[0][1], batches[1][0], batches[2][0])] == ["succeeded", None, "succeeded"]
    assert write_batches([]) == []


class GatedTable:
    """Stands in for the task table: every write waits for the gate, and the writes are kept."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.writes: list[list[str]] = []
        self.fail_next = False

    async def record_attempts(self, outcomes: list[AttemptOutcome]) -> None:
        await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("connection lost")
        self.writes.append([o.name for o in outcomes])


async def test_attempts_finishing_during_a_write_go_together_in_the_next() -> None:
    """Group commit: one write in flight, five more attempts finish: they cost one more write."""
    table = GatedTable()
    log = AttemptLog(table)  # type: ignore[arg-type]
    first = asyncio.create_task(log.record(outcome("t0")))
    await asyncio.sleep(0)  # the writer takes t0 and waits on the gate
    rest = [asyncio.create_task(log.record(outcome(f"t{i}"))) for i in range(1, 6)]
    await asyncio.sleep(0)
    assert not first.done()
    table.gate.set()
    await asyncio.gather(first, *rest)
    assert table.writes == [["t0"], ["t1", "t2", "t3", "t4", "t5"]]


async def test_a_failed_write_fails_its_attempts_and_the_next_write_goes_on() -> None:
    """Every attempt in a failed write sees the error (its lease lapses, the task is pushed again)."""
    table = GatedTable()
    table.fail_next = True
    log = AttemptLog(table)  # type: ignore[arg-type]
    lost = [asyncio.create_task(log.record(outcome(f"t{i}"))) for i in range(3)]
    await asyncio.sleep(0)
    table.gate.set()
    results = await asyncio.gather(*lost, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    await log.record(outcome("t9"))
    assert table.writes == [["t9"]]


class BacklogTable:
    """Stands in for the task table with ``size`` due tasks: counts claims, status reads and writes."""

    def __init__(self, size: int) -> None:
        now = datetime.now(UTC)
        self.due = [
            TaskRow(
                f"t{i}",
                "relay",
                uuid.uuid4(),
                "http://worker/run",
                "http://worker",
                {},
                "queued",
                now,
                0,
                0,
                None,
                now,
            )
            for i in range(size)
        ]
        self.claims: list[tuple[int, int]] = []
        self.statuses = 0
        self.recorded: list[str] = []
        self.drained = asyncio.Event()
        self.size = size

    async def claim_due(self, limit: int, lease_s: float) -> list[TaskRow]:
        if limit <= 0:
            return []
        taken, self.due = self.due[:limit], self.due[limit:]
        self.claims.append((limit, len(taken)))
        return taken

    async def status(self) -> tuple[int, float | None]:
        self.statuses += 1
        return self.size - len(self.recorded), None

    async def record_attempts(self, outcomes: list[AttemptOutcome]) -> None:
        self.recorded.extend(o.name for o in outcomes)
        if len(self.recorded) >= self.size:
            self.drained.set()


async def test_a_backlog_is_claimed_in_batches_the_rate_limiter_can_let_out(key: SigningKey) -> None:
    """Draining a backlog: every task pushed once, claims of at least MIN_CLAIM while tasks wait on
    the limiter, no claim further ahead than a burst's refill, and no DB read per finished push."""
    size, burst = 600, 100
    table = BacklogTable(size)
    pushed: list[str] = []

    class Sink:
        async def post(
            self, url: str, body: bytes, headers: Mapping[str, str], *, connect_timeout_s: float
        ) -> PushAnswer:
            pushed.append(headers["X-CloudTasks-TaskName"])
            return PushAnswer(204, None)

    config = QueueConfig(max_dispatches_per_second=500, max_burst_size=burst)
    dispatcher = Dispatcher(
        table,  # type: ignore[arg-type]
        config,
        Timing(),
        Sink(),
        key,
        ISS,
        QueueMeters(CollectorRegistry(), "queue"),
    )
    runner = asyncio.create_task(dispatcher.run())
    try:
        await asyncio.wait_for(table.drained.wait(), 30)
    finally:
        await dispatcher.stop()
        runner.cancel()
    assert sorted(pushed) == sorted(table.recorded) and len(set(pushed)) == size
    limits = [limit for limit, _ in table.claims]
    assert max(limits) <= 2 * burst, "never more than a burst plus a burst's refill ahead"
    assert min(limits) >= MIN_CLAIM, f"no claim of a task or two per pass: {table.claims}"
    assert len(table.claims) <= size // MIN_CLAIM + 2
    assert table.statuses <= 3, "the depth is read when the backlog runs dry, not per push"
    assert dispatcher.tokens.signed == 1, "one ID token for the whole backlog"


async def test_at_the_concurrency_cap_a_finished_push_lets_the_next_task_out(key: SigningKey) -> None:
    """max_concurrent_dispatches 2, pushes held until let go one by one: never more than 2 in
    flight, and the loop, waiting at the cap, takes every task in turn (none starves)."""
    table = BacklogTable(5)
    in_flight, most = 0, 0
    release = asyncio.Semaphore(0)

    class HeldTarget:
        async def post(
            self, url: str, body: bytes, headers: Mapping[str, str], *, connect_timeout_s: float
        ) -> PushAnswer:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            await release.acquire()
            in_flight -= 1
            return PushAnswer(200, None)

    config = QueueConfig(max_concurrent_dispatches=2)
    dispatcher = Dispatcher(
        table,  # type: ignore[arg-type]
        config,
        Timing(),
        HeldTarget(),
        key,
        ISS,
        QueueMeters(CollectorRegistry(), "queue"),
    )
    runner = asyncio.create_task(dispatcher.run())
    try:
        for _ in range(5):
            await asyncio.wait_for(_until(lambda: in_flight > 0), 10)
            release.release()
        await asyncio.wait_for(table.drained.wait(), 10)
    finally:
        await dispatcher.stop()
        runner.cancel()
    assert sorted(table.recorded) == [f"t{i}" for i in range(5)]
    assert most == 2


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.001)
