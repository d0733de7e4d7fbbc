"""User, job and service tokens cannot pass for one another; passwords hash and verify."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest

from progressbench.core import identity, tokens
from progressbench.core.tokens import TokenRejected

SECRET = "p" * 32
SERVICE = "v" * 32
USER = uuid.UUID("0b3f7c1e-2a45-4e0d-9c61-5d2f8a7b9e10")


def access(**changes: object) -> str:
    token, _ = identity.issue_access(SECRET, USER, "a@x.test", uuid.uuid4())
    if not changes:
        return token
    claims = {**jwt.decode(token, options={"verify_signature": False}), **changes}
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def test_an_access_token_names_its_user_and_expires_in_an_hour() -> None:
    """GoTrue's shape: sub, role/aud authenticated, iss, iat, exp one wall-clock hour later."""
    token, exp = identity.issue_access(SECRET, USER, "a@x.test", uuid.uuid4(), now=1_000_000.0)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["sub"], claims["role"], claims["aud"]) == (str(USER), "authenticated", "authenticated")
    assert claims["iss"] == identity.AUTH_ISSUER and exp == claims["exp"] == 1_000_000 + 3600
    assert identity.verify_access(SECRET, access()).id == USER


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": None},
        {"iat": None},
        {"iss": "elsewhere"},
        {"aud": "anon"},
        {"role": "service_role"},
        {"exp": int(time.time()) - 5},
        {"sub": "not-a-uuid"},
    ],
)
def test_a_bad_access_token_is_401(changes: dict[str, object]) -> None:
    """No expiry, no issue time, another issuer/audience/role, expired, a non-user subject."""
    with pytest.raises(TokenRejected) as exc:
        identity.verify_access(SECRET, access(**changes))
    assert exc.value.status == 401


def test_job_and_access_tokens_are_not_taken_for_one_another() -> None:
    """A job's read token is no access token (no issuer), an access token no job token (no job_id)."""
    job_token = tokens.issue(SECRET, str(USER), uuid.uuid4())
    with pytest.raises(TokenRejected):
        identity.verify_access(SECRET, job_token)
    with pytest.raises(TokenRejected):
        tokens.decode(SECRET, access())


def test_a_job_token_without_exp_is_refused() -> None:
    claims = {"sub": "alice", "role": "authenticated", "aud": "authenticated", "job_id": str(uuid.uuid4())}
    with pytest.raises(TokenRejected) as exc:
        tokens.decode(SECRET, jwt.encode(claims, SECRET, algorithm="HS256"))
    assert exc.value.status == 401


def test_only_a_service_token_for_this_service_passes() -> None:
    """Signed with the service key, for this audience; a user's token, whatever its sub, never."""
    identity.verify_service(SERVICE, identity.issue_service(SERVICE, "worker"), "worker")
    posing = tokens.issue(SECRET, identity.SERVICE_SUBJECT, uuid.UUID(int=0))
    posing_with_service_key = tokens.issue(SERVICE, identity.SERVICE_SUBJECT, uuid.UUID(int=0))
    for token, status in (
        (posing, 401),
        (access(sub=identity.SERVICE_SUBJECT), 401),
        (posing_with_service_key, 401),  # no service issuer
        (identity.issue_service(SERVICE, "rooms"), 403),
        (identity.issue_service(SERVICE, "worker", now=time.time() - 4000), 401),
    ):
        with pytest.raises(TokenRejected) as exc:
            identity.verify_service(SERVICE, token, "worker")
        assert exc.value.status == status


def test_passwords_hash_with_salt_and_verify() -> None:
    """scrypt with a random salt: two hashes of one password differ, both verify, a wrong one fails."""
    one, two = (
        identity.hash_password("correct horse", n=2**10),
        identity.hash_password("correct horse", n=2**10),
    )
    assert one != two and one.startswith("scrypt$1024$8$1$")
    assert identity.check_password("correct horse", one) and identity.check_password("correct horse", two)
    assert not identity.check_password("wrong horse", one)
    assert not identity.check_password("correct horse", "not$a$hash")


def test_the_password_hash_cost_follows_the_time_scale() -> None:
    """At scale 1 the interactive-login cost; compressed runs hash at most their scaled share of it
    (a sign-up burst must not cost a 0.1 run ten times what it costs in real time), never below the floor."""
    assert identity.scrypt_n(1.0) == identity.SCRYPT_N == 2**14
    assert identity.scrypt_n(3.0) == identity.SCRYPT_N
    assert identity.scrypt_n(0.5) == 2**13
    assert identity.scrypt_n(0.1) == 2**10  # 1,638.4 → the power of two below it
    assert identity.scrypt_n(1e-6) == identity.MIN_SCRYPT_N
    for scale in (0.01, 0.1, 0.25, 0.5, 0.99):
        n = identity.scrypt_n(scale)
        assert n & (n - 1) == 0 and n <= identity.SCRYPT_N * max(
            scale, identity.MIN_SCRYPT_N / identity.SCRYPT_N
        )
    hashed = identity.hash_password("correct horse", n=identity.scrypt_n(0.1))
    assert hashed.startswith("scrypt$1024$") and identity.check_password("correct horse", hashed)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            identity.scrypt_n(bad)
