"""The room server process: ``python -m progressbench.transports.relay.rooms.service`` (role ``rooms``).

Two ``websockets`` servers on the sockets the supervisor hands over: the
rooms' port (joins through :meth:`RoomHub.admit`, publishes through
:mod:`~progressbench.transports.relay.rooms.connection`) and the admin port,
which answers ``GET /metrics`` and ``GET /healthz`` for the supervisor from
``process_request`` and refuses WebSockets. Settings
(:class:`~progressbench.transports.relay.rooms.config.RoomsConfig`) can be
overridden with JSON in ``PROGRESSBENCH_RELAY_ROOMS``, read once, in
:func:`main`.

Shutdown story: SIGTERM closes both servers; open sockets get close code 1001
(going away) and their clients reconnect, to a fresh instance, to an empty
room (nothing to replay: the client fetches its snapshot from the API).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from urllib.parse import urlsplit

from progressbench.transports.relay.rooms.config import ROOMS_CONFIG_ENV, RoomsConfig
from progressbench.transports.relay.rooms.connection import connection_class
from progressbench.transports.relay.rooms.frames import SHARED_DEFLATE
from progressbench.transports.relay.rooms.http11 import MAX_PUBLISH_BYTES
from progressbench.transports.relay.rooms.hub import RoomHub
from progressbench.transports.relay.rooms.meters import RoomMeters
from pydantic import ValidationError
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from progressbench.core.config import ServiceConfig, load_service_config
from progressbench.core.errors import ProgressbenchError
from progressbench.kit.meters import Meters
from progressbench.kit.runtime import die_with_parent, inherited_sockets, mark_ready, setup_logging

log = logging.getLogger(__name__)

#: The closing handshake's wait, real seconds (websockets' own default), scaled with the run.
CLOSE_TIMEOUT_S = 10.0


def _admin_responder(
    meters: Meters, config: ServiceConfig
) -> Callable[[ServerConnection, Request], Response]:
    def respond(connection: ServerConnection, request: Request) -> Response:
        path = urlsplit(request.path).path
        if path == "/metrics":
            return Response(
                200,
                "OK",
                Headers({"Content-Type": "text/plain; version=0.0.4"}),
                meters.exposition(),
            )
        if path == "/healthz":
            body = json.dumps({"status": "ok", "role": config.role, "instance": config.instance})
            return Response(200, "OK", Headers({"Content-Type": "application/json"}), body.encode())
        return connection.respond(404, "not found\n")

    return respond


async def _refuse(connection: ServerConnection) -> None:  # the admin socket serves no WebSockets
    await connection.close(1008)


async def serve_rooms(config: ServiceConfig, rooms_config: RoomsConfig) -> None:
    listen, admin = inherited_sockets()
    meters = Meters(config.role, config.concurrency, config.timing)
    hub = RoomHub(config.token_secret, rooms_config, RoomMeters(meters), config.service_secret)
    ping = config.timing.scaled(rooms_config.ping_interval_s) if rooms_config.ping_interval_s else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(
            serve(
                hub.handler,
                sock=listen,
                process_request=hub.admit,
                create_connection=connection_class(hub.publish),
                # permessage-deflate as websockets' default, but without the server's context
                # takeover: a published message is compressed once for the whole room.
                extensions=[SHARED_DEFLATE],
                ping_interval=ping,
                ping_timeout=ping,
                max_size=MAX_PUBLISH_BYTES,
                close_timeout=config.timing.scaled(CLOSE_TIMEOUT_S),
                # The opening handshake, and a publish's whole request, within the header timeout.
                open_timeout=config.timing.header_timeout(),
            )
        )
        if admin is not None:
            await stack.enter_async_context(
                serve(_refuse, sock=admin, process_request=_admin_responder(meters, config))
            )
        mark_ready()
        log.info("rooms serving (cap %d per room)", rooms_config.max_connections_per_room)
        await stop.wait()
        log.info("rooms shutting down: %d sockets open", hub.total)


def main() -> int:
    try:
        config = load_service_config()
        rooms_config = RoomsConfig.model_validate_json(os.environ.get(ROOMS_CONFIG_ENV) or "{}")
    except (ProgressbenchError, ValidationError) as exc:
        print(f"progressbench rooms: {exc}", file=sys.stderr)
        return 2
    setup_logging(config)
    die_with_parent()
    try:
        asyncio.run(serve_rooms(config, rooms_config))
    except ProgressbenchError as exc:
        print(f"progressbench rooms: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
