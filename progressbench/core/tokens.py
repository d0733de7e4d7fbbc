"""Per-job access tokens: HS256 JWTs the API issues when it creates a job.

Claims follow Supabase's shape (``sub``, ``role``, ``aud``, ``exp``) so the
same token can be handed to a Realtime server's RLS, plus ``job_id``: a token
reads exactly one job, and only its owner's. Every transport checks it with
:func:`authorize` before it shows a byte of a job. ``owner`` is always the
verified user's id (:mod:`progressbench.core.identity`), never a value a
request body chose. A token without ``exp`` is refused, not trusted forever.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt

AUDIENCE = "authenticated"
ALGORITHM = "HS256"


class TokenRejected(Exception):
    """The request's token is missing, malformed, expired, or not for this job.

    ``status`` is the HTTP status to answer with: 401 for a token we cannot
    trust, 404 for a valid token of another job (so a job's existence is not
    leaked to someone who may not read it).
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Grant:
    owner: str
    job_id: uuid.UUID
    #: The token's ``exp`` (epoch seconds): past it, the grant is void.
    expires_at: float = 0.0


def issue(secret: str, owner: str, job_id: uuid.UUID, ttl_s: float = 24 * 3600) -> str:
    now = int(time.time())
    claims = {
        "sub": owner,
        "role": "authenticated",
        "aud": AUDIENCE,
        "job_id": str(job_id),
        "iat": now,
        "exp": now + int(ttl_s),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode(secret: str, token: str) -> Grant:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["exp", "sub", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenRejected(401, "token expired") from None
    except jwt.InvalidTokenError:
        raise TokenRejected(401, "invalid token") from None
    try:
        return Grant(
            owner=str(claims["sub"]),
            job_id=uuid.UUID(str(claims["job_id"])),
            expires_at=float(claims["exp"]),
        )
    except (KeyError, ValueError):
        raise TokenRejected(401, "token lacks sub/job_id claims") from None


def bearer(header_value: str | None) -> str:
    """The token in an ``Authorization: Bearer ...`` header, or TokenRejected(401)."""
    if not header_value:
        raise TokenRejected(401, "missing Authorization bearer token")
    scheme, _, token = header_value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenRejected(401, "Authorization must be 'Bearer <token>'")
    return token.strip()


def authorize(secret: str, header_value: str | None, job_id: uuid.UUID, owner: str) -> Grant:
    """Check that the bearer may read ``job_id`` owned by ``owner``."""
    grant = decode(secret, bearer(header_value))
    if grant.job_id != job_id or grant.owner != owner:
        raise TokenRejected(404, "job not found")
    return grant
