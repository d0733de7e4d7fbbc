"""Client options of ``realtime``.

Options (``ClientSettings.options``; durations are unscaled seconds):

* ``refetch_s`` (0 in the pattern, 8 in ``realtime:refetch``) — app-level
  safety net: with no terminal event and no realtime news for this long,
  refetch rows through the API. ``0`` turns it off. The pattern refetches only
  on each (re)subscribe; the variant adds the periodic one. Under the default
  job shape (steps of 2-5 s) 8 s is below the ledger's stall threshold
  (10 s), so a realtime feed that silently died is noticed before the user
  would call it stuck.
* ``watchdog_s`` (1) — how often the watcher checks the client library for
  its silent failure modes (gave up reconnecting, dead listener, closed
  channel).
* ``backoff_s`` (1) — the library's first reconnect back-off (``initial_backoff``,
  its own default 1 s), scaled with the run like every other client delay.

The library's heartbeat (``hb_interval``, 25 s) and its join/push and connect
timeout (``timeout``, 10 s) are passed scaled too. What it cannot be told —
the heartbeat's own 15 s floor, the rejoin delays 1/2/5/10 s, websockets' 20 s
keepalive ping and ping timeout inside it — stays unscaled and is listed per
cell as a distortion (:data:`TIMERS`). The bundled server's idle timeout
(Phoenix closes a socket that sent nothing for 60 s) is scaled with a floor
that keeps its real ratio to the library's heartbeat floor, so the unscalable
heartbeat does not get every idle socket closed.
* ``supabase_url`` / ``supabase_anon_key`` — give the supabase client a real
  Supabase project's URL and anon key instead of the stack's gateway
  (``endpoints["supabase"]``) and the anon key the API hands out. The harness
  reads ``SUPABASE_URL`` and ``SUPABASE_ANON_KEY`` (its one read of the
  environment, ``progressbench.core.config.from_environment``) and passes them
  to every watcher as options.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from progressbench.core.config import Timing
from progressbench.core.timers import Timer

#: Supabase Realtime's client heartbeat (platform-facts §7d: 25,000 ms).
HEARTBEAT_S = 25.0
#: realtime-py sleeps ``max(hb_interval, 15)`` between heartbeats: a floor no option lowers.
LIB_HEARTBEAT_FLOOR_S = 15.0
#: realtime-py's join/push and connect timeout (``DEFAULT_TIMEOUT``).
PUSH_TIMEOUT_S = 10.0
#: websockets' keepalive inside the library (``connect`` defaults: ping every 20 s, 20 s to answer).
LIB_PING_S = 20.0
#: The library's channel rejoin delays (``REJOIN_DELAYS_SECONDS``): first and last.
LIB_REJOIN_FIRST_S = 1.0
LIB_REJOIN_LAST_S = 10.0
#: The server closes a socket that sent nothing for this long (Phoenix's transport timeout, 60 s).
SERVER_IDLE_S = 60.0
#: ... never less than this in a scaled run: the same 60:25 ratio to the heartbeat the library keeps.
SERVER_IDLE_FLOOR_S = LIB_HEARTBEAT_FLOOR_S * SERVER_IDLE_S / HEARTBEAT_S

#: Client-side variants (how the phone behaves) and the one the deployment adds (the cron).
VARIANTS = frozenset({"no-auth", "refetch", "watchdog"})

#: The service role of the gateway: the one base URL the supabase client is given (``endpoints[...]``).
GATEWAY_ROLE = "supabase"
#: postgrest-py retries a GET that failed at the network level (or got 503/520) after 1, 2, 4 s
#: (``get_retry_delay``, at most 3 retries): library constants no option scales.
LIB_REST_RETRY_FIRST_S = 1.0
LIB_REST_RETRY_LAST_S = 4.0

TIMERS = (
    Timer("realtime client heartbeat (library floor 15 s)", HEARTBEAT_S, floor_s=LIB_HEARTBEAT_FLOOR_S),
    Timer("realtime client websockets keepalive ping", LIB_PING_S, fixed_s=LIB_PING_S),
    Timer("realtime client websockets ping timeout", LIB_PING_S, fixed_s=LIB_PING_S),
    Timer("realtime channel first rejoin delay", LIB_REJOIN_FIRST_S, fixed_s=LIB_REJOIN_FIRST_S),
    Timer("realtime channel longest rejoin delay", LIB_REJOIN_LAST_S, fixed_s=LIB_REJOIN_LAST_S),
    Timer("realtime server idle timeout", SERVER_IDLE_S, floor_s=SERVER_IDLE_FLOOR_S),
    Timer("supabase postgrest first retry delay", LIB_REST_RETRY_FIRST_S, fixed_s=LIB_REST_RETRY_FIRST_S),
    Timer("supabase postgrest last retry delay", LIB_REST_RETRY_LAST_S, fixed_s=LIB_REST_RETRY_LAST_S),
)


def server_idle_timeout(timing: Timing) -> float:
    """The bundled server's idle timeout at the run's scale (see :data:`SERVER_IDLE_FLOOR_S`)."""
    return max(timing.scaled(SERVER_IDLE_S), SERVER_IDLE_FLOOR_S)


#: The periodic refetch of ``realtime:refetch`` (unscaled seconds).
PERIODIC_REFETCH_S = 8.0


@dataclass(frozen=True)
class WatcherOptions:
    refetch_s: float | None
    watchdog_s: float
    backoff_s: float
    #: The library's heartbeat and join/push timeout, scaled (seconds).
    heartbeat_s: float
    push_timeout_s: float
    supabase_url: str | None
    supabase_anon_key: str | None

    @classmethod
    def parse(cls, options: Mapping[str, str], timing: Timing, *, periodic: bool = False) -> WatcherOptions:
        """``periodic``: the ``refetch`` variant, whose safety net is on by default."""
        refetch = float(options.get("refetch_s", PERIODIC_REFETCH_S if periodic else 0.0))
        return cls(
            refetch_s=timing.scaled(refetch) if refetch > 0 else None,
            backoff_s=max(timing.scaled(float(options.get("backoff_s", 1.0))), 0.01),
            watchdog_s=max(timing.scaled(float(options.get("watchdog_s", 1.0))), 0.05),
            heartbeat_s=timing.scaled(HEARTBEAT_S),
            push_timeout_s=timing.scaled(PUSH_TIMEOUT_S),
            supabase_url=options.get("supabase_url") or None,
            supabase_anon_key=options.get("supabase_anon_key") or None,
        )
