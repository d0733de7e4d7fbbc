"""The dispatcher applies the pure schedule: what it records after each attempt, and what it sends."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from progressbench.transports.relay.queue.dispatcher import Dispatcher, QueueMeters
from progressbench.transports.relay.queue.oidc import SigningKey, verify
from progressbench.transports.relay.queue.push import PushAnswer
from progressbench.transports.relay.queue.retry import QueueConfig, backoff_s
from progressbench.transports.relay.queue.tasks import AttemptOutcome, TaskRow
from prometheus_client import CollectorRegistry

from progressbench.core.config import Timing

CONFIG = QueueConfig(min_backoff_s=10, max_backoff_s=300, max_doublings=3, max_attempts=9)
TIMING = Timing(time_scale=0.01)


class FakeTable:
    """Stands in for the task table: keeps what the dispatcher writes after each attempt."""

    def __init__(self) -> None:
        self.recorded: list[dict[str, Any]] = []
        self.writes = 0

    async def record_attempts(self, outcomes: list[AttemptOutcome]) -> None:
        self.writes += 1
        self.recorded.extend(
            {
                "name": o.name,
                "status": o.status,
                "error": o.error,
                "executed": o.executed,
                "done": o.done,
                "retry_in_s": o.retry_in_s,
            }
            for o in outcomes
        )


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


def task(attempts_before: int) -> TaskRow:
    now = datetime.now(UTC)
    return TaskRow(
        name="job-x",
        queue="relay",
        job_id=uuid.uuid4(),
        url="http://worker/relay/tasks/run",
        audience="http://worker",
        body={"job_id": "x"},
        state="dispatching",
        schedule_time=now,
        dispatch_count=attempts_before,
        response_count=attempts_before,
        last_status=None,
        created_at=now,
    )


@dataclass(frozen=True)
class Sent:
    """One push as the dispatcher handed it to its transport."""

    url: str
    body: bytes
    headers: dict[str, str]


class AnsweringPusher:
    """Stands in for the push transport: answers every push with one status and headers."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.answer = PushAnswer(status, (headers or {}).get("Retry-After"))
        self.sent: list[Sent] = []

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], *, connect_timeout_s: float
    ) -> PushAnswer:
        self.sent.append(Sent(url, body, dict(headers)))
        return self.answer


async def push_once(
    key: SigningKey,
    status: int,
    attempts_before: int,
    headers: dict[str, str] | None = None,
    seen: list[Sent] | None = None,
) -> dict[str, Any]:
    table = FakeTable()
    pusher = AnsweringPusher(status, headers)
    dispatcher = Dispatcher(
        table,  # type: ignore[arg-type]
        CONFIG,
        TIMING,
        pusher,
        key,
        "http://queue",
        QueueMeters(CollectorRegistry(), "queue"),
    )
    await dispatcher._push(task(attempts_before))
    if seen is not None:
        seen.extend(pusher.sent)
    return table.recorded[-1]


@pytest.mark.parametrize("attempts_before", range(0, 8))
async def test_each_failure_is_rescheduled_on_the_documented_backoff(
    key: SigningKey, attempts_before: int
) -> None:
    """After failed attempt n the next ETA is backoff(n) for the configured, time-scaled parameters."""
    recorded = await push_once(key, 500, attempts_before)
    expected = backoff_s(CONFIG.scaled(TIMING), attempts_before + 1)
    assert recorded["done"] is None and recorded["retry_in_s"] == pytest.approx(expected)
    assert recorded["executed"] is False, "a 5xx is not an execution"


async def test_max_attempts_ends_the_task_and_2xx_succeeds(key: SigningKey) -> None:
    """The 9th failed attempt marks the task failed; any 2xx marks it succeeded."""
    assert (await push_once(key, 500, 8))["done"] == "failed"
    assert (await push_once(key, 202, 3))["done"] == "succeeded"
    assert (await push_once(key, 404, 0))["executed"] is True


async def test_retry_after_on_503_and_the_request_sent(key: SigningKey) -> None:
    """503 + Retry-After waits at least that long; the push carries a valid OIDC token and the headers."""
    seen: list[Sent] = []
    recorded = await push_once(key, 503, 0, headers={"Retry-After": "7"}, seen=seen)
    assert recorded["retry_in_s"] == 7.0
    request = seen[0]
    assert request.headers["X-CloudTasks-TaskRetryCount"] == "0"
    assert request.headers["X-CloudTasks-QueueName"] == "relay"
    assert json.loads(request.body) == {"job_id": "x"} and request.url == "http://worker/relay/tasks/run"
    token = request.headers["Authorization"].removeprefix("Bearer ")
    claims = verify(token, {key.kid: key.public_jwk}, issuer="http://queue", audience="http://worker")
    assert claims["exp"] - claims["iat"] == CONFIG.oidc_ttl_s
