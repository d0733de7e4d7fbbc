"""Every planned session is accounted for: recorded, or counted as ``unreported``.

Issue #16's exact load: ``--users N --jobs-per-user M`` is N×M sessions. When
the load generator could not start a phone, or a record was lost as a cell
ended, the summary must say so in numbers (``session_outcomes`` adds up to
``sessions_planned``) instead of quietly scoring fewer sessions.
"""

from __future__ import annotations

from pathlib import Path

from progressbench.reports.render import cell_table

from progressbench.app.cell_result import CellResult
from progressbench.app.scoring import score_cell
from progressbench.app.session import LiveSession, SessionSpec, session_record
from progressbench.core.config import Timing
from progressbench.core.events import Progress, SessionRecord, Submitted
from progressbench.core.summary import UNREPORTED
from tests.unit.specs import session_spec


def spec(phone: int) -> SessionSpec:
    return session_spec(phone, timing=Timing(time_scale=0.1))


def record(phone: int) -> SessionRecord:
    live = LiveSession()
    live.job_id = f"job-{phone}"
    live.add(Submitted(job_id=live.job_id, token="t"), 1, 1)
    return session_record(spec(phone), live, "deadline", None)


def scored(planned: int, recorded: int, tmp_path: Path) -> object:
    cell = CellResult("polling", "clean", tmp_path / "cell.jsonl", complete=planned == recorded)
    cell.planned_sessions = planned
    return score_cell(cell, [record(i) for i in range(recorded)], {}, 0.1).summary


def test_missing_sessions_are_counted_as_unreported(tmp_path: Path) -> None:
    summary = scored(planned=5, recorded=3, tmp_path=tmp_path)
    assert summary.sessions == 3
    assert summary.sessions_planned == 5
    assert summary.session_outcomes[UNREPORTED] == 2
    assert sum(summary.session_outcomes.values()) == 5
    assert cell_table([summary])[0][2] == "3/5"


def test_a_complete_cell_has_no_unreported_sessions(tmp_path: Path) -> None:
    summary = scored(planned=4, recorded=4, tmp_path=tmp_path)
    assert UNREPORTED not in summary.session_outcomes
    assert sum(summary.session_outcomes.values()) == summary.sessions_planned == 4
    assert cell_table([summary])[0][2] == "4"


def test_a_session_cut_off_mid_way_keeps_what_the_phone_saw() -> None:
    """The agent's last resort for a session that does not stop: the record as it stood."""
    live = LiveSession()
    live.job_id = "job-1"
    live.add(Submitted(job_id="job-1", token="t"), 10, 10)
    live.add(Progress(job_id="job-1", seq=1, kind="step", message="1 of 6"), 20, 20)
    cut = session_record(spec(1), live, "interrupted", "did not stop")
    assert cut.outcome == "interrupted"
    assert cut.job_id == "job-1"
    assert [o.seq for o in cut.observations if o.seq is not None] == [1]
