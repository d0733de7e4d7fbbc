"""`dev.py test`'s suites: the quick one and `--rest` split the CI set, and nothing falls between.

CI runs the quick suite and then `--rest`; a test in neither would never run in CI, and a
test in both would run twice. The marker expressions are checked against every combination
of the markers that decide them, with pytest's own expression evaluator.
"""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from types import ModuleType

import pytest
from _pytest.mark.expression import Expression

ROOT = Path(__file__).resolve().parents[2]
DECIDING = ("slow", "smoke", "integration", "scenario", "security")


def dev() -> ModuleType:
    spec = importlib.util.spec_from_file_location("progressbench_dev_script", ROOT / "dev.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def selects(expression: str, markers: set[str]) -> bool:
    return bool(Expression.compile(expression).evaluate(lambda name, *_: name in markers))


def marker_sets() -> list[set[str]]:
    return [set(combo) for n in range(len(DECIDING) + 1) for combo in itertools.combinations(DECIDING, n)]


def test_quick_and_rest_split_the_ci_set_exactly() -> None:
    suites = dev().SUITES
    for markers in marker_sets():
        in_ci = selects(suites["--all"], markers)
        quick, rest = selects(suites["--quick"], markers), selects(suites["--rest"], markers)
        assert not (quick and rest), f"{markers} runs twice in CI"
        assert (quick or rest) == in_ci, f"{markers}: CI set {in_ci}, quick {quick}, rest {rest}"


def test_the_quick_suite_starts_no_service_unless_a_test_is_marked_smoke() -> None:
    quick = dev().SUITES["--quick"]
    assert selects(quick, set())
    assert not selects(quick, {"integration"}) and not selects(quick, {"scenario"})
    assert selects(quick, {"integration", "smoke"})
    assert not selects(quick, {"integration", "smoke", "slow"})


@pytest.mark.parametrize(
    ("args", "expression"),
    [
        ([], "--quick"),
        (["-x", "-n", "0"], "--quick"),
        (["--rest"], "--rest"),
        (["--all", "-x"], "--all"),
        (["tests/unit"], "--all"),
        (
            ["tests/integration/test_sse.py::test_cancel_variant_abandons_the_job_when_the_client_goes"],
            "--all",
        ),
    ],
)
def test_named_paths_run_whole_and_no_path_means_the_quick_suite(args: list[str], expression: str) -> None:
    module = dev()
    options = module.suite_options(args)
    assert options[:2] == ["-m", module.SUITES[expression]]
    assert options[2:] == [arg for arg in args if arg not in module.SUITES]


def test_two_suite_flags_are_refused() -> None:
    with pytest.raises(SystemExit) as stop:
        dev().suite_options(["--rest", "--all"])
    assert "pick one" in str(stop.value)
