"""``polling``: ``POST`` answers ``202 {href}``; the phone polls the status URL.

The registry entry names its server and client (imported on first use).
"""

from progressbench.transports.timers import CONNECT_TIMER, READ_TIMER
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

#: ``in-instance``: no worker; the API instance runs the job between the polls it serves.
IN_INSTANCE_BILLING = (
    Billed(
        "api",
        Mode.CLOUD_RUN_REQUEST,
        "api",
        why="seeds/003: the job runs on the API instance, which is billed (and has CPU) per request",
    ),
)

TRANSPORT = Transport(
    name="polling",
    server_ref="progressbench.transports.polling.server:PollingServer",
    client_ref="progressbench.transports.polling.client:PollingWatcher",
    package=__name__,
    variants=frozenset({"log", "in-instance"}),
    summary=(
        "202 + status URL polled for the job's current state (ETag, Retry-After); :log reads the log;"
        " :in-instance runs the job on the accepting API instance, CPU only while it serves a request"
    ),
    variant_contexts={"in-instance": "api/instance-background"},
    lease_watchdog=True,
    billing={"": BILLING, "in-instance": IN_INSTANCE_BILLING},
    timers=(CONNECT_TIMER, READ_TIMER),
)

__all__ = ["TRANSPORT"]
