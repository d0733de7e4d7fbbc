"""The example CI workflow (examples/ci/progressbench.yml), run here with the commands it runs.

The workflow is read as YAML and checked for what it promises (install, run, gate with JUnit and
a step summary, upload the results folder); then every ``run:`` step of its first matrix entry
runs in bash the way GitHub runs it (``bash -eo pipefail``), in a scratch folder, against the
test's database. The install step is the one not repeated: this suite already runs inside the
project installed by ``pip install`` (``dev.py``), and reinstalling would replace it. The results
it leaves are read the way CI reads them: JUnit XML through ``junitparser``, the Markdown summary,
the artifact's files, and Locust's own statistics of the phones.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import junitparser
import pytest
import yaml

from tests.helpers import run_process

#: One small run on a shared 2-core machine takes minutes; the module's tests share it.
pytestmark = pytest.mark.timeout(900)

WORKFLOW = Path(__file__).resolve().parents[2] / "examples" / "ci" / "progressbench.yml"
INSTALL = "Install progressbench"
EXPRESSION = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")


def _workflow() -> dict[str, Any]:
    data = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(data, dict)
    return data


def _steps() -> list[dict[str, Any]]:
    steps = _workflow()["jobs"]["gate"]["steps"]
    assert isinstance(steps, list)
    return steps


def _expand(script: str, matrix: dict[str, str]) -> str:
    """``${{ matrix.X }}`` as GitHub would fill it for this matrix entry; any other expression fails."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name.startswith("matrix."), f"the test cannot evaluate ${{{{ {name} }}}}"
        return matrix[name.removeprefix("matrix.")]

    return EXPRESSION.sub(value, script)


def _run_step(step: dict[str, Any], matrix: dict[str, str], cwd: Path, env: dict[str, str]) -> int:
    script = _expand(step["run"], matrix)
    done = run_process(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], 300, cwd=cwd, env=env
    )
    output = done.stdout[-3000:] + done.stderr[-3000:]
    print(f"$ {step.get('name', '')}\n{script}\n-> exit {done.returncode}\n{output}")
    return done.returncode


@pytest.fixture(scope="module")
def workspace(
    tmp_path_factory: pytest.TempPathFactory, module_database_url: str
) -> tuple[Path, dict[str, str]]:
    """A checkout-like folder where the workflow's steps run, and the environment they run with."""
    cwd = tmp_path_factory.mktemp("ci")
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DATABASE_URL"] = module_database_url
    env["GITHUB_STEP_SUMMARY"] = str(cwd / "step-summary.md")
    return cwd, env


@pytest.fixture(scope="module")
def first_entry() -> dict[str, str]:
    matrix = _workflow()["jobs"]["gate"]["strategy"]["matrix"]["include"]
    return {str(k): str(v) for k, v in matrix[0].items()}


@pytest.fixture(scope="module")
def exit_codes(workspace: tuple[Path, dict[str, str]], first_entry: dict[str, str]) -> dict[str, int]:
    """Every run step of the first matrix entry but the install, in order, as CI runs them."""
    cwd, env = workspace
    codes: dict[str, int] = {}
    for step in _steps():
        if "run" in step and step.get("name") != INSTALL:
            codes[step["name"]] = _run_step(step, first_entry, cwd, env)
            if codes[step["name"]]:
                break
    return codes


def test_the_workflow_is_valid_yaml_that_installs_runs_gates_and_uploads() -> None:
    """What the README promises of the example: a matrix, the install, the gate's files, the artifact."""
    data = _workflow()
    assert set(data.get("on", data.get(True))) == {
        "pull_request",
        "workflow_dispatch",
    }  # YAML 1.1: on: is True
    job = data["jobs"]["gate"]
    assert len(job["strategy"]["matrix"]["include"]) >= 2
    steps = _steps()
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    assert uses[:2] == ["actions/checkout", "actions/setup-python"] and "actions/upload-artifact" in uses
    [install] = [s for s in steps if s.get("name") == INSTALL]
    assert install["run"].strip() == "python -m pip install ."
    scripts = "\n".join(s.get("run", "") for s in steps)
    assert "--junit results/junit.xml" in scripts and '--summary-md "$GITHUB_STEP_SUMMARY"' in scripts
    [upload] = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact")]
    assert upload["with"]["path"] == "results/" and upload["if"] == "always()"


def test_the_workflow_commands_run_green_locally(
    exit_codes: dict[str, int], workspace: tuple[Path, dict[str, str]]
) -> None:
    """Run and gate exit 0; JUnit XML holds one passing testcase per rule × cell; the summary says ✅."""
    cwd, _ = workspace
    assert exit_codes == {"Run the cell": 0, "Gate": 0}
    xml = junitparser.JUnitXml.fromfile(str(cwd / "results" / "junit.xml"))
    [suite] = list(xml)
    cases = list(suite)
    judged = [c for c in cases if c.classname == "sse × handoff"]
    assert suite.failures == 0 and suite.errors == 0 and len(judged) >= 3
    assert all(c.is_passed for c in judged)
    assert {c.name for c in judged} >= {"foreign_events == 0", "delivery_ratio >= 1"}
    summary = (cwd / "step-summary.md").read_text()
    assert summary.startswith("### ✅ progressbench gate: all")
    for name in ("report.html", "report.md", "summary.json", "sessions.csv", "events.csv"):
        assert (cwd / "results" / name).stat().st_size > 0, name  # what the artifact uploads


