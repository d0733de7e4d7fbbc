"""Who is calling: user access tokens, service tokens and password hashes (pure; no I/O).

Three kinds of bearer token exist, and none can pass as another:

* **User access tokens** — what the sign-in service (``/auth/v1``) issues to a
  phone. Shaped like Supabase Auth's (GoTrue's) JWTs: HS256 with the
  project's JWT secret (``ServiceConfig.token_secret``, the secret a realtime
  server verifies with), ``iss`` :data:`AUTH_ISSUER`, ``aud``
  ``authenticated``, ``role`` ``authenticated``, ``sub`` the user's uuid,
  ``session_id``, ``iat`` and ``exp`` — all required. The owner of every job
  is the ``sub`` of the token that created it.
* **Per-job read tokens** (:mod:`progressbench.core.tokens`) — same secret,
  but they carry ``job_id`` and no ``iss``: a user token lacks ``job_id`` and
  a job token fails the issuer check, so neither is taken for the other.
* **Service tokens** — what one service presents to another (API → worker
  ``/run``, API → queue, worker → rooms publish). Signed with a *separate*
  secret (``ServiceConfig.service_secret``) that no phone-facing code signs
  with, issuer :data:`SERVICE_ISSUER`, ``aud`` = the receiving service's role.
  A user can choose its own ``sub`` nowhere, and even a token with
  ``sub: service:api`` signed with the project secret fails the signature.

Token lifetimes are wall-clock security settings, not simulated time: they
are *not* scaled by the run's time scale (a scaled run compresses jobs, not
how long a stolen token stays useful). GoTrue's default access-token lifetime
is one hour (``GOTRUE_JWT_EXP=3600``).

Passwords are hashed with scrypt (stdlib ``hashlib.scrypt``; RFC 7914), a
per-password random salt, parameters stored in the hash string so they can be
raised later without breaking old hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from progressbench.core.tokens import TokenRejected

ALGORITHM = "HS256"
AUTH_ISSUER = "progressbench/auth/v1"
USER_AUDIENCE = "authenticated"
USER_ROLE = "authenticated"
#: Access tokens live an hour, GoTrue's default (wall clock, never scaled).
ACCESS_TTL_S = 3600
#: The session cookie sign-in sets beside the JSON session: the access token, ``HttpOnly``,
#: ``SameSite=Lax``, for an ``EventSource`` (which cannot send headers) on the same site. Named like
#: the cookie of Supabase's auth helpers for browsers.
SESSION_COOKIE = "sb-access-token"
#: A refresh token unused for this long is dead (wall clock, never scaled).
REFRESH_TTL_S = 7 * 24 * 3600

SERVICE_ISSUER = "progressbench/services"
#: The only subject service tokens are issued for: the testbed's own services.
SERVICE_SUBJECT = "service:api"
SERVICE_TTL_S = 600

#: scrypt cost: n=2**14, r=8, p=1 (16 MiB, the usual interactive-login setting).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
#: The cheapest ``n`` :func:`scrypt_n` goes down to, whatever the time scale.
MIN_SCRYPT_N = 2**8
MIN_PASSWORD_LEN = 6  # GoTrue's default minimum


# --------------------------------------------------------------------------- users


@dataclass(frozen=True, slots=True)
class User:
    """A verified access token's subject."""

    id: uuid.UUID
    email: str
    session_id: uuid.UUID
    claims: dict[str, Any]


def issue_access(
    secret: str,
    user_id: uuid.UUID,
    email: str,
    session_id: uuid.UUID,
    now: float | None = None,
    ttl_s: int = ACCESS_TTL_S,
) -> tuple[str, int]:
    """An access token for the user and its ``exp`` (epoch seconds)."""
    iat = int(time.time() if now is None else now)
    exp = iat + ttl_s
    claims = {
        "iss": AUTH_ISSUER,
        "sub": str(user_id),
        "aud": USER_AUDIENCE,
        "role": USER_ROLE,
        "email": email,
        "session_id": str(session_id),
        "aal": "aal1",
        "amr": [{"method": "password", "timestamp": iat}],
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {},
        "is_anonymous": False,
        "iat": iat,
        "exp": exp,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), exp


