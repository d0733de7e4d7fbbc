"""``summary.json`` as typed models: the names of RESULTS.md, checked where they are used.

Cells used to travel as ``dict[str, Any]``: a misspelt name in a gate rule
or a report column read ``None`` and compared nothing. Here every name the
contract fixes is a field, :func:`metric_names` derives from the models the
dotted names a rule may compare (``latency_ms.p95``,
``resume_outcomes.silent-gap``), and :func:`parse_summary` turns a file that
does not fit into one :class:`~progressbench.core.errors.ResultsError` line.

Adding a field (schema 2 adds many): declare it on the model that holds it,
under its RESULTS.md name (``alias`` when that name is not an identifier,
like ``replayed-complete``), and fill it where the cell is scored. It is a
metric for the gate from then on; nothing else lists names. Files are
written by alias in declaration order, so the order here is the file's.
A field that files of the current version lack needs a default; otherwise
:data:`SCHEMA_VERSION` goes up and older files are refused, not misread.

Pure code: text in, models out; reading and writing files is the app's.
"""

from __future__ import annotations

import difflib
import functools
import json
import types
from collections.abc import Iterator
from typing import Any, Final, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from progressbench.core.errors import ResultsError

SCHEMA_VERSION: Final = 2
#: Versions this code reads: schema 2 only adds fields (with defaults), so a schema-1 file still loads.
READABLE_VERSIONS: Final = (1, 2)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Percentiles(_Model):
    """Real-time-equivalent milliseconds (or seconds, as the field name says); None without a sample."""

    p50: float | None
    p95: float | None


class Percentiles99(Percentiles):
    p99: float | None


class ResumeOutcomes(_Model):
    """Reconnects by outcome, the taxonomy of ``reference/peers.md`` (b)."""

    replayed_complete: int = Field(alias="replayed-complete")
    gap_flagged: int = Field(alias="gap-flagged")
    silent_gap: int = Field(alias="silent-gap")
    duplicate_replay: int = Field(alias="duplicate-replay")
    #: schema 2: the stream or the job began again from its start (a naive re-POST, a rerun)
    restarted: int = 0


class Spread(_Model):
    """Mean and maximum of a per-session count (None when the cell has no session)."""

    mean: float | None
    max: int | None


class FaultWindowSpan(_Model):
    """A fault window as the summary tells it: seconds after the cell began."""

    #: The phone cell it hit; None for a stack-wide fault (a killed worker).
    cell: int | None
    kind: str
    start_s: float
    duration_s: float
    #: The window's start on the host's wall clock (epoch ns), to place it beside the phones'
    #: observations (session timelines); None in files written before it was recorded.
    start_wall_ns: int | None = None


class Distortion(_Model):
    """A timer that could not follow the time scale (``progressbench.core.timers``), in real seconds."""

    timer: str
    real_s: float
    effective_real_s: float


class InstanceSpan(_Model):
    """One scaled service's instances over a cell (``progressbench/core/autoscale.py``)."""

    max: int
    #: time-weighted mean over the cell
    mean: float
    #: the integral of the count over the cell (what instance-based billing is priced by)
    instance_seconds: float
    #: [seconds since the cell began, instances] at each change
    timeline: list[tuple[float, int]]


class Saturation(_Model):
    """Why a cell measured the machine's capacity rather than the pattern (``core/saturation.py``)."""

    #: Mean CPU of the busiest load-generator process, percent of one core.
    generator_cpu: float | None
    #: Per service role (and ``postgres``): mean CPU of its busiest instance, percent of one core.
    service_cpu: dict[str, float]
    #: Median actual / planned duration of the jobs that ran once.
    job_slowdown: float | None
    #: Mean CPU of the whole machine, percent of all cores.
    machine_cpu: float | None = None
    #: The machine's mean CPU over its busiest 30 s (schema 2; the whole cell if shorter).
    machine_cpu_peak: float | None = None
    #: Per group (``generator``, each service role, ``postgres``), its processes' CPU together
    #: over that same stretch, percent of one core (schema 2): who had the machine then.
    peak_cpu: dict[str, float] = {}
    #: One sentence per rule that fired; empty when the cell was not saturated.
    reasons: list[str] = []


