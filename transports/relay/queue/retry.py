"""The queue's pure parts: Cloud Tasks retry schedule, give-up rule, rate limit, headers.

Sans-I/O: values in, decisions out; the dispatcher (:mod:`progressbench.transports.relay.queue.dispatcher`)
is the only caller with sockets and clocks, and it calls exactly these
functions, so the unit tests pin the schedule the dispatcher really uses.

Cloud Tasks' documented backoff (``RetryConfig.max_doublings``, platform-facts
§2): the interval starts at ``min_backoff``, doubles ``max_doublings`` times,
then grows linearly by ``2**max_doublings * min_backoff`` per retry, capped at
``max_backoff``. Example: min 10 s, max 300 s, doublings 3 ->
10, 20, 40, 80, 160, 240, 300, 300 ...
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from progressbench.core.config import Timing

SUCCESS = range(200, 300)
#: Statuses on which Cloud Tasks honours ``Retry-After`` (and backs off harder).
THROTTLED = frozenset({429, 503})


class QueueConfig(BaseModel):
    """One queue's settings, in real seconds at time scale 1.0 (Cloud Tasks' defaults).

    Durations are scaled by the run's time scale where they are used; rates
    and counts are not (they describe the queue's machinery, not the job).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(default="relay", pattern=r"^[A-Za-z0-9-]+$")
    max_attempts: int = Field(default=100, ge=-1)  # -1: unlimited
    max_retry_duration_s: float = Field(default=0.0, ge=0)  # 0: unlimited
    min_backoff_s: float = Field(default=0.1, ge=0)
    max_backoff_s: float = Field(default=3600.0, ge=0)
    max_doublings: int = Field(default=16, ge=0)
    max_dispatches_per_second: float = Field(default=500.0, gt=0, le=500)
    max_burst_size: int = Field(default=100, ge=1, le=500)
    max_concurrent_dispatches: int = Field(default=1000, ge=1, le=5000)
    #: HTTP dispatch deadline: default 10 min, allowed 15 s - 30 min.
    dispatch_deadline_s: float = Field(default=600.0, ge=15.0, le=1800.0)
    #: Lifetime of each push's OIDC token (Google ID tokens live about 1 h; not scaled:
    #: JWT times are whole seconds).
    oidc_ttl_s: int = Field(default=3600, ge=60)
    #: Base URLs the queue may push to besides the worker service (``peers["worker"]``), e.g. a
    #: benchmark's sink. Anything else is refused at CreateTask: the allowlist of push targets.
    push_targets: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _ordered(self) -> QueueConfig:
        if self.max_backoff_s < self.min_backoff_s:
            raise ValueError("max_backoff_s is below min_backoff_s")
        return self

    def scaled(self, timing: Timing) -> ScaledRetry:
        return ScaledRetry(
            min_backoff_s=timing.scaled(self.min_backoff_s),
            max_backoff_s=timing.scaled(self.max_backoff_s),
            max_doublings=self.max_doublings,
            max_attempts=self.max_attempts,
            max_retry_duration_s=timing.scaled(self.max_retry_duration_s),
        )


@dataclass(frozen=True, slots=True)
class ScaledRetry:
    """The retry parameters as the dispatcher applies them (already time-scaled)."""

    min_backoff_s: float
    max_backoff_s: float
    max_doublings: int
    max_attempts: int
    max_retry_duration_s: float


def backoff_s(retry: ScaledRetry, retry_number: int) -> float:
    """The wait before retry ``retry_number`` (1 = the wait after the first failed attempt)."""
    if retry_number < 1:
        raise ValueError("retry_number starts at 1")
    k = retry_number - 1
    if k <= retry.max_doublings:
        delay = retry.min_backoff_s * 2.0**k
    else:
        step = retry.min_backoff_s * 2.0**retry.max_doublings
        delay = step * (1 + k - retry.max_doublings)
    return min(delay, retry.max_backoff_s)


def gives_up(retry: ScaledRetry, attempts_made: int, age_s: float) -> bool:
    """True when no further attempt may be made after ``attempts_made`` failed attempts.

    Cloud Tasks stops only when *both* limits are reached; an unlimited
    limit (``max_attempts`` -1, ``max_retry_duration`` 0) is one that never
    binds, so with the defaults (100 attempts, duration 0) the count decides.
    """
    attempts_hit = retry.max_attempts != -1 and attempts_made >= retry.max_attempts
    duration_hit = retry.max_retry_duration_s == 0 or age_s >= retry.max_retry_duration_s
    if retry.max_attempts == -1:
        return retry.max_retry_duration_s > 0 and age_s >= retry.max_retry_duration_s
    return attempts_hit and duration_hit


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if now is None:
            return None
        seconds = (when - now).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(seconds, 0.0)


def next_delay(retry: ScaledRetry, retry_number: int, status: int | None, retry_after: float | None) -> float:
    """The wait before the next attempt after a failed one with ``status`` (None: no response).

    ``Retry-After`` is honoured on 429 and 503 as sent (the target asked for
    that much wall time; the testbed's targets scale their hints with the run),
    never shortening the schedule.
    """
    delay = backoff_s(retry, retry_number)
    if status in THROTTLED and retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def counts_as_execution(status: int | None) -> bool:
    """``X-CloudTasks-TaskExecutionCount`` counts responses received, excluding 5xx."""
    return status is not None and status < 500


def task_headers(
    queue: str,
    task: str,
    retry_count: int,
    execution_count: int,
    eta_epoch_s: float,
    previous_status: int | None,
    retry_reason: str | None,
) -> dict[str, str]:
    """The headers Cloud Tasks sends with every attempt of an HTTP target task."""
    headers = {
        "X-CloudTasks-QueueName": queue,
        "X-CloudTasks-TaskName": task,
        "X-CloudTasks-TaskRetryCount": str(retry_count),
        "X-CloudTasks-TaskExecutionCount": str(execution_count),
        "X-CloudTasks-TaskETA": f"{eta_epoch_s:.6f}",
        "User-Agent": "Google-Cloud-Tasks",
    }
    if previous_status is not None:
        headers["X-CloudTasks-TaskPreviousResponse"] = str(previous_status)
    if retry_reason:
        headers["X-CloudTasks-TaskRetryReason"] = retry_reason
    return headers


@dataclass
class TokenBucket:
    """``max_dispatches_per_second`` with ``max_burst_size``: how long until the next dispatch.

    Pure bookkeeping: the caller passes its monotonic clock reading.
    """

    rate: float
    burst: int
    tokens: float | None = None
    updated: float = 0.0

    def available(self, now: float) -> float:
        """Tokens in the bucket at ``now``; negative while takes are reserved ahead of the refill."""
        if self.tokens is None:
            return float(self.burst)
        return min(float(self.burst), self.tokens + (now - self.updated) * self.rate)

    def headroom(self, now: float, within_s: float) -> int:
        """How many takes at ``now`` would each wait no longer than ``within_s``, nor a burst's refill.

        The dispatcher claims no more tasks than this: a claimed task holds a
        lease while it waits for its token, so claiming far ahead of the rate
        only lengthens those waits (and could outlast the lease).
        """
        return max(0, math.floor(self.available(now) + self._ahead(within_s)))

    def until_headroom(self, now: float, wanted: int, within_s: float) -> float:
        """Seconds from ``now`` until :meth:`headroom` reaches ``wanted`` (0 if it already has)."""
        missing = wanted - (self.available(now) + self._ahead(within_s))
        return max(missing / self.rate, 0.0)

    def _ahead(self, within_s: float) -> float:
        return min(float(self.burst), max(within_s, 0.0) * self.rate)

    def take(self, now: float) -> float:
        """Take one token; returns 0 when one was available, else the seconds to wait first.

        A positive answer also reserves the token (the bucket goes negative),
        so concurrent callers queue up in order.
        """
        if self.tokens is None:
            self.tokens, self.updated = float(self.burst), now
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1.0
        if self.tokens >= 0:
            return 0.0
        return -self.tokens / self.rate
