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
  its own default 1 s), scaled with the run like every other client delay. The
  library's other timers (rejoin 1/2/5/10 s, websockets' 20 s keepalive, the
  10 s push timeout, the 15 s heartbeat floor) cannot be set and stay unscaled.
* ``supabase_url`` / ``supabase_anon_key`` — connect to a real Supabase
  project's Realtime instead of ``endpoints["realtime"]``. The harness
  reads ``SUPABASE_URL`` and ``SUPABASE_ANON_KEY`` (its one read of the
  environment, ``progressbench.core.config.from_environment``) and passes them
  to every watcher as options.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from progressbench.core.config import Timing

#: The periodic refetch of ``realtime:refetch`` (unscaled seconds).
PERIODIC_REFETCH_S = 8.0


@dataclass(frozen=True)
class WatcherOptions:
    refetch_s: float | None
    watchdog_s: float
    backoff_s: float
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
            supabase_url=options.get("supabase_url") or None,
            supabase_anon_key=options.get("supabase_anon_key") or None,
        )
