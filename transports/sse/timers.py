"""The floors of ``sse``'s and ``sse-naive``'s timers, apart from the client and server that apply them.

Their registry entries (``__init__``) list these as timers a run cannot
scale below, without importing the watcher or the web server.
"""

from __future__ import annotations

from progressbench.transports.timers import CONNECT_S

from progressbench.core.timers import Timer

#: The stream's connect timeout never goes below this (s): scaling compresses the job, not the CPU.
MIN_STREAM_CONNECT_S = 1.0
#: The streams have no read timeout (the watchdog decides); their connect floor is the one unscaled timer.
TIMERS = (Timer("sse stream connect timeout", CONNECT_S, floor_s=MIN_STREAM_CONNECT_S),)

#: ``sse-naive``'s relay connect timeout to a worker (unscaled s) and its floor (the CPU does not
#: speed up).
RELAY_CONNECT_S = 8.0
MIN_RELAY_CONNECT_S = 1.0
NAIVE_TIMERS = (Timer("sse-naive relay connect timeout", RELAY_CONNECT_S, floor_s=MIN_RELAY_CONNECT_S),)
