"""Fault profiles as data: named timelines of faults applied to a cell of phones.

A profile is a list of timed steps (``at``, ``fault``, ``for``, ``stream``,
``attributes``, ``target``), validated on load; :mod:`progressbench.chaos.controller`
applies it. Durations are real seconds at time scale 1.0 (the run scales
them, and the duration attributes of toxics too: ``latency``, ``jitter``,
``timeout``, ``delay``, ``close_after``) and are measured from the start of the cell; each cell of phones runs
the same timeline offset by ``stagger`` seconds per cell index, so one
cell's tunnel is not every phone's tunnel.

Targets:

* ``phones`` — the cell's own proxy in front of each client-facing service
  (a network fault on the phone's side: toxics, or ``down``);
* ``dispatch`` — the proxy between the API and the workers (the
  fire-and-forget dispatch or the push fails);
* ``worker`` — a server fault through the supervisor (``sigterm``,
  ``sigkill``), optionally timed against job progress (``at_step``: when the
  cell's first job has committed that many steps — "kill while on image 3 of
  6" is ``at_step: 3``).

Server faults that are a state of the deployment rather than an event
(``conditions``: a flaky upstream API, a misdeployed job resource) hold for
the whole cell: the services are restarted with them before the cell and
without them after it, and the cell records one stack-wide window.

The numbers come from ``shared/reference/platform-facts.md`` (cited per
profile) and are real-world durations: the run scales them like every other
duration, so a 90 s tunnel stays longer than a 45 s watchdog at any time
scale. The benchmark's job is long enough to meet them (its silent model
call, ``progressbench.core.config.MODEL_CALL``, makes it ~110 s), and a
repeating profile leaves a quiet stretch of at least one such job after each
cycle's faults, so a job that had to start again can finish.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from progressbench.core.config import ServerConditions
from progressbench.core.errors import ConfigError

Target = Literal["phones", "dispatch", "worker"]
NETWORK_FAULTS = frozenset(
    {
        "down",
        "latency",
        "bandwidth",
        "slow_close",
        "timeout",
        "reset_peer",
        "slicer",
        "limit_data",
        "blackhole",
        "idle_timeout",
        "pause_reader",
    }
)
SERVER_FAULTS = frozenset({"sigterm", "sigkill"})


class FaultStep(BaseModel):
    """One fault: from ``at`` s after the cell starts (or at a job step), for ``for`` s."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    at: float = Field(default=0.0, ge=0)
    at_step: int | None = Field(default=None, ge=1)
    fault: str = Field(min_length=1)
    for_s: float = Field(default=0.0, ge=0, alias="for")
    target: Target = "phones"
    stream: Literal["upstream", "downstream"] = "downstream"
    toxicity: float = Field(default=1.0, ge=0, le=1)
    attributes: dict[str, int] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> FaultStep:
        if self.target == "worker":
            if self.fault not in SERVER_FAULTS:
                raise ValueError(f"target worker takes {sorted(SERVER_FAULTS)}, not {self.fault!r}")
        elif self.fault not in NETWORK_FAULTS:
            raise ValueError(f"target {self.target} takes {sorted(NETWORK_FAULTS)}, not {self.fault!r}")
        if self.at_step is not None and self.target != "worker":
            raise ValueError("at_step applies to server faults (target worker) only")
        return self

    @property
    def is_server_fault(self) -> bool:
        return self.target == "worker"

    def describe(self) -> str:
        when = f"at step {self.at_step}" if self.at_step is not None else f"at {self.at:g}s"
        span = f" for {self.for_s:g}s" if self.for_s else " (rest of the cell)"
        if self.is_server_fault:
            span = ""
        attrs = " ".join(f"{k}={v}" for k, v in self.attributes.items())
        stream = (
            f" {self.stream}" if self.target != "worker" and self.fault not in ("down", "blackhole") else ""
        )
        return f"{when}: {self.fault}{stream} on {self.target}{span} {attrs}".rstrip()


