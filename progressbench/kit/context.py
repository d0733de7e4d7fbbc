"""What a transport's server routes get from the service they are mounted on."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field

import httpx
from fastapi import HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from progressbench.core import identity, tokens
from progressbench.core.config import JobShape, ServiceConfig
from progressbench.core.job import JobSpec, plan
from progressbench.kit.executor import JobPool
from progressbench.kit.meters import Meters
from progressbench.kit.store import JobRow, Store, parse_job_id
from progressbench.kit.timers import DISPATCH_ABORT_TIMER

log = logging.getLogger(__name__)

SERVICE_SUBJECT = identity.SERVICE_SUBJECT
#: The API's own job endpoint, the target of the misdeployed fallback (seeds/004).
RUN_HERE_PATH = "/jobs/run"


class CreateJob(BaseModel):
    """The body a phone POSTs to create a job (any transport).

    There is no ``owner``: the owner is the verified user of the request's
    access token (:meth:`ServiceContext.current_user`). A body that still
    sends one is refused with 422 (``extra="forbid"``), so a client that
    believes it chooses its owner learns at once that it does not.
    """

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(default=0, ge=-(2**63), lt=2**63)
    time_scale: float = Field(default=1.0, gt=0, le=100)
    shape: JobShape = JobShape()


#: Verified read tokens an API instance remembers (``ServiceContext._reader``).
READERS_KEPT = 10_000


@dataclass
class Created:
    job: JobRow
    token: str


@dataclass
class ServiceContext:
    """One service instance's shared parts, handed to every transport router."""

    config: ServiceConfig
    store: Store
    meters: Meters
    http: httpx.AsyncClient
    jobs: JobPool
    background: set[asyncio.Task[object]] = field(default_factory=set)
    #: Read tokens already verified: raw token -> (its exp, owner, the one job it is limited to).
    readers: dict[str, tuple[float, str, uuid.UUID | None]] = field(default_factory=dict)

    def spawn(self, coro: Coroutine[object, object, object], name: str) -> asyncio.Task[object]:
        """Fire and forget, but keep a reference until it ends (asyncio keeps weak ones).

        Like Next.js ``after()``, the task keeps the request's invocation open
        (metered duration) until it ends.
        """
        release = self.meters.hold_invocation()
        task = asyncio.create_task(coro, name=name)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        task.add_done_callback(lambda _t: release())
        return task

    @property
    def secret(self) -> str:
        return self.config.token_secret

    def current_user(self, request: Request) -> str:
        """The verified user's id (a uuid string) from the request's bearer access token; else 401.

        Used as a route dependency (``owner: str = Depends(ctx.current_user)``)
        by every transport's job creation: the owner of a job is who signed
        in, never what a body says.
        """
        try:
            user = identity.verify_access(self.secret, tokens.bearer(request.headers.get("authorization")))
        except tokens.TokenRejected as exc:
            raise HTTPException(401, exc.reason, headers={"WWW-Authenticate": "Bearer"}) from None
        return str(user.id)

    async def create_job(self, body: CreateJob, transport: str, owner: str) -> Created:
        """Insert a pending job for ``owner`` (a verified user id) with a server-made id and read token."""
        spec = JobSpec(shape=body.shape, seed=body.seed, time_scale=body.time_scale)
        job_id = uuid.uuid4()
        row = await self.store.create_job(
            job_id, owner, transport, spec.model_dump(mode="json"), plan(spec).total_steps
        )
        return Created(row, tokens.issue(self.secret, owner, job_id))

    async def readable_job(self, request: Request, raw_id: str) -> JobRow:
        """The job at ``raw_id`` if the request's bearer token may read it.

        Either the job's own read token (``job_id`` must be this job) or the
        owner's access token (``sub`` must own it). 401 for a missing or bad
        token, 404 for an unknown id or another owner's job: the answer never
        tells a stranger that a job exists.
        """
        owner, job_id = self.reader(request, raw_id)
        job = await self.store.get_job(job_id)
        if job is None or job.owner != owner:
            raise HTTPException(404, "job not found")
        return job

    def reader(self, request: Request, raw_id: str) -> tuple[str, uuid.UUID]:
        """Who the request's bearer token speaks for, if it may ask for the job at ``raw_id`` at all.

        Checks the token alone (no database): 401 for a missing or bad token,
        404 for a malformed id or a job token of another job. Whether the job
        exists and is theirs is :meth:`readable_job`'s (or a cache's) to say.
        """
        try:
            raw = tokens.bearer(request.headers.get("authorization"))
        except tokens.TokenRejected as exc:
            raise HTTPException(exc.status, exc.reason, headers={"WWW-Authenticate": "Bearer"}) from None
        return self.reader_of(raw, raw_id)

    def reader_of(self, raw: str, raw_id: str, *, job_token_only: bool = False) -> tuple[str, uuid.UUID]:
        """:meth:`reader` for a token ``raw`` the route took from elsewhere (a query, a cookie).

        ``job_token_only`` refuses a user's access token (401), for credentials
        that travel in a URL, where an access token would leak the whole
        account into logs and history.
        """
        only: uuid.UUID | None
        if job_token_only:
            try:
                grant = tokens.decode(self.secret, raw)
            except tokens.TokenRejected as exc:
                raise HTTPException(
                    401, f"query token: {exc.reason} (it must be the job's read token)"
                ) from None
            owner, only = grant.owner, grant.job_id
        else:
            owner, only = self._reader(raw)
        job_id = parse_job_id(raw_id)
        if job_id is None or (only is not None and only != job_id):
            raise HTTPException(404, "job not found")
        return owner, job_id

    async def job_readable_with(self, raw: str, raw_id: str, *, job_token_only: bool = False) -> JobRow:
        """:meth:`readable_job` for a token ``raw`` the route took from elsewhere (see :meth:`reader_of`)."""
        owner, job_id = self.reader_of(raw, raw_id, job_token_only=job_token_only)
        job = await self.store.get_job(job_id)
        if job is None or job.owner != owner:
            raise HTTPException(404, "job not found")
        return job

    def _reader(self, raw: str) -> tuple[str, uuid.UUID | None]:
        """Who a read token speaks for, and the one job it is limited to (None: any of theirs).

        A phone that polls or reconnects sends the same token again and again, and
        checking its signature was a fifth of an API's CPU per conditional poll.
        A token verified once is remembered until its own ``exp`` (checked on every
        use, so an expired token is refused exactly as before), in a bounded table
        (oldest out first); a token that fails is never remembered.
        """
        known = self.readers.get(raw)
        if known is not None:
            expires_at, owner, only = known
            if time.time() < expires_at:
                return owner, only
            del self.readers[raw]
        try:
            grant = tokens.decode(self.secret, raw)
            owner, only, expires_at = grant.owner, grant.job_id, grant.expires_at
        except tokens.TokenRejected:
            try:
                user = identity.verify_access(self.secret, raw)
            except tokens.TokenRejected as exc:
                raise HTTPException(401, exc.reason, headers={"WWW-Authenticate": "Bearer"}) from None
            owner, only, expires_at = str(user.id), None, float(user.claims["exp"])
        if len(self.readers) >= READERS_KEPT:
            del self.readers[next(iter(self.readers))]
        self.readers[raw] = (expires_at, owner, only)
        return owner, only

    def service_token(self, audience: str) -> str:
        """A token for the service ``audience`` (worker, queue, rooms), signed with the services' key."""
        return identity.issue_service(self.config.service_secret, audience)

    def check_service_token(self, request: Request, audience: str | None = None) -> None:
        """Only the testbed's own services, with a token made for this service (default: its role)."""
        try:
            identity.verify_service(
                self.config.service_secret,
                tokens.bearer(request.headers.get("authorization")),
                audience or self.config.role,
            )
        except tokens.TokenRejected as exc:
            raise HTTPException(exc.status, exc.reason) from None

    @property
    def misdeployed(self) -> bool:
        """The resource the work should go to is missing (server fault ``misdeployed``)."""
        return self.config.conditions.misdeployed

    async def run_here(self, job_id: uuid.UUID, trigger: str = "dispatch") -> bool:
        """The local-development fallback that ships to production (seeds/004): no job resource
        configured, so fire-and-forget a POST at this service's own ``/jobs/run`` endpoint. The
        work then runs inside an API request, under the API's request timeout."""
        own = self.config.peers.get(self.config.role)
        if not own:
            log.error("no URL of my own; job %s stays pending", job_id)
            return False
        log.info("no job resource configured: running job %s through my own endpoint", job_id)
        self.spawn(self._fire_at_self(own, job_id, trigger), name=f"self-dispatch-{job_id}")
        return True

    async def _fire_at_self(self, own: str, job_id: uuid.UUID, trigger: str) -> None:
        timing = self.config.timing
        try:
            await self.http.post(
                f"{own}{RUN_HERE_PATH}",
                json={"job_id": str(job_id), "trigger": trigger},
                headers={"authorization": f"Bearer {self.service_token('api')}"},
                timeout=timing.scaled(timing.request_timeout_s) + 5.0,
            )
        except httpx.HTTPError as exc:  # the caller never looks: fire-and-forget
            log.info("self-dispatch of %s ended: %r", job_id, exc)

    async def dispatch(
        self, job_id: uuid.UUID, *, attempts: int = 3, path: str = "/run", trigger: str = "dispatch"
    ) -> bool:
        """Ask a worker instance to run the job; True once one accepted it (2xx).

        Retries a few times on connection errors and 429/5xx, within the
        worker's cold-start window; a job that could not be dispatched stays
        ``pending`` and shows up as stuck in the report. Every attempt is
        aborted after 8 s (scaled): a worker that holds the request while it
        runs the job (``path`` of such a route) keeps running it, unseen.
        Under ``misdeployed`` the job goes to :meth:`run_here` instead.
        """
        if self.misdeployed:
            return await self.run_here(job_id, trigger)
        url = self.config.worker_url
        if not url:
            log.error("no worker_url configured; job %s stays pending", job_id)
            return False
        timing = self.config.timing
        delay = timing.scaled(0.5)
        abort_s = DISPATCH_ABORT_TIMER.effective_s(timing.time_scale)
        for attempt in range(attempts):
            try:
                response = await self.http.post(
                    f"{url}{path}",
                    # When the caller will have given up (wall clock): a request still queued for
                    # an instance by then is one the platform's front end drops (see realtime).
                    json={"job_id": str(job_id), "trigger": trigger, "abort_at": time.time() + abort_s},
                    headers={"authorization": f"Bearer {self.service_token('worker')}"},
                    timeout=abort_s,
                )
                if response.is_success:
                    return True
                log.warning("dispatch of %s: worker answered %s", job_id, response.status_code)
            except httpx.TimeoutException:
                log.info("dispatch of %s: aborted after %.2fs", job_id, abort_s)
            except httpx.HTTPError as exc:
                log.warning("dispatch of %s failed: %r", job_id, exc)
            if attempt + 1 < attempts:
                await asyncio.sleep(delay * (2**attempt))
        return False
