"""`run --parallel`: how the transports are split, and how the parts' folders become one run's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer

from progressbench.app import cli
from progressbench.app.merging import PartEnd, gather_files, groups, join_tables, merged_cells, merged_state
from progressbench.app.parallel import Part, child_command, plan_parts, refuse_shared_servers
from progressbench.core.config import RunConfig
from progressbench.core.errors import ConfigError, ResultsError
from progressbench.core.summary import CellSummary, MachineInfo, RunTiming, Summary
from tests.unit.summaries import make_cell

TRANSPORTS = ("sse-naive", "sse", "realtime", "relay", "polling")
PROFILES = ("clean", "tunnel")


def summary_of(cells: list[CellSummary], *, complete: bool = True, interrupted: bool = False) -> Summary:
    return Summary(
        schema_version=2,
        progressbench="0",
        created_at="2026-11-30T00:00:00+00:00",
        commit=None,
        machine=MachineInfo(node="n", system="Linux", release="r", machine="x86_64", python="3.11", cpus=2),
        versions={},
        config={},
        profiles={},
        run_id="part",
        complete=complete,
        interrupted=interrupted,
        timing=RunTiming(started_at=0.0, seconds=1.0),
        cells=cells,
    )


def part_summary(transports: tuple[str, ...], **state: bool) -> Summary:
    return summary_of([make_cell(t, p, sessions=4) for t in transports for p in PROFILES], **state)


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (1, [TRANSPORTS]),
        (2, [("sse-naive", "sse", "realtime"), ("relay", "polling")]),
        (3, [("sse-naive", "sse"), ("realtime", "relay"), ("polling",)]),
        (5, [(t,) for t in TRANSPORTS]),
        (9, [(t,) for t in TRANSPORTS]),
    ],
)
def test_groups_are_contiguous_and_balanced(parts: int, expected: list[tuple[str, ...]]) -> None:
    """Every transport lands in exactly one group, in order; sizes differ by one at most; no empty group."""
    assert groups(TRANSPORTS, parts) == expected


def test_parts_have_their_own_folder_log_and_command(tmp_path: Path) -> None:
    """Part k runs `progressbench run` with the parent's options, its transports and OUT/parts/k."""
    config = RunConfig(transports=TRANSPORTS, out=tmp_path, parallel=2)
    first, second = plan_parts(config)
    assert (first.out, first.log) == (tmp_path / "parts" / "1", tmp_path / "logs" / "part-1.log")
    assert second.transports == ("relay", "polling")
    argv = child_command(["--users", "3"], second)
    assert argv[argv.index("run") :] == [
        "run",
        "--part",
        "--users",
        "3",
        "--transports",
        "relay,polling",
        "--out",
        str(tmp_path / "parts" / "2"),
    ]


def test_parts_get_exactly_the_options_given(tmp_path: Path) -> None:
    """Options typed on the command line reach the parts (flags as flags); per-part ones do not."""
    command = typer.main.get_command(cli.app).commands["run"]  # type: ignore[attr-defined]
    ctx = command.make_context(
        "run",
        ["--parallel", "2", "--no-autoscale", "--users", "3", "--out", str(tmp_path), "--transports", "sse"],
    )
    assert cli.given_options(ctx, cli.PER_PART) == ["--users", "3", "--no-autoscale"]


@pytest.mark.parametrize("field", ["database_url", "toxiproxy_url"])
def test_shared_servers_are_refused_in_one_line(field: str) -> None:
    """Two parts on one Postgres or Toxiproxy would take each other's slot or proxies: refused up front."""
    url = "postgresql://u@127.0.0.1:5432/db" if field == "database_url" else "http://127.0.0.1:8474"
    config = RunConfig(transports=TRANSPORTS, parallel=2, **{field: url})
    with pytest.raises(ConfigError, match="--parallel 2: each part runs its own embedded servers"):
        refuse_shared_servers(config)


def test_merged_cells_follow_the_runs_order() -> None:
    """Cells come back transport by transport, each through the profiles, whichever part ran them."""
    late, early = part_summary(("relay", "polling")), part_summary(("sse-naive", "sse", "realtime"))
    cells = merged_cells([late, early], TRANSPORTS, PROFILES)
    assert [(c.transport, c.profile) for c in cells] == [(t, p) for t in TRANSPORTS for p in PROFILES]
    assert all(c.sessions == 4 for c in cells)