class Profile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    description: str
    sources: tuple[str, ...] = ()
    steps: tuple[FaultStep, ...] = ()
    #: Seconds (unscaled) between the timelines of consecutive cells.
    stagger: float = Field(default=0.0, ge=0)
    #: Cells of phones; each gets its own proxies.
    cells: int = Field(default=1, ge=1, le=64)
    #: Overrides of the stack's timing for this profile (e.g. a short request timeout).
    timing: dict[str, float] = Field(default_factory=dict)
    #: Seconds (unscaled) after which the phones' network steps run again, cycle after cycle,
    #: so every session of the cell meets the fault (0: once). Server faults run once.
    repeat_every: float = Field(default=0.0, ge=0)
    #: Server faults that hold for the whole cell (None: the deployment as configured).
    conditions: ServerConditions | None = None

    @model_validator(mode="after")
    def _cycles_do_not_overlap(self) -> Profile:
        if self.repeat_every:
            spans = [
                s.at + s.for_s + (self.cells - 1) * self.stagger for s in self.steps if s.target == "phones"
            ]
            if not spans or any(s.for_s == 0 for s in self.steps if s.target == "phones"):
                raise ValueError("repeat_every needs phone steps that end (a `for`)")
            if max(spans) >= self.repeat_every:
                raise ValueError(
                    f"repeat_every ({self.repeat_every:g}s) must exceed a cycle ({max(spans):g}s)"
                )
        return self

    def spans(self) -> list[tuple[str, float]]:
        """The real-second durations a verdict under this profile turns on: each fault's length and
        the idle or reclaim periods its toxics wait before they cut (``core.timers.order_flips``)."""
        found: list[tuple[str, float]] = []
        for step in self.steps:
            if step.for_s and not step.is_server_fault:
                found.append((f"the {step.fault} window", step.for_s))
            if "timeout" in step.attributes and step.fault == "idle_timeout":
                found.append(("the idle cut", step.attributes["timeout"] / 1000))
            if "close_after" in step.attributes:
                found.append((f"the {step.fault} socket reclaim", step.attributes["close_after"] / 1000))
        return found

    @property
    def toxic_types(self) -> set[str]:
        return {s.fault for s in self.steps if not s.is_server_fault and s.fault != "down"}


_FACTS = "shared/reference/platform-facts.md"

#: The mobile profiles run their timeline again (real seconds), so a phone's later jobs meet the fault
#: too. ASSUMPTION: each period is the cycle's faults plus a quiet stretch of at least one benchmark
#: job (~110 s) in which a job that had to start again (a naive re-POST) can finish; a period shorter
#: than that would mean no restarted job ever finishes, a verdict about the period rather than the
#: pattern. Sessions that still fall in a quiet stretch are reported apart (``unexposed_sessions``).
HANDOFF_REPEAT_S = 150.0
#: platform-facts §8b subway: "repeated 60-180 s outages every 2-4 min"; one 90 s tunnel every 4 min.
TUNNEL_S = 90.0
TUNNEL_REPEAT_S = 240.0
#: platform-facts §7c/§8b nat_idle_cut: the sweep's low end (60 s), which is also the ALB and nginx
#: idle cut of §7c; below the benchmark job's 30-90 s silent model call, above every heartbeat of §7d.
CGNAT_IDLE_S = 60.0
#: ASSUMPTION (no measured dataset): the user locks the phone for a minute while the job runs.
SLEEP_S = 60.0
SLEEP_REPEAT_S = 200.0
#: RFC 6298 retransmission back-off on a tunnel's restore (chaos/proxy/toxics/blackhole.py): initial
#: RTO 1 s (§2.1), doubling per retransmission (§5.5), capped at Linux's TCP_RTO_MAX of 120 s (§2.5).
TCP_RTO = {"rto_initial": 1_000, "rto_max": 120_000}

