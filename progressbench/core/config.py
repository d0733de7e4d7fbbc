"""One validated configuration model for the CLI, the services and the runner.

Everything a run needs is a field of :class:`RunConfig`; everything a service
process needs is a field of :class:`ServiceConfig`, which the supervisor
serialises into one environment variable when it starts the process. The
environment is read in exactly one place (:func:`from_environment`), so an
error always names the key that was wrong.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from progressbench.core.errors import ConfigError

SERVICE_CONFIG_ENV = "PROGRESSBENCH_SERVICE_CONFIG"

PositiveFloat = Annotated[float, Field(gt=0)]

#: Bounds of a job shape a phone may ask for (issue #13, probe 5): a job is "20 s to minutes" of
#: tens of steps, so these leave two orders of magnitude of room and still cap one job's cost.
MAX_WAVES = 50
MAX_ITEMS_PER_WAVE = 1000
MAX_TOTAL_STEPS = 1000
MAX_STEP_SECONDS = 3600.0
MAX_LABEL_LENGTH = 200
#: A step duration: positive, finite (JSON ``1e309`` parses to infinity) and at most an hour.
StepSeconds = Annotated[float, Field(gt=0, le=MAX_STEP_SECONDS, allow_inf_nan=False)]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Wave(Frozen):
    """A group of similar steps, shown to the user as "<label> 3 of 6".

    ``seconds_min``/``seconds_max`` give the wave's steps their own length
    instead of the shape's range: a model call that says nothing until it
    returns is one long step, committed when the call comes back.
    """

    label: str = Field(min_length=1, max_length=MAX_LABEL_LENGTH)
    items: int = Field(ge=1, le=MAX_ITEMS_PER_WAVE)
    seconds_min: StepSeconds | None = None
    seconds_max: StepSeconds | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> Wave:
        if (self.seconds_min is None) != (self.seconds_max is None):
            raise ValueError("seconds_min and seconds_max go together")
        if (
            self.seconds_min is not None
            and self.seconds_max is not None
            and self.seconds_max < self.seconds_min
        ):
            raise ValueError(f"seconds_max ({self.seconds_max}) is below seconds_min ({self.seconds_min})")
        return self


DEFAULT_WAVES: tuple[Wave, ...] = (
    Wave(label="Analysing input", items=1),
    Wave(label="Creating image", items=6),
    Wave(label="Upscaling image", items=6),
    Wave(label="Packaging results", items=1),
)

#: The long silent step real jobs have: one call to a hosted model that reports nothing until it
#: returns ("calling VTO" in shared/reference/seeds/000: an SSE step event, then a 90 s animation
#: "mostly idle waiting on Vertex AI"; seeds/001: "Fal AI needs 60-120 seconds per image").
#: 30-90 s is ASSUMPTION, the range of those stories, as the issue asks. It is what meets CGNAT
#: idle timeouts and stream watchdogs in a run: a job that talks every few seconds never goes quiet.
MODEL_CALL = Wave(label="Calling the model", items=1, seconds_min=30.0, seconds_max=90.0)


def benchmark_waves(model_call_s: tuple[float, float] | None = (30.0, 90.0)) -> tuple[Wave, ...]:
    """The benchmark's job: the default waves with a silent model call of ``model_call_s`` (min, max)
    after the analysis; None: without it."""
    if model_call_s is None:
        return DEFAULT_WAVES
    low, high = model_call_s
    call = MODEL_CALL.model_copy(update={"seconds_min": low, "seconds_max": high})
    return (DEFAULT_WAVES[0], Wave.model_validate(call.model_dump()), *DEFAULT_WAVES[1:])


#: The benchmark's job (``RunConfig.job``): the default waves with the model call after the
#: analysis. About 110 s at time scale 1.0 (50 s of short steps, 60 s of silence on average).
BENCHMARK_WAVES: tuple[Wave, ...] = benchmark_waves()


class JobShape(Frozen):
    """What every job of a run looks like, before seeding and time scaling.

    The defaults give 14 steps of 2-5 s, so a job takes about 50 s at
    ``time_scale`` 1.0: inside the "20 s to minutes" range the testbed is for.
    The benchmark's own shape (``RunConfig.job``) adds the long silent model
    call of :data:`MODEL_CALL`. Phones send shapes, so every field is bounded
    (``MAX_*`` above): at least one wave, at most :data:`MAX_TOTAL_STEPS`
    steps, finite durations.
    """

    waves: tuple[Wave, ...] = Field(default=DEFAULT_WAVES, min_length=1, max_length=MAX_WAVES)
    step_seconds_min: StepSeconds = 2.0
    step_seconds_max: StepSeconds = 5.0
    fail_at_step: int | None = Field(default=None, ge=1, le=MAX_TOTAL_STEPS + 1)

    @field_validator("waves")
    @classmethod
    def _bounded_steps(cls, value: tuple[Wave, ...]) -> tuple[Wave, ...]:
        total = sum(w.items for w in value)
        if total > MAX_TOTAL_STEPS:
            raise ValueError(f"a job has at most {MAX_TOTAL_STEPS} steps, these waves have {total}")
        return value

    @field_validator("step_seconds_max")
    @classmethod
    def _max_not_below_min(cls, value: float, info: object) -> float:
        data = getattr(info, "data", {})
        low = data.get("step_seconds_min", 0.0)
        if value < low:
            raise ValueError(f"step_seconds_max ({value}) is below step_seconds_min ({low})")
        return value

    @property
    def total_steps(self) -> int:
        return sum(w.items for w in self.waves)

    def step_range(self, wave: Wave) -> tuple[float, float]:
        """The (min, max) seconds of one step of ``wave``: its own, or the shape's."""
        if wave.seconds_min is not None and wave.seconds_max is not None:
            return wave.seconds_min, wave.seconds_max
        return self.step_seconds_min, self.step_seconds_max

    @property
    def mean_duration_s(self) -> float:
        """Expected running time at time scale 1.0 (steps drawn uniformly in their ranges)."""
        return sum(w.items * sum(self.step_range(w)) / 2 for w in self.waves)

    @property
    def longest_step_s(self) -> float:
        """The longest a job can go without a progress event, at time scale 1.0."""
        return max(self.step_range(w)[1] for w in self.waves)


