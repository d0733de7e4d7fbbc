"""The whole matrix against the built-in gate (slow: ~20 min; not in the CI default)."""

from __future__ import annotations

from pathlib import Path

import pytest
from progressbench.chaos.profiles import BUILTIN
from progressbench.transports.registry import available

from tests.scenarios.conftest import check, run_cli


@pytest.mark.slow
@pytest.mark.timeout(3700)  # the run's own limit is 3600 s; the ini's 300 s would cut it
def test_every_transport_under_every_profile_passes_the_gate(tmp_path: Path, database_url: str) -> None:
    """All transports and variants × all profiles: complete, no foreign event, the gate holds."""
    summary = run_cli(
        tmp_path,
        database_url,
        "--transports",
        ",".join(available()),
        "--profiles",
        ",".join(BUILTIN),
        "--users",
        "10",
        "--jobs-per-user",
        "1",
        "--time-scale",
        "0.05",
        timeout=3600,
    )
    assert len(summary["cells"]) == len(available()) * len(BUILTIN)
    assert all(c["sessions"] == 10 for c in summary["cells"])
    assert all(c["foreign_events"] == 0 for c in summary["cells"])
    gate = check(tmp_path)
    assert gate.returncode == 0, gate.stdout
