"""``relay``: a Cloud-Tasks-style queue pushes the job to a worker; steps go to a PartyKit-style room.

The registry entry names its server and client (imported on first use).
"""

from progressbench.transports.relay.timers import TIMERS
from progressbench.transports.types import Billed, Mode, ServiceSpec, Transport

#: The variant whose worker answers the queue's push only when the job has ended.
ACK_AT_END = "ack-at-end"

_API = Billed(
    "api", Mode.CLOUD_RUN_REQUEST, "api", why="enqueue and snapshot reads: short Cloud Run requests"
)
_QUEUE = Billed(
    "queue",
    Mode.CLOUD_TASKS,
    "queue",
    meters={"api_calls": ("pb_queue_operations_total",)},
    why="Cloud Tasks: every create and every push attempt is an operation",
)
#: PartyKit rooms deployed on Durable Objects, one object per job's room, no hibernation.
_ROOMS = Billed(
    "rooms",
    Mode.DURABLE_OBJECT,
    "rooms",
    meters={
        "http_requests": ("pb_relay_publishes_total", "pb_relay_connections_opened_total"),
        "ws_messages_in": ("pb_relay_messages_received_total",),
        "ws_messages_out": ("pb_messages_total",),
        "active_s": ("pb_room_active_seconds_total",),
        # a room is active while its phone watches the job: the job's commits and publishes between
        # its steps' waits (real time, measured on the worker) are inside that time, not stretched
        "active_overhead_s": ("worker/pb_work_processing_seconds_total",),
    },
    why="PartyKit rooms on Durable Objects: publishes and joins, incoming messages / 20, active GB-s",
)
BILLING = {
    "": (
        _API,
        _QUEUE,
        Billed(
            "worker",
            Mode.CLOUD_RUN_INSTANCE,
            "worker",
            why="ACK 202 first, job after it: CPU must stay allocated (instance-based)",
        ),
        _ROOMS,
    ),
    ACK_AT_END: (
        _API,
        _QUEUE,
        Billed(
            "worker",
            Mode.CLOUD_RUN_REQUEST,
            "worker",
            why="the push stays open until the job ends: request-based covers the whole job",
        ),
        _ROOMS,
    ),
}

TRANSPORT = Transport(
    name="relay",
    server_ref="progressbench.transports.relay.server:RelayServer",
    client_ref="progressbench.transports.relay.client:RelayWatcher",
    package=__name__,
    variants=frozenset({ACK_AT_END}),
    summary="queue push with OIDC (ACK 202, or at the end), steps published to a room per job",
    services=(
        ServiceSpec(role="queue", module="progressbench.transports.relay.queue.service", client_facing=False),
        ServiceSpec(role="rooms", module="progressbench.transports.relay.rooms.service", client_facing=True),
    ),
    migrations=("migrations/003_relay.sql", "migrations/006_relay_public_keys.sql"),
    grants="grants.toml",
    context="worker/worker-background",
    variant_contexts={ACK_AT_END: "worker/request"},
    billing=BILLING,
    timers=TIMERS,
)

__all__ = ["ACK_AT_END", "TRANSPORT"]
