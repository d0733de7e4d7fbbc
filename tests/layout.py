"""The installed layout of the package, assembled from the repository without building a wheel.

The repository keeps ``transports/``, ``chaos/``, ``loadtests/`` and
``reports/`` at the top and ``pyproject.toml`` maps them under
``progressbench`` (``package-dir``). Tools that read a package from its folder
(grimp, so import-linter) cannot follow that mapping; they read this copy.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def package_dirs() -> dict[str, str]:
    """``package-dir`` from pyproject: installed package name -> repository folder."""
    setuptools = pyproject()["tool"]["setuptools"]  # type: ignore[index]
    return dict(setuptools["package-dir"])  # type: ignore[index]


def assemble(target: Path) -> Path:
    """Copy every mapped folder's Python files to where the installed package has them; returns ``target``."""
    for package, folder in sorted(package_dirs().items()):
        dest = target.joinpath(*package.split("."))
        for source in (ROOT / folder).rglob("*.py"):
            rel = source.relative_to(ROOT / folder)
            if rel.parts[0] in package_dirs() or "__pycache__" in rel.parts:
                continue
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, out)
    shutil.copyfile(ROOT / "pyproject.toml", target / "pyproject.toml")
    return target