def verify_access(secret: str, token: str) -> User:
    """The user behind a valid access token, else :class:`TokenRejected` (401).

    ``exp``, ``iat``, ``sub``, ``iss``, ``aud`` and ``session_id`` are all
    required: a token without an expiry is refused, not trusted forever.
    """
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=USER_AUDIENCE,
            issuer=AUTH_ISSUER,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenRejected(401, "token expired") from None
    except jwt.InvalidTokenError as exc:
        raise TokenRejected(401, f"invalid JWT: {type(exc).__name__}") from None
    if claims.get("role") != USER_ROLE:
        raise TokenRejected(401, "invalid JWT: not a user token")
    try:
        return User(
            id=uuid.UUID(str(claims["sub"])),
            email=str(claims.get("email", "")),
            session_id=uuid.UUID(str(claims["session_id"])),
            claims=claims,
        )
    except (KeyError, ValueError):
        raise TokenRejected(401, "invalid JWT: sub/session_id missing or malformed") from None


def new_refresh_token() -> str:
    """An opaque refresh token; the store keeps only its :func:`digest`."""
    return secrets.token_urlsafe(32)


def digest(opaque: str) -> str:
    """What the store keeps of an opaque token (a leaked table grants nothing)."""
    return hashlib.sha256(opaque.encode()).hexdigest()


# --------------------------------------------------------------------------- passwords


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def scrypt_n(time_scale: float) -> int:
    """The scrypt ``n`` a run at ``time_scale`` hashes new passwords with: ``SCRYPT_N`` at scale 1,
    else the largest power of two not above ``SCRYPT_N × time_scale`` (never above ``SCRYPT_N``,
    never below ``MIN_SCRYPT_N``).

    Why: a scaled run compresses every phone's session by the scale, but not the CPU a sign-up
    costs. At scale 0.1 a burst of phones signing up costs ten times its share of the
    compressed scenario: 1,000 phones need ~140 CPU-seconds of ``n = 2**14`` hashes, so on a
    small machine they reach their jobs at the hash rate (~10 a second), their streams never
    overlap as they would at scale 1, and the run measures the password hash instead of the
    pattern. Scaling the work factor keeps the sign-up's share of the scenario what it is at
    scale 1, as the fronts weigh a short request by the scale (``progressbench/app/front.py``).
    The cost travels in each hash (``scrypt$n$...``), so :func:`check_password` needs no setting.
    """
    if not (math.isfinite(time_scale) and time_scale > 0):
        raise ValueError(f"time_scale must be a finite number > 0, got {time_scale}")
    if time_scale >= 1:
        return SCRYPT_N
    exponent = math.floor(math.log2(SCRYPT_N * time_scale) + 1e-9)
    return max(1 << max(exponent, 0), MIN_SCRYPT_N)


def hash_password(password: str, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$n$r$p$salt$hash`` (salt and hash URL-safe base64)."""
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=2**26, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(key)}"


def check_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (constant-time compare; False on a bad hash)."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), maxmem=2**26, dklen=32
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, _unb64(key))


# --------------------------------------------------------------------------- services


def issue_service(
    service_secret: str, audience: str, now: float | None = None, ttl_s: int = SERVICE_TTL_S
) -> str:
    """A token the testbed's services present to the service ``audience`` (a role name)."""
    iat = int(time.time() if now is None else now)
    claims = {
        "iss": SERVICE_ISSUER,
        "sub": SERVICE_SUBJECT,
        "aud": audience,
        "iat": iat,
        "exp": iat + ttl_s,
    }
    return jwt.encode(claims, service_secret, algorithm=ALGORITHM)


def verify_service(service_secret: str, token: str, audience: str) -> None:
    """Accept only a service token for ``audience``; :class:`TokenRejected` 401/403 otherwise.

    401: not signed with the service secret, expired, no ``exp``, wrong issuer.
    403: a genuine service token for another service.
    """
    try:
        claims = jwt.decode(
            token,
            service_secret,
            algorithms=[ALGORITHM],
            issuer=SERVICE_ISSUER,
            options={"require": ["exp", "iat", "sub", "iss", "aud"], "verify_aud": False},
        )
    except jwt.ExpiredSignatureError:
        raise TokenRejected(401, "service token expired") from None
    except jwt.InvalidTokenError:
        raise TokenRejected(401, "not a service token") from None
    if claims.get("sub") != SERVICE_SUBJECT:
        raise TokenRejected(403, "not a service token")
    if claims.get("aud") != audience:
        raise TokenRejected(403, "service token is for another service")