class Timing(Frozen):
    """Every duration of the testbed, in real seconds at ``time_scale`` 1.0.

    The runner multiplies each by the run's time scale; nothing else in the
    code holds a bare duration constant.
    """

    time_scale: PositiveFloat = 1.0
    #: Cloud Run sends SIGKILL 10 s after SIGTERM (platform-facts 1a).
    shutdown_grace_s: PositiveFloat = 10.0
    #: How often a running job refreshes its lease.
    job_heartbeat_s: PositiveFloat = 2.0
    #: A running job whose heartbeat is older than this is taken over.
    job_lease_s: PositiveFloat = 8.0
    #: Client poll interval for the polling transport.
    poll_interval_s: PositiveFloat = 1.0
    #: Cold start of a replacement instance (ASSUMPTION: 1-3 s is typical for a
    #: small Python container on Cloud Run; not a sourced figure).
    cold_start_s: float = Field(default=2.0, ge=0)
    #: A phone gives up on a job after this long.
    session_deadline_s: PositiveFloat = 300.0
    #: The platform cuts any request (and so any stream) after this long
    #: (Cloud Run's default request timeout is 300 s).
    request_timeout_s: PositiveFloat = 300.0
    #: A client must finish sending a request head within this long, or its connection is
    #: closed (slow-header protection, issue #13 probe 12; Toxiproxy's API allows 15 s).
    header_timeout_s: PositiveFloat = 10.0
    #: Idle time before an instance scales to zero, used to meter instance-based lifetimes
    #: (ASSUMPTION, the price table's ``cloud_run.idle_tail_s``; ``run`` takes it from there).
    scale_down_idle_s: float = Field(default=900.0, ge=0)
    #: Period of a pattern's watchdog *cron* (Vercel Cron / Cloud Scheduler run on unix-cron
    #: schedules, whose finest granularity is one minute): only patterns that add one use it.
    watchdog_cron_s: PositiveFloat = 60.0
    #: CPU an instance with request-based billing gets per request when its requests are far
    #: shorter than this (ASSUMPTION: Cloud Run allocates CPU "only during request processing";
    #: the testbed's polls last milliseconds, so each one grants this window to the instance's
    #: background work; only ``polling:in-instance`` uses it).
    request_cpu_grant_s: PositiveFloat = 0.25

    def header_timeout(self) -> float:
        """The scaled header timeout, never below 1 s (a loaded machine still gets its request in)."""
        return max(self.scaled(self.header_timeout_s), 1.0)

    def scaled(self, seconds: float) -> float:
        return seconds * self.time_scale


