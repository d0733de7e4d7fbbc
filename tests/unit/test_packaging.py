"""The distribution's shape: one top-level package, every folder mapped, layers that only point down."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.layout import ROOT, assemble, package_dirs, pyproject

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _packages_on_disk() -> set[str]:
    found: set[str] = set()
    for package, folder in package_dirs().items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            if rel.parts and rel.parts[0] in package_dirs():
                continue
            found.add(".".join([package, *rel.parts]))
    return found


def test_every_package_folder_is_listed_for_installation() -> None:
    """A subpackage missing from pyproject's list would be silently left out of the wheel."""
    listed = set(pyproject()["tool"]["setuptools"]["packages"])  # type: ignore[index]
    assert listed == _packages_on_disk()


def test_everything_installs_under_one_top_level_package() -> None:
    """No generic top-level names (`transports`, `chaos`...) leak into site-packages."""
    listed = pyproject()["tool"]["setuptools"]["packages"]  # type: ignore[index]
    assert {name.split(".")[0] for name in listed} == {"progressbench"}
    assert all(name.split(".")[0] == "progressbench" for name in package_dirs())


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed")
def test_import_layers_point_down(tmp_path: Path) -> None:
    """The import contract holds on the installed layout: no module imports a layer above it."""
    result = _lint(assemble(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed")
def test_import_contract_catches_an_upward_import(tmp_path: Path) -> None:
    """The contract is not vacuous: a core module importing the app breaks it."""
    tree = assemble(tmp_path)
    errors = tree / "progressbench" / "core" / "errors.py"
    errors.write_text(errors.read_text() + "\nimport progressbench.app.cli  # noqa\n")
    result = _lint(tree)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed")
def test_import_contract_catches_the_proxy_endpoint_importing_its_link(tmp_path: Path) -> None:
    """The endpoint ↔ link loop cannot come back, not even as a type-checking-only import."""
    tree = assemble(tmp_path)
    endpoint = tree / "progressbench" / "chaos" / "proxy" / "endpoint.py"
    loop = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from progressbench.chaos.proxy.link import Link\n"
    )
    endpoint.write_text(endpoint.read_text() + loop)
    result = _lint(tree)
    assert result.returncode != 0
    assert "Inside the chaos proxy, imports point down" in result.stdout and "BROKEN" in result.stdout
