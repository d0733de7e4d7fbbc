"""A wheel built from the repository installs one package and runs from any directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.databases import Databases
from tests.helpers import UNIT, run_process
from tests.layout import ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        timeout=180 * UNIT,
        capture_output=True,
    )
    (found,) = out.glob("progressbench-*.whl")
    return found


def test_wheel_has_exactly_one_top_level_package(wheel: Path) -> None:
    """Nothing but `progressbench` (and its dist-info) lands in site-packages."""
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"progressbench"}
    assert "progressbench/transports/sse/client.py" in names
    assert "progressbench/kit/migrations/001_init.sql" in names
    assert "progressbench/reports/rules.toml" in names
    assert "progressbench/reports/prices.toml" in names


def test_wheel_carries_every_transports_rules_and_migrations(wheel: Path) -> None:
    """A transport's own files (gate rules, SQL) travel with it: an installed run can gate and migrate."""
    from progressbench.transports.registry import REGISTRY

    names = set(zipfile.ZipFile(wheel).namelist())
    for transport in REGISTRY.values():
        folder = transport.package.replace(".", "/")
        for path in (transport.rules, *transport.migrations):
            assert f"{folder}/{path}" in names, (transport.name, path)


@pytest.fixture
def empty_database_url(databases: Databases) -> Iterator[str]:
    """A database without the schema: the installed wheel must migrate it from its own files."""
    with databases.clone("wheel", migrated=False) as url:
        yield url


def test_installed_wheel_runs_from_any_directory(
    wheel: Path, tmp_path: Path, empty_database_url: str
) -> None:
    """`progressbench run` from the installed wheel, started outside the repository, migrates an
    empty database from its own package data and writes its results."""
    database_url = empty_database_url
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        timeout=120 * UNIT,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(target))
    where = subprocess.run(
        [sys.executable, "-c", "import progressbench.transports as t; print(t.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60 * UNIT,
    ).stdout.strip()
    assert where.startswith(str(target)), where
    args = ["run", "--transports", "polling", "--profiles", "clean", "--users", "2", "--jobs-per-user", "1"]
    result = run_process(
        [
            *(sys.executable, "-m", "progressbench", *args),
            *("--time-scale", "0.05", "--out", "out", "--database-url", database_url),
        ],
        timeout=180,
        cwd=elsewhere,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = json.loads((elsewhere / "out" / "summary.json").read_text())
    assert summary["cells"][0]["sessions"] == 2
    with psycopg.connect(database_url) as conn:
        applied = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    shipped = sorted(n.rsplit("/", 1)[1] for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".sql"))
    assert applied == shipped and applied, "the installed run applies exactly the migrations it ships"
