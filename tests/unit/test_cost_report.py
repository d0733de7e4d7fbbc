"""The report's cost section: every figure shown with its load, items split, assumptions grouped."""

from __future__ import annotations

import base64
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from progressbench.reports.cell_cost import CURVE_JOBS_PER_MONTH
from progressbench.reports.cost_report import (
    assumptions,
    cost_html,
    cost_markdown,
    cost_plots,
    curve_table_rows,
    items_of,
    run_load_rows,
)

from progressbench.core.summary import CellSummary, Summary
from tests.unit.summaries import make_cell


def _cost(per_1k: float, breakdown: dict[str, float], components: list[str]) -> dict[str, Any]:
    return {
        "usd_per_1k_jobs": per_1k,
        "breakdown": breakdown,
        "prices_as_of": "2026-11",
        "billing_assumptions": [
            *components,
            "cloud_run.idle_tail_s = 900 s: assumed",
            "load model: stated",
            f"run load: 4 jobs over {per_1k} s",
        ],
        "jobs_per_hour": 150.0,
        "curve": [
            {
                "jobs_per_month": n,
                "jobs_per_hour": n / 720,
                "usd_per_1k_jobs_with_free_tiers": 0.0 if n < 1000 else per_1k / 2,
                "usd_per_1k_jobs_without_free_tiers": per_1k * 1_000_000 / n,
            }
            for n in CURVE_JOBS_PER_MONTH
        ],
    }


CELLS = [
    make_cell(
        "polling",
        "clean",
        cost=_cost(
            0.5,
            {"api.vcpu": 0.2, "worker.vcpu": 0.3, "gcp.plan:gcp.pay_as_you_go": 0.0},
            [
                "api: billed as cloud-run-request-based (x); polls",
                "worker: billed as cloud-run-instance-based (x); 202",
            ],
        ),
    ),
    make_cell(
        "realtime",
        "clean",
        cost=_cost(
            0.9,
            {
                "api.memory": 0.1,
                "worker.vcpu": 0.4,
                "supabase.messages": 0.2,
                "supabase.plan:supabase.pro": 0.2,
            },
            ["supabase: billed as supabase-realtime (x); messages"],
        ),
    ),
    make_cell("sse", "clean"),  # not priced (an old summary): left out, not an error
]


def _summary(cells: list[CellSummary]) -> Summary:
    return Summary.model_validate(
        {
            "schema_version": 2,
            "progressbench": "0",
            "created_at": "now",
            "commit": None,
            "machine": {"node": "n", "system": "s", "release": "r", "machine": "m", "python": "3", "cpus": 2},
            "versions": {},
            "prices_as_of": "2026-11",
            "config": {},
            "profiles": {},
            "run_id": "r",
            "complete": True,
            "interrupted": False,
            "timing": {"started_at": 0.0, "seconds": 1.0},
            "cells": [c.model_dump(by_alias=True) for c in cells],
        }
    )


def test_items_that_cost_nothing_anywhere_are_left_out() -> None:
    assert items_of(CELLS) == ["api", "worker", "supabase", "supabase plan"]


def test_run_load_rows_state_the_load_and_split_by_item() -> None:
    head, rows = run_load_rows(CELLS)
    assert head[:4] == ["transport", "profile", "load (jobs/h)", "$ / 1k jobs"]
    assert head[4:] == ["api", "worker", "supabase", "supabase plan"]
    assert rows == [
        ["polling", "clean", "150", "0.5", "0.2", "0.3", "–", "–"],
        ["realtime", "clean", "150", "0.9", "0.1", "0.4", "0.2", "0.2"],
    ]


def test_curve_rows_show_both_free_tier_figures_at_each_table_load() -> None:
    head, rows = curve_table_rows(CELLS)
    assert head[2:] == ["100/month", "10k/month", "1M/month", "100M/month"]
    assert rows[0][2] == "5,000 \\| 0"
    assert rows[0][4] == "0.5 \\| 0.25"


def test_assumptions_are_grouped_per_transport_and_shared_once() -> None:
    lines = assumptions(CELLS)
    assert lines[0].startswith("polling: api: billed as cloud-run-request-based")
    assert " · worker: billed as" in lines[0]
    assert lines[1].startswith("realtime: supabase: billed as")
    assert lines[0].endswith(" · run load: 4 jobs over 0.5 s")
    assert lines.count("load model: stated") == 1
    assert not any(line.startswith("run load") for line in lines)


def test_markdown_and_html_sections() -> None:
    summary = _summary(CELLS)
    text = "\n".join(cost_markdown(summary))
    assert "## Cost per 1,000 jobs, at a stated load" in text and "Prices as of 2026-11" in text
    assert "| polling | clean | 150 | 0.5 |" in text
    page = cost_html(summary)
    assert "<table>" in page and "realtime" in page
    assert cost_markdown(_summary([make_cell("sse", "clean")])) == []
    assert cost_html(_summary([make_cell("sse", "clean")])) == ""


def test_plots_are_a_stacked_bar_and_a_log_log_curve() -> None:
    figures: list[Any] = []

    def png(fig: Any) -> str:
        figures.append(fig)
        plt.close(fig)
        return base64.b64encode(b"png").decode()

    assert len(cost_plots(CELLS, png)) == 2
    bar, curve = figures
    assert len(bar.axes[0].patches) == len(items_of(CELLS)) * 2  # one bar per item per priced cell
    ax = curve.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert len(ax.lines) == 4  # per cell: without and with free tiers (the zeros cannot be drawn on log)
