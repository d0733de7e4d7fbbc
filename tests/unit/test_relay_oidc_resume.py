"""OIDC token checks, room admission, and the client's reconnect schedule and seq dedupe."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from progressbench.transports.relay.queue.oidc import OidcRejected, SigningKey, id_token_claims, verify
from progressbench.transports.relay.resume import SeqTracker, reconnect_delay
from progressbench.transports.relay.rooms.policy import join_verdict

from progressbench.core import tokens

ISS, AUD = "http://queue", "http://worker"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


def keys(key: SigningKey) -> dict[str, dict[str, object]]:
    return {key.kid: key.public_jwk}


def test_a_fresh_push_token_verifies(key: SigningKey) -> None:
    """A token the queue signs for the worker's audience carries the invoker's identity."""
    token = key.sign(id_token_claims(ISS, AUD, time.time(), 3600))
    claims = verify(token, keys(key), issuer=ISS, audience=AUD)
    assert claims["email"].startswith("relay-invoker@") and claims["aud"] == AUD


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("expired", 401),
        ("forged", 401),
        ("wrong-issuer", 401),
        ("wrong-audience", 403),
        ("wrong-principal", 403),
        ("unknown-kid", 401),
        ("hs256", 401),
        ("garbage", 401),
    ],
)
def test_bad_push_tokens_are_refused(key: SigningKey, case: str, status: int) -> None:
    """Expired, forged, mis-issued, mis-addressed or wrong-principal tokens get 401/403."""
    now = time.time()
    claims = id_token_claims(ISS, AUD, now, 3600)
    if case == "expired":
        token = key.sign(id_token_claims(ISS, AUD, now - 7200, 3600))
    elif case == "forged":
        other = SigningKey.generate()
        token = jwt.encode(claims, other.private_pem, algorithm="RS256", headers={"kid": key.kid})
    elif case == "wrong-issuer":
        token = key.sign(id_token_claims("http://elsewhere", AUD, now, 3600))
    elif case == "wrong-audience":
        token = key.sign(id_token_claims(ISS, "http://other-service", now, 3600))
    elif case == "wrong-principal":
        token = key.sign(id_token_claims(ISS, AUD, now, 3600, email="someone@example.com"))
    elif case == "unknown-kid":
        token = SigningKey.generate().sign(claims)
    elif case == "hs256":
        token = jwt.encode(claims, "x" * 32, algorithm="HS256", headers={"kid": key.kid})
    else:
        token = "not-a-jwt"
    with pytest.raises(OidcRejected) as caught:
        verify(token, keys(key), issuer=ISS, audience=AUD)
    assert caught.value.status == status


SECRET = "s" * 32


def test_room_admission() -> None:
    """Only the job's own token joins its room; wrong room 403, bad token 401, full room 429."""
    job, other = uuid.uuid4(), uuid.uuid4()
    good = tokens.issue(SECRET, "alice", job)
    path = f"/parties/main/{job}?token={good}"
    assert join_verdict(SECRET, path, None, 0, 100) == job
    assert join_verdict(SECRET, path, "alice", 99, 100) == job
    assert join_verdict(SECRET, path, None, 100, 100) == (429, "room is full")
    assert join_verdict(SECRET, f"/parties/main/{other}?token={good}", None, 0, 100)[0] == 403  # type: ignore[index]
    assert join_verdict(SECRET, path, "mallory", 0, 100)[0] == 403  # type: ignore[index]
    assert join_verdict(SECRET, f"/parties/main/{job}", None, 0, 100)[0] == 401  # type: ignore[index]
    forged = tokens.issue("t" * 32, "alice", job)
    assert join_verdict(SECRET, f"/parties/main/{job}?token={forged}", None, 0, 100)[0] == 401  # type: ignore[index]
    assert join_verdict(SECRET, f"/parties/other/{job}?token={good}", None, 0, 100)[0] == 404  # type: ignore[index]


def test_partysocket_reconnect_schedule() -> None:
    """First attempt at once, then min × 1.3^(n-1), capped at 10 s."""
    delays = [reconnect_delay(n, 2.0) for n in range(0, 10)]
    assert delays[0] == 0.0
    assert delays[1:4] == pytest.approx([2.0, 2.6, 3.38])
    assert delays[-1] == 10.0 and max(delays) == 10.0


def test_seq_tracker_dedupes_and_keeps_a_contiguous_cursor() -> None:
    """Each seq is new once; a hole keeps the cursor below it until it is filled."""
    t = SeqTracker()
    assert [t.add(s) for s in (1, 2, 2, 1)] == [True, True, False, False]
    assert t.contiguous == 2
    assert t.add(4) and t.has_gap_before(4) and t.contiguous == 2 and t.highest == 4
    assert t.add(3) and t.contiguous == 4 and not t.has_gap_before(5)
    assert not t.add(4)
