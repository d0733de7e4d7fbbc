"""Probe 13: results files from elsewhere are data, never code, and never a traceback.

Before the fixes: ``report`` on a summary whose ``config.timing`` was not an
object, on a binary ``events.csv``, and ``check --rules`` on a binary file
printed Python tracebacks; ``schema_version: true`` passed as version 1;
report.md copied transport/profile/finding texts raw (a ``|`` or a newline
broke the table, ``<img>`` or ``[x](…)`` became HTML or links); CSV cells
starting with ``=`` were written as is (OWASP "CSV Injection").
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from progressbench.reports.render import markdown

from progressbench.app.results import neutralise_cell, write_summary, write_tables
from progressbench.core.ledger import EventRow
from tests.helpers import run_process
from tests.unit.summaries import make_cell
from tests.unit.test_summary import summary

HOSTILE = "x | y\n# evil <img src=x onerror=alert(1)> [link](http://e) `code` *b*"


def cli(*args: str) -> tuple[int, str]:
    done = run_process([str(Path(sys.executable).parent / "progressbench"), *args], timeout=60)
    return done.returncode, done.stdout + done.stderr


def folder_with(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "summary.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return tmp_path


def assert_one_clear_line(code: int, output: str) -> None:
    assert code != 0
    assert "Traceback" not in output, output
    assert output.strip().startswith("error:") and len(output.strip().splitlines()) == 1, output


@pytest.mark.parametrize("command", ["check", "report"])
def test_a_binary_summary_is_one_line(tmp_path: Path, command: str) -> None:
    assert_one_clear_line(*cli(command, str(folder_with(tmp_path, b"\xff\xfe\x00\x01binary"))))


@pytest.mark.parametrize("command", ["check", "report"])
def test_a_boolean_schema_version_is_refused(tmp_path: Path, command: str) -> None:
    data = json.loads(summary().to_json())
    data["schema_version"] = True
    assert_one_clear_line(*cli(command, str(folder_with(tmp_path, json.dumps(data)))))


def test_a_wrong_typed_config_still_renders(tmp_path: Path) -> None:
    write_summary(tmp_path, summary(config={"users": 1, "timing": [1, 2]}))
    code, output = cli("report", str(tmp_path))
    assert code == 0 and "Traceback" not in output, output


def test_a_binary_events_table_is_one_line(tmp_path: Path) -> None:
    write_summary(tmp_path, summary())
    (tmp_path / "events.csv").write_bytes(b"\xff\xfe\x00\x01\x02")
    assert_one_clear_line(*cli("report", str(tmp_path)))


def test_a_binary_sessions_table_or_raw_file_is_one_line_or_skipped(tmp_path: Path) -> None:
    """sessions.csv feeds the intervals: unreadable is one line; a torn raw record is skipped."""
    write_summary(tmp_path, summary())
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "polling__clean.jsonl").write_bytes(b"\xff\xfe{not json\n")
    code, output = cli("report", str(tmp_path))
    assert code == 0 and "Traceback" not in output, output
    (tmp_path / "sessions.csv").write_bytes(b"\xff\xfe\x00\x01\x02")
    assert_one_clear_line(*cli("report", str(tmp_path)))


def test_binary_rules_are_one_line(tmp_path: Path) -> None:
    write_summary(tmp_path, summary())
    rules = tmp_path / "rules.toml"
    rules.write_bytes(b"\xff\xfe\x00")
    assert_one_clear_line(*cli("check", str(tmp_path), "--rules", str(rules)))


def test_report_md_escapes_what_the_results_say() -> None:
    cell = make_cell(HOSTILE, "clean", findings={HOSTILE: 2}, chaos_errors=[HOSTILE])
    text = markdown(summary(cells=[cell]))
    assert re.search(r"(?<!\\)<", text) is None, "an unescaped < (raw HTML)"
    assert re.search(r"(?<!\\)\]\(", text) is None, "an unescaped ]( (a link)"
    assert "\n# evil" not in text
    header, row = [line for line in text.splitlines() if line.startswith("| ")][:2]
    bars = [len(re.findall(r"(?<!\\)\|", line)) for line in (header, row)]
    assert bars[0] == bars[1], (header, row)  # the hostile value added no column


@pytest.mark.parametrize("value", ["=1+2", "+1", "-cmd", "@SUM(A1)", "\tx", "\rx"])
def test_csv_cells_that_start_like_formulas_are_neutralised(tmp_path: Path, value: str) -> None:
    assert neutralise_cell(value) == "'" + value
    row = EventRow(**{**{name: 0 for name in EventRow.__dataclass_fields__}, "transport": value})
    write_tables(tmp_path, [], [row])
    written = (tmp_path / "events.csv").read_bytes().decode()
    assert "'" + value in written and f",{value}" not in written
    assert neutralise_cell(-3.5) == -3.5 and neutralise_cell("plain") == "plain"
