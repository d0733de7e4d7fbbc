"""The HTTP client every transport's phone uses, built the same way for all.

Each phone gets its own ``httpx.AsyncClient`` (its own connections, as a real
device has), but they share one SSL context: building one per client costs
tens of milliseconds of CPU, and hundreds of phones starting at once would
block the agent's event loop long enough to fail their own connect timeouts.

Timeouts scale with the run, with floors: a scaled run compresses the job
and the network faults, not the client machine's CPU.

Every phone signs in once (:func:`access_token`, against the API's
GoTrue-compatible ``/auth/v1``) and sends its access token when it creates a
job: the server takes the job's owner from that token, never from the body.
A phone's session is kept for the process's life and refreshed (rotating
its refresh token) when the access token nears its ``exp`` — a wall-clock
lifetime the run's time scale does not touch.
"""

from __future__ import annotations

import asyncio
import random
import re
import secrets
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import httpx
from progressbench.transports.timers import (
    CONNECT_S,
    MIN_CONNECT_S,
    MIN_READ_S,
    READ_S,
)

from progressbench.core.config import Timing
from progressbench.core.errors import TransportError
from progressbench.core.events import Finding


@lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def tls_context() -> ssl.SSLContext:
    """The SSL context every phone shares, for connections made without httpx."""
    return _ssl_context()


def timeouts(timing: Timing, read_s: float = READ_S) -> httpx.Timeout:
    return httpx.Timeout(
        max(timing.scaled(read_s), MIN_READ_S),
        connect=max(timing.scaled(CONNECT_S), MIN_CONNECT_S),
    )


def phone_client(
    base_url: str, timing: Timing, read_s: float | None = READ_S, connect_s: float | None = None
) -> httpx.AsyncClient:
    """A phone's HTTP client; ``read_s=None`` for streams that may stay quiet indefinitely."""
    timeout = timeouts(timing, read_s or READ_S)
    if read_s is None:
        timeout = httpx.Timeout(timeout.connect if connect_s is None else connect_s, read=None)
    elif connect_s is not None:
        timeout = httpx.Timeout(timeout.read, connect=connect_s)
    return httpx.AsyncClient(base_url=base_url, timeout=timeout, verify=_ssl_context())


#: Refresh this long before the access token's ``exp`` (wall-clock seconds).
REFRESH_MARGIN_S = 60
#: Sign-in attempts before a phone gives up (each after a back-off).
SIGN_IN_ATTEMPTS = 8
#: Seconds a sign-in request may take (a floor, like MIN_READ_S: a password hash costs the
#: server real CPU whatever the time scale, and a phone that gives up early only retries it).
SIGN_IN_TIMEOUT_S = 30.0
#: Per process: phones of two processes (two cells' load generators) are different users.
_PROCESS_TAG = secrets.token_hex(4)


@dataclass(slots=True)
class PhoneSession:
    """One phone's account and its current session (kept for the process's life)."""

    email: str
    password: str
    access_token: str = ""
    refresh_token: str = ""
    expires_at: float = 0.0
    user_id: str = ""
    registered: bool = False

    def fresh(self, now: float) -> bool:
        return bool(self.access_token) and now < self.expires_at - REFRESH_MARGIN_S


#: By (API base URL, phone): one account per phone for the process's life, across event loops.
_sessions: dict[tuple[str, str], PhoneSession] = {}
#: By (event loop, API base URL, phone), while a sign-in of that phone runs or waits: an asyncio
#: lock belongs to one loop, and a lock kept for every phone ever signed in is ~200 bytes each.
_locks: dict[tuple[int, str, str], _Gate] = {}


