"""``polling``: ``POST`` answers ``202 {href}``; the phone polls the status URL."""

from progressbench.transports.http import CONNECT_TIMER, READ_TIMER
from progressbench.transports.polling.client import PollingWatcher
from progressbench.transports.polling.server import PollingServer
from progressbench.transports.types import Transport

TRANSPORT = Transport(
    name="polling",
    server=PollingServer(),
    client=PollingWatcher,
    package=__name__,
    summary="202 + status URL polled with ETag/If-None-Match and Retry-After",
    timers=(CONNECT_TIMER, READ_TIMER),
)

__all__ = ["TRANSPORT", "PollingServer", "PollingWatcher"]
