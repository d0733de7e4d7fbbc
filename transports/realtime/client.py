"""Client face of ``realtime``: the official ``supabase`` client, unchanged, as the app uses it.

What a phone app does with Supabase after SSE failed it, through one project URL
(``endpoints["supabase"]``, the stack's gateway; or ``SUPABASE_URL``):

1. ``acreate_client(url, anon_key)``, then ``auth.sign_in_with_password`` with
   the phone's account (the client hands the session's JWT to its Realtime
   client itself, so RLS sees the user's claims).
2. ``POST /realtime/jobs`` on the app's API with that session's access token →
   ``{job_id, token, anon_key}`` (the anon key itself comes from ``GET /realtime/config``
   or ``SUPABASE_ANON_KEY``, as an app ships it).
3. ``channel("job-<id>").on_postgres_changes(INSERT, table="job_events",
   filter="job_id=eq.<id>")`` and ``subscribe``.
4. On every "Subscribed to PostgreSQL" (first subscribe and every rejoin)
   refetch the rows after the last contiguous seq with
   ``table("job_events").select(...).eq("job_id", id).gt("seq", n).order("seq")``
   (PostgREST, under RLS), then apply live rows, deduplicated by seq. Realtime
   never replays: the refetch is the only way to fill what was missed while
   the socket was down.

Reconnects are counted from the channel's subscribe callback by the
:class:`~progressbench.core.reconnect.Reconnector` (policy ``REFETCH``):
CHANNEL_ERROR/TIMED_OUT → ``Disconnected``; SUBSCRIBED again →
``Reconnected``; the refetch after the next "Subscribed to PostgreSQL" →
``Resumed``. The library does its own reconnecting; this watcher only
starts the channel over (``remove_all_channels`` + a fresh channel, on the
``restart`` back-off) when it fails silently.

The library's silent failure modes are watched every ``watchdog_s``, each
reported as a ``Finding`` and recovered with a fresh channel (resubscribe +
refetch): ``client-gave-up`` (its 5 reconnect attempts are spent; it is
dead and says nothing), ``listener-died`` (the listen task ended while the
socket looks connected, e.g. after a raising callback — ours never raise),
``channel-closed`` (the server closed the channel: token expiry or the
duplicate-join trap; the client never rejoins).

Variant ``refetch``: a periodic refetch (``refetch_s``, 8 s scaled) as the
app-level safety net when nothing arrives; rows it finds that realtime should
have delivered are reported as ``Finding("refetch-recovered")``. The pattern
itself refetches only on each (re)subscribe.

Variant ``watchdog``: the same phone; the job is created as
``realtime:watchdog`` so the deployment's watchdog cron covers it.

Variant ``no-auth``: the same client *never signed in* (the app's sign-in
went elsewhere and the session never reached the supabase client) — it joins
with the anon key, RLS hides every row, and nothing arrives with no error. It
never refetches (that would hide the trap); a ``Finding("no-auth")`` at the
start names the cause in the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import httpx
from postgrest.exceptions import APIError
from progressbench.transports.canary import probe_get
from progressbench.transports.http import (
    REFRESH_MARGIN_S,
    SIGN_IN_ATTEMPTS,
    SIGN_IN_TIMEOUT_S,
    access_token,
    phone_client,
    sign_in,
    submit_job,
)
from progressbench.transports.realtime.config import GATEWAY_ROLE, WatcherOptions
from progressbench.transports.types import ClientSettings, JobRequest, ProbeReport
from realtime import AsyncRealtimeChannel, AsyncRealtimeClient
from realtime.types import RealtimePostgresChangesListenEvent, RealtimeSubscribeStates
from supabase import AsyncClient, AsyncClientOptions, acreate_client
from supabase.types import RealtimeClientOptions
from supabase_auth.errors import AuthApiError, AuthError, AuthRetryableError

from progressbench.core.errors import TransportError
from progressbench.core.events import ClientEvent, Finding, Progress, Submitted
from progressbench.core.reconnect import REFETCH, Backoff, Reconnector

log = logging.getLogger(__name__)

SUBSCRIBED_TO_POSTGRES = "Subscribed to PostgreSQL"
#: What the refetch reads: the columns a progress event needs.
COLUMNS = ("job_id", "seq", "kind", "message")
#: PostgREST error codes that mean "your credentials are refused" (bad, expired JWT; role refused).
REFUSED_CODES = frozenset({"PGRST301", "PGRST302", "PGRST303", "42501"})

#: What the watcher does about one inbox item: the events it reports, as they happen.
Reaction = AsyncGenerator[ClientEvent, None]


@dataclass(frozen=True, slots=True)
class _Stored:
    """A supabase session as the app persists it between jobs (supabase-js ``persistSession``)."""

    access_token: str
    refresh_token: str
    expires_at: float

    def fresh(self, now: float) -> bool:
        return now < self.expires_at - REFRESH_MARGIN_S


@dataclass(frozen=True, slots=True)
class _App:
    """The started app: its API client, its supabase client and the signed-in user's token."""

    http: httpx.AsyncClient
    client: AsyncClient
    bearer: str | None


