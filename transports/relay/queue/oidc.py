"""OIDC tokens for queue pushes: RS256 ID tokens signed by the queue, checked by the worker.

Shape follows a Google-signed ID token as Cloud Tasks mints it for
``oidcToken{serviceAccountEmail, audience}``: ``iss``, ``aud``, ``azp``,
``email``, ``email_verified``, ``sub``, ``iat``, ``exp``, and a ``kid`` in the
header naming the JWKS key.

Key story: the queue service generates a fresh RSA key when it starts, keeps
the private half in its memory only, and publishes the public half in
``relay_signing_keys`` (the testbed's stand-in for Google's key service: no
other service can read a private key from the shared database); its JWKS
lists every published key, so tokens signed before a queue restart still
verify. The worker fetches the JWKS from
``peers["queue"]``, caches it, and refetches on an unknown ``kid`` (at most
once per ``refetch_interval_s``, so forged kids cannot make it hammer the
queue).

Rejections: missing, malformed, forged or expired tokens, or a wrong
issuer, are ``401``; a genuine token for another audience or from a
principal that may not invoke the worker is ``403``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from progressbench.core.tokens import TokenRejected

ALGORITHM = "RS256"
#: The invoker service account the queue's pushes act as.
INVOKER_EMAIL = "relay-invoker@progressbench.iam.gserviceaccount.com"
INVOKER_SUB = "104729000000000000001"
LEEWAY_S = 5


class OidcRejected(TokenRejected):
    """A push's token cannot be accepted; ``status`` is 401 or 403.

    A :class:`~progressbench.core.tokens.TokenRejected`, so the worker's push
    route catches one type for a missing header (:func:`~progressbench.core.tokens.bearer`)
    and a bad token alike.
    """


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_pem: str
    public_jwk: dict[str, Any]

    @classmethod
    def generate(cls) -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        kid = base64.urlsafe_b64encode(hashlib.sha256(der).digest()[:12]).decode().rstrip("=")
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        jwk.update(kid=kid, alg=ALGORITHM, use="sig")
        return cls(kid, pem, jwk)

    @functools.cached_property
    def _private(self) -> rsa.RSAPrivateKey:
        # Loading an RSA key checks it (tens of ms): do it once, not per token.
        key = serialization.load_pem_private_key(self.private_pem.encode(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key

    def sign(self, claims: Mapping[str, Any]) -> str:
        return jwt.encode(dict(claims), self._private, algorithm=ALGORITHM, headers={"kid": self.kid})


def id_token_claims(
    issuer: str, audience: str, now: float, ttl_s: int, email: str = INVOKER_EMAIL
) -> dict[str, Any]:
    """The claims of one ID token for ``audience``, issued at ``now`` (wall clock, whole seconds)."""
    iat = int(now)
    return {
        "iss": issuer,
        "aud": audience,
        "azp": INVOKER_SUB,
        "email": email,
        "email_verified": True,
        "sub": INVOKER_SUB,
        "iat": iat,
        "exp": iat + ttl_s,
    }


#: Seconds of life a cached token must have left to be sent again (google-auth refreshes its
#: credentials' tokens 3 min 45 s before they expire; 5 min here, capped at half the lifetime).
REFRESH_MARGIN_S = 300.0


def refresh_margin(ttl_s: int) -> float:
    """How long before its expiry a token is replaced: :data:`REFRESH_MARGIN_S`, at most half its life.

    A token sent with at least this much life left is still valid when the
    push reaches the worker (which checks ``exp`` at arrival, with
    :data:`LEEWAY_S`). Not scaled: it is measured against ``exp``, which is
    wall-clock whole seconds like every JWT time.
    """
    return min(REFRESH_MARGIN_S, ttl_s / 2)


@dataclass
class TokenCache:
    """The invoker's ID tokens, one per audience, reused until near expiry.

    Cloud Tasks pushes with an ID token minted for the task's service account
    and audience; like any Google credential holder it caches that token and
    mints a new one only when the old one is about to expire, not one per
    attempt. Signing (RS256, an RSA-2048 private-key operation) is the costly
    part of a push, so per-attempt signing capped the queue's dispatch rate.
    Pure apart from the signing itself: the caller passes the wall clock.
    """

    key: SigningKey
    issuer: str
    ttl_s: int
    tokens: dict[str, tuple[str, int]] = field(default_factory=dict)
    #: Tokens signed so far (each cache miss), for the tests and the curious.
    signed: int = 0

    def token(self, audience: str, now: float) -> str:
        """A token for ``audience`` valid for at least :func:`refresh_margin` more seconds at ``now``."""
        cached = self.tokens.get(audience)
        if cached is not None:
            token, exp = cached
            iat = exp - self.ttl_s
            if iat <= now < exp - refresh_margin(self.ttl_s):
                return token
        claims = id_token_claims(self.issuer, audience, now, self.ttl_s)
        token = self.key.sign(claims)
        self.tokens[audience] = (token, int(claims["exp"]))
        self.signed += 1
        return token


def jwks(keys: list[dict[str, Any]]) -> dict[str, Any]:
    return {"keys": keys}


def verify(
    token: str,
    keys: Mapping[str, dict[str, Any]],
    *,
    issuer: str,
    audience: str,
    invokers: frozenset[str] = frozenset({INVOKER_EMAIL}),
) -> dict[str, Any]:
    """Claims of a valid push token, else :class:`OidcRejected` (pure: keys are given)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise OidcRejected(401, "malformed token") from None
    if header.get("alg") != ALGORITHM:
        raise OidcRejected(401, "token is not RS256")
    jwk = keys.get(str(header.get("kid")))
    if jwk is None:
        raise OidcRejected(401, "unknown signing key")
    public = RSAAlgorithm.from_jwk(jwk)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            public,  # type: ignore[arg-type]
            algorithms=[ALGORITHM],
            options={"require": ["iss", "aud", "exp", "iat", "email"], "verify_aud": False},
            leeway=LEEWAY_S,
            issuer=issuer,
        )
    except jwt.ExpiredSignatureError:
        raise OidcRejected(401, "token expired") from None
    except jwt.InvalidIssuerError:
        raise OidcRejected(401, "wrong issuer") from None
    except jwt.InvalidTokenError as exc:
        raise OidcRejected(401, f"invalid token: {type(exc).__name__}") from None
    if claims.get("aud") != audience:
        raise OidcRejected(403, "token is for another audience")
    if claims.get("email") not in invokers or claims.get("email_verified") is not True:
        raise OidcRejected(403, "principal may not invoke this service")
    return claims


Fetch = Callable[[], Awaitable[dict[str, Any]]]


@dataclass
class JwksCache:
    """The worker's copy of the queue's JWKS: fetched lazily, refetched on an unknown kid."""

    fetch: Fetch
    refetch_interval_s: float = 1.0
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    fetched_at: float | None = None
    fetches: int = 0

    async def _refresh(self) -> None:
        document = await self.fetch()
        self.keys = {str(k["kid"]): k for k in document.get("keys", []) if "kid" in k}
        self.fetched_at = time.monotonic()
        self.fetches += 1

    async def keys_for(self, token: str) -> dict[str, dict[str, Any]]:
        try:
            kid = str(jwt.get_unverified_header(token).get("kid"))
        except jwt.InvalidTokenError:
            return self.keys
        stale = self.fetched_at is None or (
            kid not in self.keys and time.monotonic() - self.fetched_at >= self.refetch_interval_s
        )
        if stale:
            await self._refresh()
        return self.keys
