"""The phone's HTTP timeouts and their floors, apart from the HTTP client that applies them.

Registry entries list these timers (a run cannot scale them below their
floors: each cell reports them as distortions); keeping them out of
:mod:`progressbench.transports.http` lets an entry name them without
importing httpx.
"""

from __future__ import annotations

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

__all__ = ["CONNECT_S", "CONNECT_TIMER", "MIN_CONNECT_S", "MIN_READ_S", "READ_S", "READ_TIMER"]
