"""Who may join, and who may publish into, which room: paths and tokens in, a verdict out.

Pure, so that every refusal can be pinned without a socket. A verdict is the
room's id, or ``(status, reason)`` to refuse with; the reasons are what the
client sees, so they name the fault (not the secret, not the token).

* Joining takes the job's own token (``job_id`` must be the room). The
  owner check only binds once the room has learnt its owner from a publish,
  and the cap counts seats already reserved, so concurrent joins cannot
  overshoot it.
* Publishing takes a service token for ``rooms``, signed with the services'
  own key (``ServiceConfig.service_secret``): phones only listen, and no
  phone token — whatever its ``sub`` — verifies against that key.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import parse_qs, urlsplit

from progressbench.core import identity, tokens

PARTY = "main"
#: What a service token must be made for to publish here.
AUDIENCE = "rooms"
ROOM_PATH = re.compile(r"^/parties/main/([0-9a-fA-F-]{36})/?$")

Refusal = tuple[int, str]
"""An HTTP status and the reason given with it."""


def room_of(path: str) -> uuid.UUID | None:
    """The room a request target names (query ignored), or ``None`` if it names none."""
    match = ROOM_PATH.match(urlsplit(path).path)
    return uuid.UUID(match.group(1)) if match else None


def join_verdict(
    secret: str, path: str, room_owner: str | None, occupancy: int, cap: int
) -> Refusal | uuid.UUID:
    """Pure admission check: the room to join, or (status, reason) to refuse with."""
    room = room_of(path)
    if room is None:
        return 404, "no such party or room"
    raw = parse_qs(urlsplit(path).query).get("token", [""])[0]
    if not raw:
        return 401, "missing room token"
    try:
        grant = tokens.decode(secret, raw)
    except tokens.TokenRejected as exc:
        return 401, exc.reason
    if grant.job_id != room or (room_owner is not None and grant.owner != room_owner):
        return 403, "token is not for this room"
    if occupancy >= cap:
        return 429, "room is full"
    return room


def publish_verdict(service_secret: str, path: str, authorization: str | None) -> Refusal | uuid.UUID:
    """The room a publish goes to, or (status, reason): only service tokens for ``rooms`` may publish."""
    room = room_of(path)
    if room is None:
        return 404, "no such party or room"
    if not service_secret:
        return 401, "publishing is not configured"
    try:
        identity.verify_service(service_secret, tokens.bearer(authorization), AUDIENCE)
    except tokens.TokenRejected as exc:
        return exc.status, exc.reason
    return room