def test_a_run_is_complete_only_when_every_part_is() -> None:
    """An incomplete, failed or missing part makes the run incomplete; an interrupted one, interrupted."""
    one, two = ("sse-naive", "sse", "realtime"), ("relay", "polling")
    planned = len(TRANSPORTS) * len(PROFILES)
    good = [PartEnd(0, part_summary(one)), PartEnd(0, part_summary(two))]
    assert merged_state(good, planned, interrupted=False) == (True, False)
    assert merged_state(good, planned, interrupted=True) == (False, True)
    short = [good[0], PartEnd(0, part_summary(two, complete=False))]
    assert merged_state(short, planned, interrupted=False) == (False, False)
    failed = [good[0], PartEnd(1, None)]
    assert merged_state(failed, planned, interrupted=False) == (False, False)
    stopped = [good[0], PartEnd(130, part_summary(two, complete=False, interrupted=True))]
    assert merged_state(stopped, planned, interrupted=False) == (False, True)
    missing_cell = [good[0], PartEnd(0, summary_of([make_cell("relay", "clean")]))]
    assert merged_state(missing_cell, planned, interrupted=False) == (False, False)


def write_part(folder: Path, cell: str, sessions: list[str], events: list[str]) -> None:
    (folder / "raw").mkdir(parents=True)
    (folder / "locust").mkdir()
    (folder / "raw" / f"{cell}.jsonl").write_text(json.dumps({"cell": cell}) + "\n")
    (folder / "locust" / f"{cell}.html").write_text("<html></html>")
    (folder / "sessions.csv").write_text("session_id,error\n" + "".join(f"{s}\n" for s in sessions))
    (folder / "events.csv").write_text("job_id,seq\n" + "".join(f"{e}\n" for e in events))


def test_tables_and_raw_records_are_joined_row_for_row(tmp_path: Path) -> None:
    """Each part's rows, in the parts' order, under one header, byte for byte; raw and Locust files copied."""
    one, two, out = tmp_path / "1", tmp_path / "2", tmp_path / "out"
    write_part(one, "sse__clean", ["a,", "b,'=cmd"], ["j1,1", "j1,2"])
    write_part(two, "relay__clean", ['c,"two\nlines"'], [])
    out.mkdir()
    join_tables(out, [one, two, tmp_path / "never-wrote"])
    gather_files(out, [one, two])
    assert (out / "sessions.csv").read_text() == 'session_id,error\na,\nb,\'=cmd\nc,"two\nlines"\n'
    assert (out / "events.csv").read_text() == "job_id,seq\nj1,1\nj1,2\n"
    assert sorted(p.name for p in (out / "raw").iterdir()) == ["relay__clean.jsonl", "sse__clean.jsonl"]
    assert sorted(p.name for p in (out / "locust").iterdir()) == ["relay__clean.html", "sse__clean.html"]


def test_no_part_table_leaves_no_stale_table(tmp_path: Path) -> None:
    """When no part wrote its tables, an earlier run's tables are not passed off as this run's."""
    (tmp_path / "sessions.csv").write_text("session_id,error\nold,\n")
    join_tables(tmp_path, [tmp_path / "1", tmp_path / "2"])
    assert not (tmp_path / "sessions.csv").exists() and not (tmp_path / "events.csv").exists()


def test_parts_with_different_columns_are_not_joined(tmp_path: Path) -> None:
    """Parts that wrote different columns ran different code: a ResultsError, not a shifted table."""
    one, two = tmp_path / "1", tmp_path / "2"
    write_part(one, "sse__clean", ["a,"], [])
    write_part(two, "relay__clean", ["c,"], [])
    (two / "sessions.csv").write_text("session_id,error,extra\nc,,\n")
    with pytest.raises(ResultsError, match="columns differ"):
        join_tables(tmp_path, [one, two])


def test_a_part_counts_the_sessions_written_so_far(tmp_path: Path) -> None:
    """The parent's progress is the parts' session records, over all their cells."""
    part = Part(1, ("sse",), tmp_path, tmp_path / "part.log")
    assert part.sessions() == 0
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "sse__clean.jsonl").write_text("{}\n{}\n")
    (tmp_path / "raw" / "sse__tunnel.jsonl").write_text("{}\n")
    assert part.sessions() == 3
