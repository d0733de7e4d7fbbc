"""The floors of the relay phone's socket timers, apart from the watcher that applies them.

The registry entry (``__init__``) lists these as timers a run cannot scale
below, without importing the websockets client.
"""

from __future__ import annotations

from progressbench.transports.relay.resume import CONNECT_TIMEOUT_S
from progressbench.transports.timers import CONNECT_TIMER, READ_TIMER

from progressbench.core.timers import Timer

#: Floor (seconds) for the scaled connect timeout.
MIN_CONNECT_S = 1.0
#: The socket's closing handshake wait (real s), and the floor its scaled value keeps.
CLOSE_TIMEOUT_S = 2.0
MIN_CLOSE_S = 0.2
#: The floors, as timers a run cannot scale below (reported per cell as distortions).
TIMERS = (
    Timer("relay room connect timeout", CONNECT_TIMEOUT_S, floor_s=MIN_CONNECT_S),
    Timer("relay room close timeout", CLOSE_TIMEOUT_S, floor_s=MIN_CLOSE_S),
    CONNECT_TIMER,
    READ_TIMER,
)