BUILTIN: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(name="clean", description="No faults: the baseline every other profile is read against."),
        Profile(
            name="tunnel",
            description=(
                "Subway tunnel: bytes stop both ways for 90 s with no FIN and no RST, then service "
                "returns on the same connections, each once its TCP retransmission timer fires "
                "(RFC 6298 back-off)."
            ),
            sources=(
                f"{_FACTS} §7e/§8b subway: repeated 60-180 s outages every 2-4 min (ASSUMPTION there); "
                "90 s every 240 s here",
                "RFC 6298 §2.1, §2.5, §5.5 (2011): initial RTO 1 s, doubled per retransmission, capped; "
                "Linux TCP_RTO_MAX = 120 s (include/net/tcp.h)",
            ),
            steps=(FaultStep(at=20, fault="blackhole", for_s=TUNNEL_S, attributes=TCP_RTO),),
            stagger=4,
            cells=2,
            repeat_every=TUNNEL_REPEAT_S,
        ),
        Profile(
            name="handoff",
            description=(
                "Wi-Fi to cellular handoff: the IP changes, every open connection breaks (FIN from "
                "the proxy) and new ones are refused for a short outage."
            ),
            sources=(f"{_FACTS} §7e wifi_cell_handoff: outage 2-15 s (ASSUMPTION there); 3 s here",),
            steps=(FaultStep(at=8, fault="down", for_s=3), FaultStep(at=26, fault="down", for_s=3)),
            stagger=3,
            cells=2,
            repeat_every=HANDOFF_REPEAT_S,
        ),
        Profile(
            name="sleep",
            description=(
                "Screen sleep / app backgrounded for a minute: the phone stops reading; after 5 s the "
                "OS reclaims the socket (iOS suspends ~5 s after backgrounding, TN2277)."
            ),
            sources=(
                f"{_FACTS} §7b iOS: ~5 s to suspension; sockets may be closed while suspended",
                "screen off for 60 s: ASSUMPTION (no measured dataset), inside one benchmark job",
            ),
            steps=(FaultStep(at=20, fault="pause_reader", for_s=SLEEP_S, attributes={"close_after": 5000}),),
            stagger=4,
            cells=2,
            repeat_every=SLEEP_REPEAT_S,
        ),
        Profile(
            name="cgnat",
            description=(
                "Carrier NAT idle timeout: a connection idle in both directions for 60 s is "
                "silently blackholed from then on; heartbeats decide who survives the job's silent "
                "model call."
            ),
            sources=(
                f"{_FACTS} §7c/§8b nat_idle_cut: 5 min (sweep 60 s-30 min) is the ASSUMPTION there; "
                "the sweep's low end here, as the ALB/nginx 60 s idle cut (§7c), against 15 s SSE and "
                "25 s Supabase heartbeats (§7d) and the 30-90 s model call of the benchmark job",
            ),
            steps=(
                FaultStep(at=0, fault="idle_timeout", attributes={"timeout": round(CGNAT_IDLE_S * 1000)}),
            ),
        ),
        Profile(
            name="flaky-3g",
            description="3G link: 250 ms latency with 50 ms jitter, 150 KB/s, small TCP segments.",
            sources=(f"{_FACTS} §7e 3G: 250 ms RTT (jitter 50), 1.2 Mbps (Loadero presets)",),
            steps=(
                FaultStep(
                    at=0, fault="latency", stream="downstream", attributes={"latency": 125, "jitter": 25}
                ),
                FaultStep(
                    at=0, fault="latency", stream="upstream", attributes={"latency": 125, "jitter": 25}
                ),
                FaultStep(at=0, fault="bandwidth", stream="downstream", attributes={"rate": 150}),
                FaultStep(
                    at=0,
                    fault="slicer",
                    stream="downstream",
                    attributes={"average_size": 600, "size_variation": 200, "delay": 2000},
                ),
            ),
        ),
        Profile(
            name="sigterm",
            description=(
                'Cloud Run shuts a worker instance down mid-job ("kill while on image 3 of 6"): '
                "SIGTERM, 10 s grace, SIGKILL, replacement after a cold start."
            ),
            sources=(f"{_FACTS} §1a: SIGTERM then SIGKILL 10 s later",),
            steps=(FaultStep(at_step=4, fault="sigterm", target="worker"),),
        ),
        Profile(
            name="request-timeout",
            description=(
                "The platform cuts every request at its limit: 300 s on Cloud Run by default, "
                "compressed here to 15 s so streams are cut mid-job."
            ),
            sources=(f"{_FACTS} §1a request timeout default 300 s (compressed to 15 s: ASSUMPTION)",),
            timing={"request_timeout_s": 15.0},
        ),
        Profile(
            name="dispatch-loss",
            description=(
                "The API's dispatch to the workers is blackholed for 120 s (a bad deploy, a network "
                "partition), longer than the API's 3 dispatch attempts: jobs whose dispatch gave up "
                "never start and stay pending (counted as stuck)."
            ),
            sources=(f"{_FACTS} §3 after()/waitUntil; the 8 s fire-and-forget abort of DESIGN.md",),
            steps=(
                FaultStep(
                    at=0,
                    fault="timeout",
                    target="dispatch",
                    stream="upstream",
                    for_s=120,
                    attributes={"timeout": 0},
                ),
            ),
        ),
        Profile(
            name="flaky-upstream",
            description=(
                "The model API a step calls is overloaded: each step's call fails with probability "
                "0.15 after doing its work (503/529, retryable). What retries it is the pattern's: "
                "a queue's retry on 5xx, a watchdog cron, or nothing."
            ),
            sources=(
                "retryable 5xx/overloaded answers of model APIs are documented by their vendors "
                "(e.g. HTTP 529 overloaded_error, Anthropic API errors page, 2025); the rate 0.15 per "
                "call is an ASSUMPTION (an incident, not a normal day), chosen so most 14-step jobs "
                "meet at least one failure (1 - 0.85^14 = 90 %)",
            ),
            conditions=ServerConditions(upstream_failure_rate=0.15),
        ),
        Profile(
            name="misdeployed",
            description=(
                "The job resource was never created: the dispatcher's local-development fallback "
                "fires at the API's own endpoint, so every job runs inside an API request, under its "
                "request timeout (300 s on Cloud Run, compressed to 45 s): long jobs die silently."
            ),
            sources=(
                "seeds/004 (the Cloud Run Job existed only in code; the fallback ran the work in the "
                "request context until long jobs hit the service timeout)",
                f"{_FACTS} §1a request timeout default 300 s (compressed to 45 s so the longer of the "
                "default ~50 s jobs outlive it: ASSUMPTION)",
            ),
            timing={"request_timeout_s": 45.0},
            conditions=ServerConditions(misdeployed=True),
        ),
    )
}


def get_profile(name: str) -> Profile:
    try:
        return BUILTIN[name]
    except KeyError:
        known = ", ".join(sorted(BUILTIN))
        raise ConfigError(f"--profiles: unknown profile {name!r} (known: {known})") from None