class ServerConditions(Frozen):
    """How the deployment misbehaves for a whole cell (server faults that are states, not events).

    * ``upstream_failure_rate`` — each step's external call (a model API) fails with this
      probability, retryably (a 503/529 "overloaded"): the execution stops after the step's
      work and the job is released for whatever retry its pattern has.
    * ``misdeployed`` — the resource the work is dispatched to is missing (no worker / job
      runner / queue configured): the API falls back to calling its own endpoint, so the work
      runs inside the API's request, under its request timeout.
    """

    upstream_failure_rate: float = Field(default=0.0, ge=0.0, lt=1.0)
    misdeployed: bool = False


class Limits(Frozen):
    """What one client may ask of a service (issue #13, probes 5 and 12)."""

    #: Largest request body any HTTP route reads (413 beyond); a job request is ~1 KB.
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    #: Job creations per second per identity, sustained (429 + Retry-After beyond).
    job_creations_per_s: float = Field(default=20.0, gt=0, le=1e6, allow_inf_nan=False)
    #: Job creations one identity may make at once before the rate applies.
    job_creation_burst: int = Field(default=200, ge=1, le=10_000_000)

    @classmethod
    def for_load(cls, users: int, jobs_per_user: int, spawn_rate: float) -> Limits:
        """Limits that never bind on the harness's own load (all its phones share one address)."""
        base = cls()
        return cls(
            job_creation_burst=max(base.job_creation_burst, users * jobs_per_user),
            job_creations_per_s=max(base.job_creations_per_s, 2 * spawn_rate + users),
        )


#: A browser origin as the ``Origin`` header spells it: scheme, host, optional port, nothing else.
Origin = Annotated[str, Field(pattern=r"^https?://[A-Za-z0-9.\-\[\]:]+$", max_length=200)]
#: Where the browser phones' page comes from. Chromium serves it from inside (a route the driver
#: fulfils), so nothing listens there; the API must allow it as a CORS origin. Same site as the
#: API on 127.0.0.1 (ports do not count for a site), another origin: like an app on
#: ``app.example.com`` reading ``api.example.com``.
PHONE_PAGE_ORIGIN = "http://127.0.0.1:4173"


class ServiceConfig(Frozen):
    """What one service process needs; passed by the supervisor as JSON."""

    #: "api", "worker", or a transport's own service ("realtime", "rooms", ...).
    role: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    instance: str = Field(min_length=1)
    database_url: str = Field(min_length=1)
    token_secret: str = Field(min_length=16)
    #: Signs the tokens services present to each other (never a phone's): apart from
    #: ``token_secret`` so no user token can pass as a service (progressbench.core.identity).
    service_secret: str = Field(default_factory=lambda: secrets.token_urlsafe(32), min_length=16, repr=False)
    worker_url: str | None = None
    #: Every service's internal URL by role ("worker" goes through the dispatch proxy).
    peers: dict[str, str] = Field(default_factory=dict)
    concurrency: int = Field(default=80, ge=1, le=1000)
    #: Kill switch for the workers' lease watchdog (it only covers transports that opt in).
    watchdog: bool = True
    timing: Timing = Timing()
    conditions: ServerConditions = ServerConditions()
    limits: Limits = Limits()
    #: Origins whose pages may call the API from a browser (CORS, credentials allowed): an exact
    #: ``scheme://host[:port]`` each. Empty: no CORS headers at all, and preflights are refused.
    cors_origins: tuple[Origin, ...] = ()


TransportName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*(:[a-z0-9-]+)?$")]

#: The default matrix: the baseline and the two mobile faults every transport meets first.
DEFAULT_PROFILES: tuple[str, ...] = ("clean", "tunnel", "handoff")
#: Default time scale of `run`: jobs of ~5 s, so the default matrix takes a few minutes.
DEFAULT_TIME_SCALE = 0.1


