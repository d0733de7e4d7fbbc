"""``relay``: a Cloud-Tasks-style queue pushes the job to a worker; steps go to a PartyKit-style room."""

from progressbench.transports.relay.client import TIMERS, RelayWatcher
from progressbench.transports.relay.server import ACK_AT_END, RelayServer
from progressbench.transports.types import ServiceSpec, Transport

TRANSPORT = Transport(
    name="relay",
    server=RelayServer(),
    client=RelayWatcher,
    package=__name__,
    variants=frozenset({ACK_AT_END}),
    summary="queue push with OIDC (ACK 202, or at the end), steps published to a room per job",
    services=(
        ServiceSpec(role="queue", module="progressbench.transports.relay.queue.service", client_facing=False),
        ServiceSpec(role="rooms", module="progressbench.transports.relay.rooms.service", client_facing=True),
    ),
    migrations=("migrations/003_relay.sql",),
    timers=TIMERS,
)

__all__ = ["TRANSPORT", "RelayServer", "RelayWatcher"]