def test_locust_statistics_carry_the_phones_and_are_linked_from_the_report(
    exit_codes: dict[str, int], workspace: tuple[Path, dict[str, str]]
) -> None:
    """The headless Locust run's stats CSV counts each event kind the phones received, with latency."""
    assert exit_codes.get("Run the cell") == 0
    cwd, _ = workspace
    stats = cwd / "results" / "locust" / "sse__handoff_stats.csv"
    with stats.open() as fh:
        rows = {(r["Type"], r["Name"]): r for r in csv.DictReader(fh)}
    steps = rows[("EVENT", "sse step")]
    assert int(steps["Request Count"]) >= 2 * 15 and int(steps["Failure Count"]) == 0
    assert float(steps["Average Response Time"]) > 0
    assert int(rows[("EVENT", "sse done")]["Request Count"]) == 2
    assert int(rows[("JOB", "sse")]["Request Count"]) == 2
    disconnects = int(rows[("DISCONNECT", "sse disconnect")]["Request Count"])  # a handoff drops the stream
    assert disconnects >= 1 and 1 <= int(rows[("RESUME", "sse resume")]["Request Count"]) <= disconnects
    report = (cwd / "results" / "report.html").read_text()
    assert 'href="locust/sse__handoff_stats.csv"' in report and 'href="locust/sse__handoff.html"' in report
    assert "sse step" in (cwd / "results" / "locust" / "sse__handoff.html").read_text()


def test_a_saved_baseline_is_compared_and_gated_by_the_same_step(
    exit_codes: dict[str, int], workspace: tuple[Path, dict[str, str]], first_entry: dict[str, str]
) -> None:
    """`baseline save` then the Gate step again: it compares (compare.html) and checks --baseline, green."""
    assert exit_codes.get("Gate") == 0
    cwd, env = workspace
    saved = run_process(
        [
            sys.executable,
            "-m",
            "progressbench",
            "baseline",
            "save",
            "results",
            "--to",
            ".progressbench/baseline",
        ],
        60,
        cwd=cwd,
        env=env,
    )
    assert saved.returncode == 0, saved.stderr
    assert {p.name for p in (cwd / ".progressbench" / "baseline").iterdir()} == {
        "summary.json",
        "sessions.csv",
        "events.csv",
    }
    [gate] = [s for s in _steps() if s.get("name") == "Gate"]
    assert _run_step(gate, first_entry, cwd, env) == 0
    compare = (cwd / "results" / "compare.md").read_text()
    assert "1 cell compared: 0 regressed, 0 mixed, 0 improved, 1 unchanged" in compare
    xml = junitparser.JUnitXml.fromfile(str(cwd / "results" / "junit.xml"))
    [suite] = list(xml)
    assert any("baseline" in case.name for case in suite) and suite.failures == 0


def test_a_regression_fails_the_gate_in_junit_and_shows_in_the_comparison(
    exit_codes: dict[str, int], workspace: tuple[Path, dict[str, str]]
) -> None:
    """A copy of the run with one foreign event: check exits 1 with a JUnit failure that says what and
    why; `compare` and `report --baseline` call the cell regressed and link the comparison."""
    assert exit_codes.get("Run the cell") == 0
    cwd, env = workspace
    bad = cwd / "bad"
    shutil.copytree(cwd / "results", bad)
    summary = json.loads((bad / "summary.json").read_text())
    summary["cells"][0]["foreign_events"] = 1
    (bad / "summary.json").write_text(json.dumps(summary))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_process([sys.executable, "-m", "progressbench", *args], 120, cwd=cwd, env=env)

    gate = cli("check", "bad", "--junit", "bad/junit.xml", "--summary-md", "bad/summary.md")
    assert gate.returncode == 1 and "Traceback" not in gate.stderr
    [suite] = list(junitparser.JUnitXml.fromfile(str(bad / "junit.xml")))
    [failed] = [c for c in suite if not c.is_passed and not c.is_skipped]
    assert (failed.classname, failed.name) == ("sse × handoff", "foreign_events == 0")
    [failure] = failed.result
    assert "measured 1" in (failure.message or "") and "nobody may see another user's job" in (
        failure.text or ""
    )
    assert (bad / "summary.md").read_text().startswith("### ❌ progressbench gate: 1 of")

    compared = cli("compare", "results", "bad")
    assert compared.returncode == 0 and "1 regressed" in compared.stdout
    assert "foreign events 0 → 1" in compared.stdout
    rendered = cli("report", "bad", "--baseline", "results")
    assert rendered.returncode == 0, rendered.stderr
    assert "worse" in (bad / "compare.html").read_text()
    assert '<a href="compare.html">' in (bad / "report.html").read_text()