class RunConfig(Frozen):
    """A whole `progressbench run`: the matrix, the load, and where results go."""

    #: ``NAME`` or ``NAME:VARIANT`` each. No default here: the registry knows the transports, and
    #: the app's edge (``progressbench.app.configure``) fills in every registered one.
    transports: tuple[TransportName, ...]
    profiles: tuple[str, ...] = DEFAULT_PROFILES
    users: int = Field(default=20, ge=1, le=20000)
    jobs_per_user: int = Field(default=2, ge=1, le=1000)
    spawn_rate: float = Field(default=50.0, gt=0)
    seed: int = 1
    out: Path = Path("results/latest")
    database_url: str | None = None
    toxiproxy_url: str | None = None
    locust_workers: int = Field(default=0, ge=0, le=16)
    #: Child runs the transports are split over, each with its own stack (``app/parallel.py``).
    parallel: int = Field(default=1, ge=1, le=16)
    #: Passed to every watcher as ``ClientSettings.options`` (e.g. a real Supabase project's URL).
    client_options: dict[str, str] = Field(default_factory=dict)
    #: Signs the per-job tokens instead of a fresh random secret (e.g. a Supabase project's JWT
    #: secret, so its RLS accepts them). Never written to results.
    token_secret: str | None = Field(default=None, min_length=16, exclude=True, repr=False)
    worker_instances: int = Field(default=1, ge=1, le=16)
    worker_concurrency: int = Field(default=80, ge=1, le=1000)
    #: Requests (open streams included) one API instance serves at once (Cloud Run's default 80).
    api_concurrency: int = Field(default=80, ge=1, le=1000)
    #: Cloud-Run-style scale-out of api and worker behind a round-robin front (app/autoscaler.py).
    autoscale: bool = True
    #: The autoscaler's ceiling per service (Cloud Run's default is 100; 20 suits one machine).
    max_instances: int = Field(default=20, ge=1, le=100)
    job: JobShape = JobShape(waves=BENCHMARK_WAVES)
    timing: Timing = Timing()
    #: A price table (TOML, the format of ``reports/prices.toml``) instead of the packaged one.
    prices: Path | None = None
    #: Browser origins the API answers CORS for (``ServiceConfig.cors_origins``); the default
    #: lets the browser phones' page in.
    cors_origins: tuple[Origin, ...] = (PHONE_PAGE_ORIGIN,)
    #: Phones of each cell that a transport may run as real browser pages (``sse:browser``: headless
    #: Chromium); the cell's other phones run its Python client. Passed to watchers as option
    #: ``browser_phones``.
    browser_phones: int = Field(default=4, ge=0, le=200)

    @field_validator("transports", "profiles")
    @classmethod
    def _non_empty_unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("must name at least one")
        if len(set(value)) != len(value):
            raise ValueError("names must be unique")
        return value


def split_list(raw: str) -> tuple[str, ...]:
    """Parse a comma list from the command line: ``"a, b,c"`` -> ``("a","b","c")``."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem, each naming the key, for users rather than developers."""
    lines = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "value"
        lines.append(f"{key}: {item['msg']}")
    return "; ".join(lines)


def build_run_config(values: Mapping[str, object]) -> RunConfig:
    try:
        return RunConfig.model_validate(dict(values))
    except ValidationError as exc:
        raise ConfigError(f"invalid run configuration: {describe_validation_error(exc)}") from None


_DB_URL = re.compile(r"^postgres(ql)?://", re.IGNORECASE)


#: Environment variables that become watcher options (a real Supabase project instead of
#: the bundled realtime server; see transports/realtime/README.md).
CLIENT_OPTION_ENV = {"SUPABASE_URL": "supabase_url", "SUPABASE_ANON_KEY": "supabase_anon_key"}


def from_environment(environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """Read the few environment variables the CLI honours, once, at the edge."""
    env = os.environ if environ is None else environ
    found: dict[str, object] = {}
    for key, field in (
        ("DATABASE_URL", "database_url"),
        ("TOXIPROXY_URL", "toxiproxy_url"),
        ("SUPABASE_JWT_SECRET", "token_secret"),
    ):
        value = env.get(key, "").strip()
        if value:
            found[field] = value
    options = {opt: env[key].strip() for key, opt in CLIENT_OPTION_ENV.items() if env.get(key, "").strip()}
    if options:
        found["client_options"] = options
    url = str(found.get("database_url", ""))
    if url and not _DB_URL.match(url):
        raise ConfigError(f"DATABASE_URL: expected a postgresql:// URL, got {url[:40]!r}")
    return found


def load_service_config(environ: Mapping[str, str] | None = None) -> ServiceConfig:
    """The service entry point's only read of its configuration."""
    env = os.environ if environ is None else environ
    raw = env.get(SERVICE_CONFIG_ENV)
    if not raw:
        raise ConfigError(f"{SERVICE_CONFIG_ENV} is not set; services are started by the supervisor")
    try:
        return ServiceConfig.model_validate_json(raw)
    except ValidationError as exc:
        raise ConfigError(f"{SERVICE_CONFIG_ENV}: {describe_validation_error(exc)}") from None