#: By (project URL, phone), for the process's life: the app signs its user in once, not per job.
_stored: dict[tuple[str, str], _Stored] = {}


@dataclass(frozen=True, slots=True)
class _Row:
    record: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _State:
    generation: int
    state: RealtimeSubscribeStates
    error: str


@dataclass(frozen=True, slots=True)
class _Live:
    generation: int


_Item = _Row | _State | _Live


@dataclass
class _Link:
    """One channel on the app's supabase client; a fresh channel replaces it after a silent failure."""

    generation: int
    client: AsyncClient
    channel: AsyncRealtimeChannel
    subscribe: asyncio.Task[Any] | None = None
    closing: bool = False

    @property
    def realtime(self) -> AsyncRealtimeClient:
        return self.client.realtime

    def gave_up(self) -> bool:
        """The library stopped trying: not connected, and nothing left that would reconnect."""
        if self.realtime.is_connected:
            return False
        listen = self.realtime._listen_task
        if listen is not None:
            if not listen.done():
                return False
            if not listen.cancelled():
                listen.exception()  # retrieved: the library's give-up is reported as a Finding
            return True
        sub = self.subscribe
        if sub is not None and sub.done():
            if not sub.cancelled():
                sub.exception()
            return True
        return False

    def listener_died(self) -> bool:
        listen = self.realtime._listen_task
        return self.realtime.is_connected and listen is not None and listen.done()

    def why(self) -> str:
        """What ended the library's listen task (or its first connect), for the finding."""
        for task in (self.realtime._listen_task, self.subscribe):
            if task is not None and task.done():
                if task.cancelled():
                    return "cancelled"
                exc = task.exception()
                if exc is not None:
                    return f"{type(exc).__name__}: {exc}"[:160]
        return "ended"

    async def close(self) -> None:
        """Leave the channel and close the socket (``remove_all_channels``), bounded in time."""
        self.closing = True
        if self.subscribe is not None and not self.subscribe.done():
            self.subscribe.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.subscribe
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.remove_all_channels(), 2.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.realtime.close(), 2.0)


@dataclass
class _Watch:
    """One session's I/O state around the core: the live link and the timers of the watchdogs."""

    job_id: str
    link: _Link
    state: Reconnector
    last_news: float
    restarts: int = 0
    next_restart: float = 0.0

    def lost(self, reason: str, now: float) -> list[ClientEvent]:
        """A silent failure found by us: a drop, unless the outage was already reported."""
        return [] if self.state.is_down else self.state.dropped(reason, now)


@contextlib.asynccontextmanager
async def _patient(http: httpx.AsyncClient) -> AsyncIterator[None]:
    """``http`` with the sign-in's read timeout for the duration of the block."""
    usual = http.timeout
    http.timeout = httpx.Timeout(SIGN_IN_TIMEOUT_S, connect=usual.connect)
    try:
        yield
    finally:
        http.timeout = usual


