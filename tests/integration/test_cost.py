"""A real run's cost: every transport's cell priced, itemised by what its platforms bill, at a stated load."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from progressbench.reports.cell_cost import CURVE_JOBS_PER_MONTH, by_item
from progressbench.transports.registry import REGISTRY, defaults

from progressbench.core.billed import Mode, billing_for
from tests.helpers import run_process


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> dict[str, Any]:
    """One small run of every default transport, as a user runs it."""
    out = tmp_path_factory.mktemp("cost-run")
    done = run_process(
        [
            sys.executable,
            "-m",
            "progressbench",
            "run",
            "--profiles",
            "clean",
            "--users",
            "2",
            "--jobs-per-user",
            "1",
            "--time-scale",
            "0.05",
            "--out",
            str(out),
            "--database-url",
            module_database_url,
        ],
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = (out / "report.md").read_text()
    assert "## Cost per 1,000 jobs, at a stated load" in report
    data: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return data


def _cell(summary: dict[str, Any], transport: str) -> dict[str, Any]:
    [cell] = [c for c in summary["cells"] if c["transport"] == transport]
    return cell


@pytest.mark.parametrize("transport", defaults())
def test_every_transport_has_a_non_zero_itemised_cost_at_a_stated_load(
    summary: dict[str, Any], transport: str
) -> None:
    cell = _cell(summary, transport)
    cost = cell["cost"]
    assert cost["usd_per_1k_jobs"] > 0
    assert cell["cost_usd_per_1k_jobs"] == cost["usd_per_1k_jobs"]
    assert sum(cost["breakdown"].values()) == pytest.approx(cost["usd_per_1k_jobs"], rel=1e-3)
    declared = {b.item for b in billing_for(REGISTRY[transport].billing, None)}
    items = by_item(cost["breakdown"])
    for item in declared:
        assert items.get(item, 0) > 0, f"{transport}: {item} costs nothing ({cost['breakdown']})"
    assert cost["jobs_per_hour"] > 0
    assert [p["jobs_per_month"] for p in cost["curve"]] == pytest.approx(list(CURVE_JOBS_PER_MONTH))
    assert cost["prices_as_of"] == summary["prices_as_of"] is not None
    assert any(line.startswith(f"{b}: billed as") for b in declared for line in cost["billing_assumptions"])
    assert sum(cell["cost_breakdown_usd"].values()) > 0


def test_only_the_pattern_that_uses_a_platform_pays_for_it(summary: dict[str, Any]) -> None:
    """Supabase only for realtime, Durable Objects and Cloud Tasks only for relay: no stand-in twice."""
    for cell in summary["cells"]:
        items = set(by_item(cell["cost"]["breakdown"]))
        assert ("supabase" in items) == (cell["transport"] == "realtime"), cell["transport"]
        assert ("rooms" in items) == (cell["transport"] == "relay"), cell["transport"]
        assert ("queue" in items) == (cell["transport"] == "relay"), cell["transport"]
        assert not items & {"realtime"}, "the realtime stand-in must not be priced as an instance"


def test_background_work_is_metered_and_billed(summary: dict[str, Any]) -> None:
    """A 202-first worker's jobs are work-seconds on its instance, billed instance-based, not the ACK.

    A worker that holds the request while it runs the job (``context`` ``worker/request``, as the
    faithful realtime does) has as many request seconds as work seconds: only background workers
    show the gap.
    """
    for transport in defaults():
        components = billing_for(REGISTRY[transport].billing, None)
        if not any(b.item == "worker" and b.mode is Mode.CLOUD_RUN_INSTANCE for b in components):
            continue
        if REGISTRY[transport].context != "worker/worker-background":
            continue
        meters = _cell(summary, transport)["meters"]
        work, acks = meters["worker.pb_work_seconds_total"], meters["worker.pb_connection_seconds_total"]
        assert work > 5 * acks, f"{transport}: jobs ran {work} s against {acks} s of requests"
        assert meters["worker.pb_instance_tail_seconds_total"] > 0
        # the work splits into the steps' waits (scaled) and the commits and hooks between them (real)
        waiting = meters["worker.pb_work_waiting_seconds_total"]
        processing = meters["worker.pb_work_processing_seconds_total"]
        assert 0 < waiting <= work, f"{transport}: {waiting} s of waits in {work} s of work"
        assert processing == pytest.approx(work - waiting, abs=0.5), transport


def test_after_work_keeps_a_vercel_invocation_open(summary: dict[str, Any]) -> None:
    """realtime's route answers at once and dispatches in after(): its invocations outlast its responses."""
    meters = _cell(summary, "realtime")["meters"]
    assert meters["api.pb_invocation_seconds_total"] > meters["api.pb_connection_seconds_total"]
    assert meters["api.pb_cpu_seconds_total"] > 0


def test_rooms_bill_active_time_and_messages(summary: dict[str, Any]) -> None:
    meters = _cell(summary, "relay")["meters"]
    assert meters["rooms.pb_room_active_seconds_total"] > 0
    assert meters["rooms.pb_messages_total"] > 0


def test_bad_price_file_is_one_clear_line(tmp_path: Path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text("[meter.x]\nprice_usd = -1\n")
    done = run_process(
        [sys.executable, "-m", "progressbench", "run", "--prices", str(prices), "--out", str(tmp_path / "o")],
        timeout=60,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert str(prices) in done.stdout + done.stderr