class _Gate:
    """One phone's sign-in lock and how many callers hold or wait for it (gone when none do)."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


def phone_email(phone: str) -> str:
    """The sign-in email of the phone named ``phone`` in this process."""
    local = re.sub(r"[^a-z0-9._-]", "-", phone.lower())[:40] or "phone"
    return f"{local}.{_PROCESS_TAG}@phones.progressbench.test"


class _Retry(Exception):
    """The sign-in service could not be reached or failed (5xx): try again after a back-off."""


async def _auth_call(
    http: httpx.AsyncClient, path: str, body: dict[str, str], params: dict[str, str] | None = None
) -> httpx.Response:
    try:
        response = await http.post(f"/auth/v1{path}", json=body, params=params, timeout=SIGN_IN_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise _Retry(type(exc).__name__) from None
    if response.status_code >= 500 or response.status_code == 429:
        raise _Retry(f"http {response.status_code}")
    return response


def _take(session: PhoneSession, response: httpx.Response) -> bool:
    """Store a session answer; False when the answer is not one."""
    if response.status_code != 200:
        return False
    data = response.json()
    session.access_token = str(data["access_token"])
    session.refresh_token = str(data["refresh_token"])
    session.expires_at = float(data["expires_at"])
    session.user_id = str(data["user"]["id"])
    session.registered = True
    return True


async def _sign_in_once(http: httpx.AsyncClient, session: PhoneSession) -> None:
    """One pass: refresh if possible, else password, else sign up; TransportError on a refusal."""
    if session.refresh_token:
        answer = await _auth_call(
            http, "/token", {"refresh_token": session.refresh_token}, {"grant_type": "refresh_token"}
        )
        if _take(session, answer):
            return
        session.refresh_token = ""
    credentials = {"email": session.email, "password": session.password}
    if not session.registered:
        answer = await _auth_call(http, "/signup", credentials)
        if _take(session, answer):
            return
        if answer.status_code != 422 or "user_already_exists" not in answer.text:
            raise TransportError(f"sign-up answered {answer.status_code}: {answer.text[:200]}")
        session.registered = True  # an earlier attempt got through before its answer was lost
    answer = await _auth_call(http, "/token", credentials, {"grant_type": "password"})
    if not _take(session, answer):
        raise TransportError(f"sign-in answered {answer.status_code}: {answer.text[:200]}")


async def sign_in(http: httpx.AsyncClient, phone: str, backoff: Callable[[int], float]) -> PhoneSession:
    """The phone's signed-in session on ``http``'s API: signs up/in once, refreshes near expiry.

    Connection failures and 5xx answers are retried on ``backoff``; a refusal
    (wrong password, bad request) raises :class:`TransportError`.
    """
    key = (str(http.base_url), phone)
    gate_key = (id(asyncio.get_running_loop()), *key)
    gate = _locks.get(gate_key)
    if gate is None:
        gate = _locks[gate_key] = _Gate()
    gate.users += 1
    try:
        async with gate.lock:
            session = _sessions.setdefault(key, PhoneSession(phone_email(phone), secrets.token_urlsafe(18)))
            attempt = 0
            while not session.fresh(time.time()):
                try:
                    await _sign_in_once(http, session)
                except _Retry as exc:
                    attempt += 1
                    if attempt >= SIGN_IN_ATTEMPTS:
                        raise TransportError(f"sign-in failed {attempt} times: {exc}") from None
                    await asyncio.sleep(backoff(attempt))
            return session
    finally:
        gate.users -= 1
        if gate.users == 0:
            del _locks[gate_key]


async def sign_in_phone(api_url: str, phone: str, timing: Timing) -> None:
    """Sign ``phone`` in ahead of its first job (best effort: its watcher signs in again if this failed).

    A phone app signs in once, before any job: the session driver calls this
    before it starts a session's clock, so a job's time to result does not
    include the sign-in (and a refused one shows in the session that needs it).
    """
    async with phone_client(api_url, timing) as http:
        try:
            await sign_in(http, phone, lambda attempt: min(0.2 * 2**attempt, 5.0))
        except TransportError:
            return


async def access_token(http: httpx.AsyncClient, phone: str, backoff: Callable[[int], float]) -> str:
    """The phone's current access token (see :func:`sign_in`)."""
    return (await sign_in(http, phone, backoff)).access_token


#: A person who saw "could not start" taps the button again after this long (unscaled s; ASSUMPTION:
#: reading the error and tapping again, the same delay as the naive SSE user's retry).
USER_RETRY_MIN_S = 5.0
USER_RETRY_MAX_S = 30.0
#: Taps in all before the person gives up on the job (ASSUMPTION: two retries, then they leave).
SUBMIT_TAPS = 3


@dataclass(frozen=True)
class Submission:
    """The created job's links, and the failed taps it took to get them (each an error the user saw)."""

    data: dict[str, str]
    failed: tuple[str, ...] = ()

    def __getitem__(self, key: str) -> str:
        return self.data[key]

    def findings(self) -> list[Finding]:
        """One ``submit-failed`` finding per failed tap: the errors the person saw before the job."""
        return [Finding(name="submit-failed", detail=failure) for failure in self.failed]


async def submit_job(
    http: httpx.AsyncClient,
    path: str,
    body: dict[str, object],
    backoff: Callable[[int], float],
    params: dict[str, str] | None = None,
    *,
    phone: str,
    timing: Timing,
    draw: Callable[[float, float], float] = random.uniform,
    bearer: str | None = None,
) -> Submission:
    """POST a job as the signed-in ``phone`` (expecting ``202``) the way the app's user does.

    ``bearer``: the access token to send, when the phone holds its session elsewhere (a
    supabase client's); by default the phone's session on ``http``'s API (:func:`sign_in`).

    A connection that could not be made never reached the server: the app
    retries it on ``backoff`` without the user noticing. Anything later (a
    read timeout, a reset after sending, a 5xx or 429) is an error on the
    screen: the person taps again after a user delay (uniform 5-30 s real,
    scaled) and the app POSTs again *without* an idempotency key, as the
    production apps do, so a first POST that did arrive runs a second,
    unwatched job (faithfully bad; it shows as duplicate executions and
    wasted work). After :data:`SUBMIT_TAPS` failed taps the person gives
    up: :class:`TransportError`. A refusal (4xx) is final at once.
    """
    attempt = 0
    failed: list[str] = []
    while True:
        headers = {"authorization": f"Bearer {bearer or await access_token(http, phone, backoff)}"}
        try:
            response = await http.post(path, json=body, params=params, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            attempt += 1
            await asyncio.sleep(backoff(attempt))
            continue
        except httpx.HTTPError as exc:
            failure = f"create job: {type(exc).__name__}"
        else:
            if response.status_code == 202:
                data: dict[str, str] = response.json()
                return Submission(data, tuple(failed))
            if response.status_code < 500 and response.status_code != 429:
                raise TransportError(f"create job answered {response.status_code}: {response.text[:200]}")
            failure = f"create job answered {response.status_code}"
        failed.append(failure)
        if len(failed) >= SUBMIT_TAPS:
            raise TransportError(f"gave up after {len(failed)} failed taps: {'; '.join(failed)}")
        await asyncio.sleep(draw(timing.scaled(USER_RETRY_MIN_S), timing.scaled(USER_RETRY_MAX_S)))