class RealtimeWatcher:
    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self.timing = timing = settings.timing
        self.no_auth = settings.variant == "no-auth"
        self.opts = WatcherOptions.parse(
            settings.options, settings.timing, periodic=settings.variant == "refetch"
        )
        self.submit_backoff = Backoff(initial=timing.scaled(1.0), ceiling=timing.scaled(30.0))
        self.restart_backoff = Backoff(
            initial=timing.scaled(2.0), ceiling=timing.scaled(30.0), floor=0.05, jitter=0.5
        )
        self._inbox: asyncio.Queue[_Item] = asyncio.Queue()
        self._generation = 0
        self._app: _App | None = None

    @property
    def project_url(self) -> str:
        """The one base URL the supabase client is given: a real project's, or the stack's gateway."""
        return (self.opts.supabase_url or self.settings.endpoints[GATEWAY_ROLE]).rstrip("/")

    async def _client(self, http: httpx.AsyncClient, anon_key: str) -> AsyncClient:
        """``acreate_client(url, anon_key)`` with the run's timing in the client's own options.

        ``httpx_client``: the phone's HTTP client (timeouts scaled like every phone's) for sign-in
        and PostgREST; ``realtime``: the library's back-off, heartbeat and push timeout, scaled.
        ``auto_refresh_token`` is off: a session is shorter than the access token's hour, and the
        refresh timer would be a wall-clock task outliving it.
        """
        realtime: dict[str, Any] = {
            "initial_backoff": self.opts.backoff_s,
            # typed int, used as seconds (asyncio.sleep, open_timeout): the scaled float is what we mean
            "hb_interval": self.opts.heartbeat_s,
            "timeout": self.opts.push_timeout_s,  # passed through to AsyncRealtimeClient
        }
        options = AsyncClientOptions(
            httpx_client=http,
            auto_refresh_token=False,
            realtime=cast(RealtimeClientOptions, realtime),
        )
        return await acreate_client(self.project_url, anon_key, options)

    async def _sign_in(
        self, client: AsyncClient, sb_http: httpx.AsyncClient, http: httpx.AsyncClient, phone: str
    ) -> str:
        """``auth.sign_in_with_password`` with the phone's account; the session's access token.

        ``sb_http`` is the supabase client's HTTP client: for the sign-in its read timeout is
        :data:`SIGN_IN_TIMEOUT_S` (a password hash costs the server real CPU whatever the time
        scale; a phone that gives up early only retries it and piles more hashing on).
        The account is the one the phone signs in to the app with (created once per phone);
        against a real project (``supabase_url``) that has never seen it, the client signs up
        once (the project must not require email confirmation). A refusal is a
        :class:`TransportError`; an unreachable sign-in is retried on the submit back-off a
        bounded number of times. Like the app (supabase-js persists its session), the phone
        signs in with its password at most once: its later jobs start from the stored session
        (against the stack, from the session its account got at sign-up), which costs one
        ``/user`` read instead of a password hash per job.
        """
        key = (self.project_url, phone)
        account = await sign_in(http, phone, self.submit_backoff.delay)
        credentials = {"email": account.email, "password": account.password}
        now = time.time()
        stored = _stored.get(key)
        persisted: tuple[str, str] | None = None
        if stored is not None and stored.fresh(now):
            persisted = (stored.access_token, stored.refresh_token)
        elif self.opts.supabase_url is None and account.fresh(now):
            # The stack's auth is the app's: the session the phone's account got when it signed
            # up is the one supabase-js would have persisted.
            persisted = (account.access_token, account.refresh_token)
        attempt = 0
        signed_up = self.opts.supabase_url is None
        while True:
            try:
                async with _patient(sb_http):
                    if persisted is not None:
                        # The app's start with a persisted session: no password, one /user read.
                        answer = await client.auth.set_session(*persisted)
                    else:
                        answer = await client.auth.sign_in_with_password(credentials)  # type: ignore[arg-type]
                if answer.session is None:
                    raise TransportError("supabase sign-in answered without a session")
                _stored[key] = _Stored(
                    answer.session.access_token,
                    answer.session.refresh_token,
                    float(answer.session.expires_at or 0),
                )
                return answer.session.access_token
            except AuthApiError as exc:
                if persisted is not None:  # refused (revoked, signed out): sign in with the password
                    persisted = None
                    _stored.pop(key, None)
                    continue
                if exc.code == "invalid_credentials" and not signed_up:
                    signed_up = True
                    async with _patient(sb_http):
                        created = await client.auth.sign_up(credentials)  # type: ignore[arg-type]
                    if created.session is None:
                        raise TransportError(
                            "the project's Auth wants email confirmation: turn it off"
                        ) from None
                    continue
                raise TransportError(f"supabase sign-in refused: {exc}"[:200]) from None
            except (AuthRetryableError, AuthError, httpx.HTTPError) as exc:
                attempt += 1
                if attempt >= SIGN_IN_ATTEMPTS:
                    why = f"{type(exc).__name__}: {exc}"
                    raise TransportError(f"supabase sign-in failed {attempt} times: {why}"[:200]) from None
                await asyncio.sleep(self.submit_backoff.delay(attempt))

    async def _anon_key(self, http: httpx.AsyncClient) -> str:
        """The project's public anon key: ``SUPABASE_ANON_KEY``, else the app's public config route.

        A phone app ships the anon key in its bundle; the stack makes a fresh one per run, so
        the phone reads it from the API (``GET /realtime/config``), retried while unreachable.
        """
        if self.opts.supabase_anon_key:
            return self.opts.supabase_anon_key
        attempt = 0
        while True:
            try:
                response = await http.get("/realtime/config")
                if response.status_code == 200:
                    return str(response.json()["anon_key"])
                failure = f"http {response.status_code}"
            except httpx.HTTPError as exc:
                failure = type(exc).__name__
            attempt += 1
            if attempt >= SIGN_IN_ATTEMPTS:
                raise TransportError(f"app config unreachable after {attempt} tries: {failure}")
            await asyncio.sleep(self.submit_backoff.delay(attempt))

    # ----------------------------------------------------------------- canary

    async def probe(self, phone: str, victim_job_id: str, window_s: float) -> ProbeReport:
        """The canary: the API's read route, the PostgREST table and realtime channels, as the canary.

        Signed in with its own account, the canary reads the victim's rows
        through the API route and through ``/rest/v1`` (filtered on the
        victim's job, and unfiltered), then joins one channel filtered on the
        victim's job and one *unfiltered* (every row of the table) and listens
        for ``window_s``: RLS must deliver nothing of a job it does not own.
        Every row counts as foreign (the canary owns no job).
        """
        report = ProbeReport()
        async with phone_client(self.settings.endpoints["api"], self.timing) as http:
            token = await access_token(http, phone, self.submit_backoff.delay)
            path = f"/realtime/jobs/{victim_job_id}/events"
            await probe_get(http, report, "refetch-url", path, victim_job_id, token)
            # The canary owns no job, so it never got the anon key with one: its own JWT (a valid
            # project key too) stands in as the client's key; its claims come from the sign-in anyway.
            anon_key = self.opts.supabase_anon_key or token
            async with phone_client(self.project_url, self.timing) as sb_http:
                await self._probe_supabase(sb_http, http, phone, anon_key, victim_job_id, window_s, report)
        return report

    async def _probe_supabase(
        self,
        sb_http: httpx.AsyncClient,
        http: httpx.AsyncClient,
        phone: str,
        anon_key: str,
        victim_job_id: str,
        window_s: float,
        report: ProbeReport,
    ) -> None:
        client = await self._client(sb_http, anon_key)
        channels = {"channel-filtered": f"job_id=eq.{victim_job_id}", "channel-unfiltered": None}
        rows = dict.fromkeys(channels, 0)
        states: dict[str, str] = {}
        try:
            await self._sign_in(client, sb_http, http, phone)
            for name, eq in (("rest-filtered", victim_job_id), ("rest-unfiltered", None)):
                query = client.table("job_events").select(*COLUMNS)
                if eq is not None:
                    query = query.eq("job_id", eq)
                try:
                    found = (await query.execute()).data
                    report.add(name, "200", len(found))
                except (APIError, httpx.HTTPError) as exc:
                    report.add(name, f"{type(exc).__name__}: {exc}"[:120])
            for name, row_filter in channels.items():
                channel = client.channel(f"canary-{name}")

                def on_row(_payload: Any, name: str = name) -> None:
                    rows[name] += 1

                def on_state(state: RealtimeSubscribeStates, err: Exception | None, name: str = name) -> None:
                    states[name] = state.value + (f" ({err})" if err else "")

                channel.on_postgres_changes(
                    RealtimePostgresChangesListenEvent.Insert,
                    on_row,
                    table="job_events",
                    schema="public",
                    filter=row_filter,
                )
                await asyncio.wait_for(channel.subscribe(on_state), max(window_s, 5.0))
            await asyncio.sleep(window_s)  # the listening window: rows of running jobs arrive now or never
        except Exception as exc:  # a refused or broken socket is a probe that got nothing
            states.setdefault("socket", f"{type(exc).__name__}: {exc}"[:120])
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.remove_all_channels(), 2.0)
        for name in channels:
            report.add(name, states.get(name, states.get("socket", "not joined")), rows[name])

    # ----------------------------------------------------------------- session

    @contextlib.asynccontextmanager
    async def prepared(self, phone: str) -> AsyncIterator[None]:
        """The app's start, before its user taps: its public config, the supabase client and the
        user's sign-in (not in no-auth: there the app signed in elsewhere and the client never got
        the session). The session driver enters this before the job's clock starts, as a person
        opens the app before asking for a result; a password hash is real server CPU at any
        time scale, and a compressed run would otherwise stretch it into the job's time."""
        if self._app is not None:
            yield
            return
        async with (
            phone_client(self.settings.endpoints["api"], self.timing) as http,
            phone_client(self.project_url, self.timing) as sb_http,
        ):
            client = await self._client(sb_http, await self._anon_key(http))
            bearer = None if self.no_auth else await self._sign_in(client, sb_http, http, phone)
            self._app = _App(http, client, bearer)
            try:
                yield
            finally:
                self._app = None

    async def session(self, request: JobRequest) -> AsyncIterator[ClientEvent]:
        async with self.prepared(request.owner):
            assert self._app is not None
            http, client, bearer = self._app.http, self._app.client, self._app.bearer
            params = {"variant": self.settings.variant} if self.settings.variant else None
            created = await submit_job(
                http,
                "/realtime/jobs",
                request.body(),
                self.submit_backoff.delay,
                params=params,
                phone=request.owner,
                timing=self.timing,
                bearer=bearer,
            )
            for finding in created.findings():
                yield finding
            job_id, token = created["job_id"], created["token"]
            yield Submitted(job_id=job_id, token=token)
            if self.no_auth:
                yield Finding(
                    name="no-auth",
                    detail="supabase client never signed in: RLS hides every row and Realtime sends nothing",
                )
            link = self._open(client, job_id)
            watch = _Watch(job_id, link, Reconnector(REFETCH), time.monotonic())
            try:
                while True:
                    for reaction in self._reactions(watch, await self._next()):
                        async with contextlib.aclosing(reaction) as events:
                            async for event in events:
                                yield event
                                if event is watch.state.final:
                                    return
            finally:
                await watch.link.close()

    async def _next(self) -> _Item | None:
        """The next inbox item, or None when the watchdog interval passed without one."""
        try:
            return await asyncio.wait_for(self._inbox.get(), self.opts.watchdog_s)
        except TimeoutError:
            return None

    def _reactions(self, watch: _Watch, item: _Item | None) -> list[Reaction]:
        """What one inbox item sets off, in order; the watchdogs run after every item and every tick."""
        now = time.monotonic()
        return [*self._handlers(watch, item, now), self._watchdog(watch, now), self._safety_net(watch, now)]

    def _handlers(self, watch: _Watch, item: _Item | None, now: float) -> list[Reaction]:
        """Rows count from any link; states and "live" only from the current one."""
        match item:
            case _Row():
                return [self._on_row(watch, item, now)]
            case _State(generation=generation) if generation == watch.link.generation:
                return [self._on_state(watch, item, now)]
            case _Live(generation=generation) if generation == watch.link.generation:
                return [self._on_live(watch, now)]
        return []

    async def _on_row(self, watch: _Watch, item: _Row, now: float) -> Reaction:
        watch.last_news = now
        event = self._progress(item.record, watch.job_id)
        for received in watch.state.show([] if event is None else [event], "live"):
            yield received

    async def _on_live(self, watch: _Watch, now: float) -> Reaction:
        """Subscribed to PostgreSQL: the feed is live, so the rows missed meanwhile can be refetched."""
        watch.last_news = now
        if self.no_auth:  # never refetch: that would hide the trap
            return
        for resumed in watch.state.resume():
            yield resumed
        for received in watch.state.show(await self._fetch(watch), "refetch"):
            yield received

    async def _on_state(self, watch: _Watch, item: _State, now: float) -> Reaction:
        """The channel's subscribe callback: the library's own reconnects, seen from outside."""
        if item.state == RealtimeSubscribeStates.SUBSCRIBED:
            for event in watch.state.up(now):
                yield event
        elif item.state in (RealtimeSubscribeStates.CHANNEL_ERROR, RealtimeSubscribeStates.TIMED_OUT):
            for event in watch.state.dropped(f"{item.state.value}: {item.error}"[:200], now):
                yield event
        elif item.state == RealtimeSubscribeStates.CLOSED and not watch.link.closing:
            yield Finding(name="channel-closed", detail=item.error[:200])
            for event in watch.lost("channel closed by the server", now):
                yield event
            watch.next_restart = 0.0
            await self._restart(watch)

    async def _watchdog(self, watch: _Watch, now: float) -> Reaction:
        """The library's silent failure modes: report, then a fresh client (on the restart back-off)."""
        link = watch.link
        if now < watch.next_restart or not (link.gave_up() or link.listener_died()):
            return
        name = "client-gave-up" if link.gave_up() else "listener-died"
        yield Finding(name=name, detail=f"{link.why()}; fresh client (restart {watch.restarts + 1})")
        for event in watch.lost(name, now):
            yield event
        watch.restarts += 1
        await self._restart(watch)
        watch.next_restart = time.monotonic() + self.restart_backoff.delay(watch.restarts)

    async def _safety_net(self, watch: _Watch, now: float) -> Reaction:
        """The app-level refetch when realtime has been quiet for ``refetch_s``."""
        refetch_s = self.opts.refetch_s
        if self.no_auth or refetch_s is None or now - watch.last_news < refetch_s:
            return
        watch.last_news = now
        found = False
        for event in watch.state.show(await self._fetch(watch), "refetch"):
            if not found and event.shown:
                found = True
                yield Finding(name="refetch-recovered", detail=f"after seq {watch.state.book.contiguous}")
            yield event

    # ----------------------------------------------------------------- realtime

    def _open(self, client: AsyncClient, job_id: str) -> _Link:
        """A channel on ``job_events`` rows of this job, subscribing in the background."""
        self._generation += 1
        generation = self._generation
        channel = client.channel(f"job-{job_id}")
        inbox = self._inbox

        def on_row(payload: Any) -> None:
            try:
                record = payload["data"].get("record")
                if isinstance(record, dict):
                    inbox.put_nowait(_Row(record))
            except Exception:  # a raising callback would kill the library's listener
                log.exception("unexpected postgres_changes payload")

        def on_system(payload: Any) -> None:
            try:
                fields = payload if isinstance(payload, dict) else vars(payload)
                if fields.get("status") == "ok" and fields.get("message") == SUBSCRIBED_TO_POSTGRES:
                    inbox.put_nowait(_Live(generation))
            except Exception:
                log.exception("unexpected system payload")

        def on_state(state: RealtimeSubscribeStates, error: Exception | None) -> None:
            try:
                inbox.put_nowait(_State(generation, state, "" if error is None else str(error)))
            except Exception:
                log.exception("subscribe callback failed")

        channel.on_postgres_changes(
            RealtimePostgresChangesListenEvent.Insert,
            on_row,
            table="job_events",
            schema="public",
            filter=f"job_id=eq.{job_id}",
        )
        channel.on_system(on_system)
        link = _Link(generation, client, channel)
        link.subscribe = asyncio.create_task(channel.subscribe(on_state), name=f"rt-subscribe-{job_id}")
        return link

    async def _restart(self, watch: _Watch) -> None:
        """Start over on the same signed-in client: leave everything, then a fresh channel."""
        await watch.link.close()
        watch.link = self._open(watch.link.client, watch.job_id)

    # ----------------------------------------------------------------- PostgREST

    async def _fetch(self, watch: _Watch) -> list[Progress]:
        """Rows after the book's contiguous prefix, read with the client's table query (PostgREST, RLS).

        None when the project is unreachable (after postgrest-py's own retries) or answers an
        error other than a refused credential; a refused one ends the session.
        """
        try:
            response = await (
                watch.link.client.table("job_events")
                .select(*COLUMNS)
                .eq("job_id", watch.job_id)
                .gt("seq", watch.state.cursor)
                .order("seq")
                .execute()
            )
        except APIError as exc:
            if exc.code in REFUSED_CODES:
                raise TransportError(f"refetch refused: {exc.code} {exc.message}"[:200]) from None
            log.info("refetch failed: %s %s", exc.code, exc.message)
            return []
        except httpx.HTTPError as exc:
            log.info("refetch failed: %r", exc)
            return []
        rows = (self._progress(row, watch.job_id) for row in response.data if isinstance(row, dict))
        return [event for event in rows if event is not None]

    @staticmethod
    def _progress(record: dict[str, Any], job_id: str) -> Progress | None:
        try:
            return Progress(
                job_id=str(record["job_id"]),
                seq=int(record["seq"]),
                kind=str(record["kind"]),
                message=str(record["message"]),
            )
        except (KeyError, TypeError, ValueError):
            log.warning("row without job_id/seq/kind/message: %r", record)
            return None
