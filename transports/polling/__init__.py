"""``polling``: ``POST`` answers ``202 {href}``; the phone polls the status URL."""

from progressbench.transports.http import CONNECT_TIMER, READ_TIMER
from progressbench.transports.polling.client import PollingWatcher
from progressbench.transports.polling.server import PollingServer
from progressbench.transports.types import Billed, Mode, Transport

BILLING = (
    Billed("api", Mode.CLOUD_RUN_REQUEST, "api", why="every poll is a short Cloud Run request"),
    Billed(
        "worker",
        Mode.CLOUD_RUN_INSTANCE,
        "worker",
        why="the job runs after the 202, so CPU must stay allocated (instance-based)",
    ),
)

TRANSPORT = Transport(
    name="polling",
    server=PollingServer(),
    client=PollingWatcher,
    package=__name__,
    variants=frozenset({"log"}),
    summary="202 + status URL polled for the job's current state (ETag, Retry-After); :log reads the log",
    lease_watchdog=True,
    billing={"": BILLING},
    timers=(CONNECT_TIMER, READ_TIMER),
)

__all__ = ["TRANSPORT", "PollingServer", "PollingWatcher"]
