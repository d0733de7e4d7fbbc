"""`bench --all` bookkeeping: figures beside anchors, gaps visible, anchors file checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from progressbench.app.bench_all import Anchor, find_benchmarks, join, load_anchors
from progressbench.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def anchor(name: str, value: float, better: str = "lower", benchmark: str = "bench_x.py") -> Anchor:
    return Anchor(name, benchmark, value, "higher" if better == "higher" else "lower", "ms", "test")


def test_a_figure_is_read_against_its_anchor_in_the_right_direction() -> None:
    anchors = {"a.p99": anchor("a.p99", 50), "a.rate": anchor("a.rate", 500, "higher")}
    figures = {
        f.name: f
        for f in join(
            anchors,
            [{"name": "a.p99", "value": 40.0, "unit": "ms"}, {"name": "a.rate", "value": 250, "unit": "/s"}],
            "bench_x.py",
        )
    }
    assert figures["a.p99"].meets is True and figures["a.p99"].ratio == 0.8
    assert figures["a.rate"].meets is False and figures["a.rate"].ratio == 0.5


def test_an_anchored_figure_the_script_never_recorded_is_a_visible_gap() -> None:
    [gap] = join({"a.p99": anchor("a.p99", 50)}, [], "bench_x.py")
    assert gap.value is None and gap.meets is None and gap.ratio is None
    assert join({"a.p99": anchor("a.p99", 50)}, [], "bench_other.py") == []


def test_an_unanchored_figure_is_kept_without_a_verdict() -> None:
    [figure] = join({}, [{"name": "new.figure", "value": 3, "unit": "s"}], "bench_x.py")
    assert figure.value == 3 and figure.meets is None


def test_the_repository_anchors_load_and_name_existing_benchmarks() -> None:
    folder = find_benchmarks(REPO)
    anchors = load_anchors(folder / "anchors.toml")
    assert anchors and all((folder / a.benchmark).is_file() for a in anchors.values())
    assert all(a.source for a in anchors.values())


def test_a_malformed_anchors_file_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "anchors.toml"
    bad.write_text('[figures."x"]\nanchor = "fast"\n')
    with pytest.raises(ConfigError, match="malformed"):
        load_anchors(bad)
    with pytest.raises(ConfigError, match="checkout"):
        find_benchmarks(tmp_path)


def test_a_reference_figure_loads_without_an_anchor_and_gets_no_verdict(tmp_path: Path) -> None:
    """A reference (no ``anchor``) is listed with its source; missing from a run, it is a gap."""
    path = tmp_path / "anchors.toml"
    path.write_text('[figures."x.ref"]\nbenchmark = "bench_x.py"\nunit = "ms"\nsource = "plain library"\n')
    anchors = load_anchors(path)
    assert anchors["x.ref"].anchor is None
    [figure] = join(anchors, [{"name": "x.ref", "value": 12.0, "unit": "ms"}], "bench_x.py")
    assert figure.value == 12.0 and figure.source == "plain library"
    assert figure.ratio is None and figure.meets is None
    [gap] = join(anchors, [], "bench_x.py")
    assert gap.value is None and gap.source == "plain library"


def test_an_anchored_figure_must_say_which_way_is_better(tmp_path: Path) -> None:
    """Only a reference may leave ``better`` out: an anchor without a direction is malformed."""
    path = tmp_path / "anchors.toml"
    path.write_text('[figures."x"]\nbenchmark = "b.py"\nanchor = 1.0\nunit = "ms"\nsource = "s"\n')
    with pytest.raises(ConfigError, match="malformed"):
        load_anchors(path)


def test_a_stand_in_target_gives_way_when_the_run_measured_what_it_stands_for() -> None:
    """The proxy's "<= 30 us over direct" is the target only without a real Toxiproxy to compare."""
    stand_in = Anchor("p.added", "bench_x.py", 30.0, "lower", "us", "no Toxiproxy", unless="p.ratio")
    anchors = {"p.added": stand_in, "p.ratio": anchor("p.ratio", 1.0)}
    both = [{"name": "p.added", "value": 85.0, "unit": "us"}, {"name": "p.ratio", "value": 0.75, "unit": "x"}]
    figures = {f.name: f for f in join(anchors, both, "bench_x.py")}
    assert figures["p.added"].meets is None and "p.ratio was measured" in str(figures["p.added"].source)
    assert figures["p.ratio"].meets is True
    alone = {f.name: f for f in join(anchors, both[:1], "bench_x.py")}
    assert alone["p.added"].meets is False and alone["p.ratio"].value is None


def test_the_repository_proxy_stand_in_names_a_figure_that_exists() -> None:
    anchors = load_anchors(REPO / "benchmarks" / "anchors.toml")
    for entry in anchors.values():
        assert entry.unless is None or entry.unless in anchors, entry.name
