"""JWTs as Realtime checks them: HS256 with the project secret, ``role`` and ``exp`` required.

The project's *anon key* is a long-lived JWT with ``role: anon`` signed with
the same secret (as in a Supabase project); per-job user tokens come from
:mod:`progressbench.core.tokens` (``role: authenticated``, ``sub`` = owner). The
role claim becomes the Postgres role the subscriber's RLS checks run as, so
only roles that exist for clients are accepted (never a superuser).
Error texts follow Realtime's (``InvalidJWTToken: Token has expired N
seconds ago``...).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHM = "HS256"
CLIENT_ROLES = frozenset({"anon", "authenticated"})
ANON_TTL_S = 10 * 365 * 24 * 3600


class AuthError(Exception):
    """A token Realtime refuses; ``reason`` is the text sent to the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Claims:
    raw: dict[str, Any]

    @property
    def role(self) -> str:
        return str(self.raw["role"])

    @property
    def exp(self) -> float:
        return float(self.raw["exp"])

    @property
    def sub(self) -> str | None:
        sub = self.raw.get("sub")
        return None if sub is None else str(sub)


def verify(secret: str, token: str | None, now: float | None = None) -> Claims:
    if not token:
        raise AuthError("InvalidJWTToken: no token")
    try:
        raw = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"verify_aud": False, "verify_exp": False, "verify_iat": False},
        )
    except jwt.InvalidSignatureError:
        raise AuthError("InvalidJWTToken: Signature error") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"InvalidJWTToken: {exc}") from None
    if not isinstance(raw, dict) or "role" not in raw or "exp" not in raw:
        raise AuthError("Fields `role` and `exp` are required in JWT")
    claims = Claims(raw)
    try:
        exp = claims.exp
    except (TypeError, ValueError):
        raise AuthError("InvalidJWTToken: exp is not a number") from None
    current = time.time() if now is None else now
    if exp <= current:
        raise AuthError(f"InvalidJWTToken: Token has expired {int(current - exp)} seconds ago")
    if claims.role not in CLIENT_ROLES:
        raise AuthError(f"InvalidJWTToken: role {claims.role!r} is not allowed")
    return claims


def issue_anon_key(secret: str, ttl_s: int = ANON_TTL_S) -> str:
    now = int(time.time())
    return jwt.encode(
        {"iss": "progressbench", "role": "anon", "iat": now, "exp": now + ttl_s}, secret, algorithm=ALGORITHM
    )


def project_user(secret: str, token: str) -> str:
    """The user id of an access token from a Supabase project's Auth (GoTrue), signed with ``secret``.

    Against a real project (``SUPABASE_URL``) the phone signs in with the project's Auth, and the
    job it creates must be owned by that user for the project's RLS to show it the rows. Such a
    token is HS256 with the project's JWT secret (the stack's ``SUPABASE_JWT_SECRET``), ``aud``
    and ``role`` ``authenticated``, ``iss`` ``<project URL>/auth/v1``, a uuid ``sub``, ``exp``.
    Per-job tokens (no ``iss``) and service tokens (another secret) never pass. Raises
    :class:`AuthError`.
    """
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience="authenticated",
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"InvalidJWTToken: {type(exc).__name__}") from None
    issuer = str(claims.get("iss", ""))
    if not issuer.startswith(("https://", "http://")) or not issuer.rstrip("/").endswith("/auth/v1"):
        raise AuthError("InvalidJWTToken: not issued by a project's Auth")
    if claims.get("role") != "authenticated":
        raise AuthError("InvalidJWTToken: not a user token")
    try:
        return str(uuid.UUID(str(claims["sub"])))
    except ValueError:
        raise AuthError("InvalidJWTToken: sub is not a user id") from None