class CellAggregates(_Model):
    """What the ledger folds from one cell's sessions and events (the aggregates of RESULTS.md)."""

    transport: str
    profile: str
    sessions: int
    jobs: int
    events_expected: int
    events_received: int
    delivery_ratio: float | None
    lost: int
    duplicates: int
    out_of_order: int
    terminal_ratio: float | None
    latency_ms: Percentiles99
    terminal_latency_ms: Percentiles
    disconnects: int
    reconnects: int
    resumes: int
    resume_ms: Percentiles
    resume_outcomes: ResumeOutcomes
    silent_stalls: int
    foreign_events: int
    duplicate_executions: int
    #: Jobs the store still holds unfinished after the cell (pending, running, interrupted).
    stuck_jobs: int
    #: Sessions by how the phone's session ended ("done", "deadline", ...).
    session_outcomes: dict[str, int]
    #: What the clients reported about themselves (e.g. "no-auth"): sessions each.
    findings: dict[str, int]
    cost_usd_per_1k_jobs: float | None
    #: The raw server-side counters behind the cost, ``"<service>.<meter>"``.
    meters: dict[str, float]
    # ---- schema 2 (RESULTS.md "Additions"): what the user lived through
    #: Sessions whose lifetime did / did not overlap a fault window of their cell.
    exposed_sessions: int = 0
    unexposed_sessions: int = 0
    #: The same aggregates over the exposed sessions only: the cell's verdict.
    exposed: CellAggregates | None = None
    #: Executions of the work behind one user request (a re-POST that reran it counts twice).
    executions_per_intent: Spread = Spread(mean=None, max=None)
    #: Sessions whose screen showed a lower step after a higher one.
    progress_regressions: int = 0
    #: First request -> terminal event shown, in real-time-equivalent seconds.
    time_to_result_s: Percentiles = Percentiles(p50=None, p95=None)
    #: Time to result over the job's own planned duration (1.0: no time lost to the transport).
    time_to_result_ratio: Percentiles = Percentiles(p50=None, p95=None)
    #: Receipts of an already-received seq on the wire, before any client dedupe.
    duplicates_wire: int = 0
    #: Events the app displayed twice (``duplicates`` is this).
    duplicates_shown: int = 0
    #: Unique events by how they first arrived: live, replay, refetch, snapshot, poll.
    delivery_paths: dict[str, int] = Field(default_factory=dict)
    #: Execution seconds (real-time-equivalent, summed over the cell's sessions) whose output the
    #: user never kept: reruns superseded by a re-POST, abandoned executions, results never shown.
    wasted_work_s: float | None = None
    #: Cross-tenant read attempts by the cell's canary phone (what they got is in foreign_events).
    canary_probes: int = 0
    #: States a polling client could not see because a later state replaced them between two
    #: polls (by design; not ``lost``).
    coalesced: int = 0
    #: Sessions whose person gave up before any job existed (every tap to create it failed).
    gave_up_at_submit: int = 0
    #: ``terminal_ratio`` over the sessions that got a job: the transport's own share of the
    #: outcome (resume semantics), apart from submissions that never made a job.
    job_terminal_ratio: float | None = None
    #: Executions of the cell's jobs by where they ran (``"<service>/<kind>"``: ``worker/request``,
    #: ``api/request``, ``worker/worker-background``, ``job-runner/job-runner``).
    executions_by_context: dict[str, int] = Field(default_factory=dict)
    #: Jobs that ran outside their transport's declared context (each a ``silent-fallback`` finding).
    silent_fallbacks: int = 0
    #: Executions by what started them: ``dispatch`` (the first), ``queue-retry``, ``cron`` (a
    #: pattern's watchdog cron), ``lease-watchdog`` (the workers' lease takeover); every key present.
    executions_by_trigger: dict[str, int] = Field(default_factory=dict)


class CostPoint(_Model):
    """The cost per 1,000 jobs at one stated load, with and without free tiers."""

    jobs_per_month: float
    jobs_per_hour: float
    usd_per_1k_jobs_with_free_tiers: float | None
    usd_per_1k_jobs_without_free_tiers: float | None


class CellCost(_Model):
    """schema 2 ``cost``: each billed component priced the way its platform bills it, at a stated load.

    ``usd_per_1k_jobs`` (= the cell's ``cost_usd_per_1k_jobs``) is the value
    at the load the cell drove, ``jobs_per_hour``, without free tiers;
    ``breakdown`` splits it by bill line; ``curve`` states it at other loads.
    """

    usd_per_1k_jobs: float | None
    #: Dollars per 1,000 jobs at ``jobs_per_hour`` by bill line (``<item>.<charge>``, plan fees).
    breakdown: dict[str, float]
    prices_as_of: str | None
    billing_assumptions: list[str]
    #: The load ``usd_per_1k_jobs`` is stated at: the cell's jobs over the phones' planned job time.
    jobs_per_hour: float | None = None
    curve: list[CostPoint] = Field(default_factory=list)


#: ``session_outcomes`` key of a planned session that left no record.
UNREPORTED = "unreported"


