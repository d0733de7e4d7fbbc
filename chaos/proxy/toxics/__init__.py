"""The toxic types the proxy knows, listed explicitly.

The first eight are Toxiproxy 2.12's (same names, attributes and
semantics); the last three are the mobile toxics Toxiproxy lacks.
"""

from __future__ import annotations

from progressbench.chaos.proxy.toxics.bandwidth import BandwidthToxic
from progressbench.chaos.proxy.toxics.base import CleanupToxic, StatefulToxic, Toxic, ToxicKind
from progressbench.chaos.proxy.toxics.blackhole import BlackholeToxic
from progressbench.chaos.proxy.toxics.idle_timeout import IdleTimeoutToxic
from progressbench.chaos.proxy.toxics.latency import LatencyToxic
from progressbench.chaos.proxy.toxics.limit_data import LimitDataToxic
from progressbench.chaos.proxy.toxics.noop import NOOP, NoopToxic
from progressbench.chaos.proxy.toxics.pause_reader import PauseReaderToxic
from progressbench.chaos.proxy.toxics.reset_peer import ResetPeerToxic
from progressbench.chaos.proxy.toxics.slicer import SlicerToxic
from progressbench.chaos.proxy.toxics.slow_close import SlowCloseToxic
from progressbench.chaos.proxy.toxics.timeout import TimeoutToxic

REGISTRY: dict[str, ToxicKind] = {
    kind.name: kind
    for kind in (
        ToxicKind("noop", NoopToxic, "NoopToxic"),
        ToxicKind("latency", LatencyToxic, "LatencyToxic"),
        ToxicKind("bandwidth", BandwidthToxic, "BandwidthToxic"),
        ToxicKind("slow_close", SlowCloseToxic, "SlowCloseToxic"),
        ToxicKind("timeout", TimeoutToxic, "TimeoutToxic"),
        ToxicKind("reset_peer", ResetPeerToxic, "ResetToxic", resets_peer=True),
        ToxicKind("slicer", SlicerToxic, "SlicerToxic", go_int="int"),
        ToxicKind("limit_data", LimitDataToxic, "LimitDataToxic"),
        ToxicKind("blackhole", BlackholeToxic, "BlackholeToxic", both_directions=True),
        ToxicKind("idle_timeout", IdleTimeoutToxic, "IdleTimeoutToxic", both_directions=True),
        ToxicKind("pause_reader", PauseReaderToxic, "PauseReaderToxic"),
    )
}

MOBILE_TOXICS = frozenset({"blackhole", "idle_timeout", "pause_reader"})
"""Types this proxy adds; a real Toxiproxy answers 400 "invalid toxic type" to them."""

__all__ = [
    "MOBILE_TOXICS",
    "NOOP",
    "REGISTRY",
    "CleanupToxic",
    "StatefulToxic",
    "Toxic",
    "ToxicKind",
]
