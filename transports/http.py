"""The HTTP client every transport's phone uses, built the same way for all.

Each phone gets its own ``httpx.AsyncClient`` (its own connections, as a real
device has), but they share one SSL context: building one per client costs
tens of milliseconds of CPU, and hundreds of phones starting at once would
block the agent's event loop long enough to fail their own connect timeouts.

Timeouts scale with the run, with floors: a scaled run compresses the job
and the network faults, not the client machine's CPU.
"""

from __future__ import annotations

import ssl
from functools import lru_cache

import httpx

from progressbench.config import Timing

#: Floors (seconds) that time scaling never goes below.
MIN_CONNECT_S = 5.0
MIN_READ_S = 2.0


@lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def timeouts(timing: Timing, read_s: float = 10.0) -> httpx.Timeout:
    return httpx.Timeout(
        max(timing.scaled(read_s), MIN_READ_S),
        connect=max(timing.scaled(10.0), MIN_CONNECT_S),
    )


def phone_client(base_url: str, timing: Timing, read_s: float = 10.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=timeouts(timing, read_s), verify=_ssl_context())