class CellSummary(CellAggregates):
    """One ``summary.json`` cell: the aggregates plus what the runner knew about the cell."""

    #: The cell's own dollars over its real-time window, by bill line (the run-load bill's share).
    cost_breakdown_usd: dict[str, float]
    #: Every session the cell planned was collected.
    complete: bool
    #: Sessions the cell's plan asked for (phones × jobs each). ``session_outcomes`` adds up to
    #: it: a planned session without a record (its phone never started, or its record was lost
    #: when the cell ended) is counted there as ``unreported``. None in summaries before it.
    sessions_planned: int | None = None
    seconds: float
    fault_windows: list[FaultWindowSpan]
    chaos_errors: list[str]
    #: schema 2: the cost model's whole answer (``cost_usd_per_1k_jobs`` is its ``usd_per_1k_jobs``).
    cost: CellCost | None = None
    #: schema 2: timers that could not follow the time scale in this cell (real-time-equivalent seconds).
    distortions: list[Distortion] = Field(default_factory=list)
    #: Distortions that flip a timer's order against a fault window or the job's length: the
    #: cell's verdict depends on the compression (``core.timers.order_flips``), one sentence each.
    verdict_depends_on: list[str] = Field(default_factory=list)
    #: The cell measured the machine's capacity, not the pattern (see ``saturation``).
    saturated: bool = False
    saturation: Saturation | None = None
    #: Per scaled service (``api``, ``worker``): its instances over the cell; empty without scale-out.
    instances: dict[str, InstanceSpan] = Field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.transport} × {self.profile}"

    def lookup(self, name: str) -> object:
        """The value at a dotted RESULTS.md name; None when the cell has none.

        Below a mapping field the rest of the name is one key, dots and all:
        ``meters.api.pb_requests_total`` is ``meters["api.pb_requests_total"]``.
        """
        node: object = self
        parts = name.split(".")
        while parts:
            if isinstance(node, BaseModel):
                node = _field_value(node, parts.pop(0))
            elif isinstance(node, dict):
                node = node.get(".".join(parts))
                parts = []
            else:
                return None
        return node


class MachineInfo(_Model):
    node: str
    system: str
    release: str
    machine: str
    python: str
    cpus: int | None


class RunTiming(_Model):
    #: Wall clock (epoch seconds) when the run began.
    started_at: float
    seconds: float


class Summary(_Model):
    """A whole ``summary.json``: what ran, where, with what, and one entry per cell."""

    schema_version: Literal[1, 2]
    progressbench: str
    created_at: str
    commit: str | None
    machine: MachineInfo
    #: Installed versions of the distribution's dependencies (None: not installed).
    versions: dict[str, str | None]
    #: The date of the price table the costs use: its oldest price (``reports/prices.toml``).
    prices_as_of: str | None = None
    config: dict[str, Any]
    profiles: dict[str, Any]
    run_id: str
    complete: bool
    interrupted: bool
    timing: RunTiming
    cells: list[CellSummary]

    def to_json(self) -> str:
        """The file's text: RESULTS.md names (aliases), two-space indent, a final newline."""
        return json.dumps(self.model_dump(mode="json", by_alias=True), indent=2) + "\n"


def parse_summary(text: str, source: str) -> Summary:
    """Validate a ``summary.json``; any problem is one ResultsError line naming the key."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{source}: unreadable summary ({exc})") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{source}: not a summary (expected a JSON object)")
    version = data.get("schema_version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:  # true == 1 in Python
        raise ResultsError(
            f"{source}: schema_version {version!r} is not one this progressbench reads "
            f"({', '.join(map(str, READABLE_VERSIONS))}); re-run or use the matching version"
        )
    try:
        return Summary.model_validate_json(text, strict=True)
    except ValidationError as exc:
        raise ResultsError(f"{source}: not a valid summary: {_problems(exc)}") from None


def _problems(error: ValidationError, shown: int = 3) -> str:
    items = error.errors()
    parts = [f"{'.'.join(str(p) for p in item['loc']) or 'value'}: {item['msg']}" for item in items[:shown]]
    more = f"; and {len(items) - shown} more" if len(items) > shown else ""
    return "; ".join(parts) + more


# --------------------------------------------------------------------------- metric names


def _field_value(model: BaseModel, key: str) -> object:
    for name, info in type(model).model_fields.items():
        if key in (name, info.alias):
            value: object = getattr(model, name)
            return value
    return None


def _unwrap_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _names(
    model: type[BaseModel], prefix: str = "", inside: frozenset[type[BaseModel]] = frozenset()
) -> Iterator[tuple[str, bool]]:
    """(dotted name, names a mapping) for every numeric leaf of ``model``.

    A model nested in itself (a cell's ``exposed`` aggregates) is walked once.
    """
    inside = inside | {model}
    for name, info in model.model_fields.items():
        key = prefix + (info.alias or name)
        annotation = _unwrap_optional(info.annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if not any(issubclass(annotation, seen) or issubclass(seen, annotation) for seen in inside):
                yield from _names(annotation, key + ".", inside)
            elif prefix == "":
                yield from _names(annotation, key + ".", frozenset({annotation}) | {CellSummary})
        elif annotation in (int, float, bool):
            yield key, False
        elif get_origin(annotation) is dict and _unwrap_optional(get_args(annotation)[1]) in (int, float):
            yield key, True


@functools.cache
def metric_names(model: type[BaseModel] = CellSummary) -> frozenset[str]:
    """Every name a rule may compare; a mapping field ``m`` is listed as ``m.*`` (any key)."""
    return frozenset(f"{key}.*" if mapping else key for key, mapping in _names(model))


def check_metric(name: str) -> str:
    """``name`` if a cell has such a number; otherwise ValueError with the nearest names."""
    known = metric_names()
    if name in known or any(m.endswith(".*") and name.startswith(m[:-1]) and name != m[:-1] for m in known):
        return name
    near = difflib.get_close_matches(name, sorted(known), n=3)
    hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
    raise ValueError(f"unknown metric {name!r} (not a summary.json cell field{hint})")
