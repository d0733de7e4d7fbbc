"""The HTTP client every transport's phone uses, built the same way for all.

Each phone gets its own ``httpx.AsyncClient`` (its own connections, as a real
device has), but they share one SSL context: building one per client costs
tens of milliseconds of CPU, and hundreds of phones starting at once would
block the agent's event loop long enough to fail their own connect timeouts.

Timeouts scale with the run, with floors: a scaled run compresses the job
and the network faults, not the client machine's CPU.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from functools import lru_cache

import httpx

from progressbench.core.config import Timing
from progressbench.core.errors import TransportError
from progressbench.core.timers import Timer

#: Floors (seconds) that time scaling never goes below.
MIN_CONNECT_S = 5.0
MIN_READ_S = 2.0
#: What the phone's HTTP timeouts stand for (real seconds), before scaling and floors.
CONNECT_S = 10.0
READ_S = 10.0

#: The floors as timers a run cannot scale below: listed per cell as distortions.
CONNECT_TIMER = Timer("phone HTTP connect timeout", CONNECT_S, floor_s=MIN_CONNECT_S)
READ_TIMER = Timer("phone HTTP read timeout", READ_S, floor_s=MIN_READ_S)


@lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def timeouts(timing: Timing, read_s: float = READ_S) -> httpx.Timeout:
    return httpx.Timeout(
        max(timing.scaled(read_s), MIN_READ_S),
        connect=max(timing.scaled(CONNECT_S), MIN_CONNECT_S),
    )


def phone_client(
    base_url: str, timing: Timing, read_s: float | None = READ_S, connect_s: float | None = None
) -> httpx.AsyncClient:
    """A phone's HTTP client; ``read_s=None`` for streams that may stay quiet indefinitely."""
    timeout = timeouts(timing, read_s or READ_S)
    if read_s is None:
        timeout = httpx.Timeout(timeout.connect if connect_s is None else connect_s, read=None)
    elif connect_s is not None:
        timeout = httpx.Timeout(timeout.read, connect=connect_s)
    return httpx.AsyncClient(base_url=base_url, timeout=timeout, verify=_ssl_context())


async def submit_job(
    http: httpx.AsyncClient,
    path: str,
    body: dict[str, object],
    backoff: Callable[[int], float],
    params: dict[str, str] | None = None,
) -> dict[str, str]:
    """POST a job (expecting ``202``); retry only when the request surely never reached the server.

    A connection that could not be made is safe to retry; anything later (a
    read timeout, a reset after sending) might have created the job, so it
    is not retried here: a blind re-POST is how duplicate jobs are made.
    Any answer other than 202 raises :class:`TransportError`.
    """
    attempt = 0
    while True:
        try:
            response = await http.post(path, json=body, params=params)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            attempt += 1
            await asyncio.sleep(backoff(attempt))
            continue
        if response.status_code != 202:
            raise TransportError(f"create job answered {response.status_code}: {response.text[:200]}")
        data: dict[str, str] = response.json()
        return data
