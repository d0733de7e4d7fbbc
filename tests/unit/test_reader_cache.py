"""An API instance verifies a read token once and remembers it only as long as the token itself lives.

``ServiceContext._reader`` is on every poll and every stream reconnect; the
cache must never let through what verification would refuse: an expired
token, a forged one, or a token for another job.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, cast

import jwt
import pytest
from fastapi import HTTPException

from progressbench.core import identity, tokens
from progressbench.core.config import ServiceConfig
from progressbench.kit import context as context_module
from progressbench.kit.context import ServiceContext

SECRET = "s" * 32


def make_context() -> ServiceContext:
    config = ServiceConfig(role="api", instance="api-1", database_url="postgresql://x/y", token_secret=SECRET)
    none = cast(Any, None)
    return ServiceContext(config=config, store=none, meters=none, http=none, jobs=none)


def test_a_job_token_is_verified_once_then_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_context()
    job = uuid.uuid4()
    raw = tokens.issue(SECRET, "alice", job)
    calls: list[str] = []
    real = tokens.decode
    monkeypatch.setattr(tokens, "decode", lambda secret, token: calls.append(token) or real(secret, token))
    assert ctx.reader_of(raw, str(job)) == ("alice", job)
    assert ctx.reader_of(raw, str(job)) == ("alice", job)
    assert calls == [raw]


def test_a_remembered_token_is_refused_once_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_context()
    job = uuid.uuid4()
    raw = tokens.issue(SECRET, "alice", job, ttl_s=60)
    assert ctx.reader_of(raw, str(job)) == ("alice", job)
    later = time.time() + 61
    monkeypatch.setattr(context_module.time, "time", lambda: later)
    monkeypatch.setattr(jwt.api_jwt, "datetime", _FrozenDatetime(later))
    with pytest.raises(HTTPException) as refused:
        ctx.reader_of(raw, str(job))
    assert refused.value.status_code == 401
    assert raw not in ctx.readers


def test_a_remembered_job_token_still_reads_only_its_own_job() -> None:
    ctx = make_context()
    job, other = uuid.uuid4(), uuid.uuid4()
    raw = tokens.issue(SECRET, "alice", job)
    ctx.reader_of(raw, str(job))
    with pytest.raises(HTTPException) as refused:
        ctx.reader_of(raw, str(other))
    assert refused.value.status_code == 404


def test_a_forged_token_is_never_remembered() -> None:
    ctx = make_context()
    job = uuid.uuid4()
    forged = tokens.issue("f" * 32, "mallory", job)
    for _ in range(2):
        with pytest.raises(HTTPException) as refused:
            ctx.reader_of(forged, str(job))
        assert refused.value.status_code == 401
    assert ctx.readers == {}


def test_an_access_token_is_remembered_with_its_own_expiry() -> None:
    ctx = make_context()
    user_id = uuid.uuid4()
    raw, _ = identity.issue_access(SECRET, user_id, "a@example.test", uuid.uuid4())
    job = uuid.uuid4()
    assert ctx.reader_of(raw, str(job)) == (str(user_id), job)
    expires_at, owner, only = ctx.readers[raw]
    assert owner == str(user_id) and only is None
    assert expires_at == jwt.decode(raw, options={"verify_signature": False})["exp"]


def test_the_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context_module, "READERS_KEPT", 3)
    ctx = make_context()
    raws = [tokens.issue(SECRET, f"p{i}", uuid.uuid4()) for i in range(5)]
    for raw in raws:
        ctx._reader(raw)
    assert list(ctx.readers) == raws[2:]


class _FrozenDatetime:
    """``jwt.api_jwt.datetime`` with ``now`` at a given epoch second (pyjwt reads the clock there)."""

    def __init__(self, at: float) -> None:
        import datetime as _dt

        self._dt = _dt.datetime
        self._at = at

    def now(self, tz: Any = None) -> Any:
        return self._dt.fromtimestamp(self._at, tz)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dt, name)
