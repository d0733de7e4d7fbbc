"""ruff's rules and format hold for the whole repository, so a style slip fails the test command.

`python3 dev.py lint` also runs mypy --strict; that takes most of a minute on 2 cores, so it
stays there, outside the quick suite.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.layout import ROOT

RUFF = Path(sys.executable).with_name("ruff")


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff_passes_on_the_repository(command: list[str]) -> None:
    if not RUFF.exists():
        pytest.skip("ruff is not installed beside this Python (pip install -e '.[test]')")
    done = subprocess.run(
        [str(RUFF), *command, "--no-cache", str(ROOT)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
