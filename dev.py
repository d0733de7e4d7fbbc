#!/usr/bin/env python3
"""Bootstrap for a fresh machine with only Python 3.11+: `python3 dev.py demo|test|lint|shell`.

Creates ``.venv`` beside this file, installs the project into it (again only
when ``pyproject.toml`` changed), then runs the demo benchmark or the tests.
Standard library only: this file runs before anything is installed.

`test` runs one of three suites (pytest options after it are passed on):
  python3 dev.py test           the quick suite: every test that starts no service, and the
                                `smoke` tests that show delivery, resume and isolation through
                                real processes for each transport (about 80 s on 2 cores)
  python3 dev.py test --rest    every other test of the CI set (about 9 min on 2 cores)
  python3 dev.py test --all     both at once
`.ci/run` runs the first, then the second. Given test paths, `test` runs everything
in them that is not marked `slow`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
MARKER = VENV / ".progressbench-installed"

DEMO = [
    "run",
    "--profiles",
    "clean,handoff",
    "--users",
    "20",
    "--jobs-per-user",
    "2",
    "--time-scale",
    "0.05",
    "--out",
    "results/demo",
]
#: pytest-xdist: one worker per CPU plus one; tests/scheduling.py says how tests are spread.
XDIST = ["-n", "auto", "--dist", "loadscope", "--no-loadscope-reorder"]
TESTS = ["-m", "pytest", "-q", *XDIST]
#: Marker expressions of the suites (markers: pyproject.toml). A test that starts real processes
#: is marked `integration` or `scenario` by its folder's conftest; `smoke` picks the few of them
#: the quick suite keeps.
SUITES = {
    "--quick": "not slow and (smoke or not (integration or scenario))",
    "--rest": "not slow and not smoke and (integration or scenario)",
    "--all": "not slow",
}


def names_a_test_path(arg: str) -> bool:
    """``tests/unit``, ``tests/x.py::test_y``: an argument that is a path (not an option's value)."""
    path = arg.split("::", 1)[0]
    return not arg.startswith("-") and bool(path) and (Path(path).exists() or (ROOT / path).exists())


def suite_options(extra: list[str]) -> list[str]:
    """The marker expression for ``test``'s arguments, then the arguments pytest should see.

    A suite flag wins; otherwise named test paths run whole (a quick-suite filter would
    silently drop the integration tests a developer just pointed at), and no path means the
    quick suite. A ``-m`` of the caller's own comes later on pytest's command line and wins.
    """
    flags = [arg for arg in extra if arg in SUITES]
    rest = [arg for arg in extra if arg not in SUITES]
    if len(flags) > 1:
        sys.exit(f"dev.py test: pick one of {', '.join(SUITES)} (got {' '.join(flags)})")
    if flags:
        suite = flags[0]
    elif any(names_a_test_path(arg) for arg in rest):
        suite = "--all"
    else:
        suite = "--quick"
    return ["-m", SUITES[suite], *rest]


def ensure_environment() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"progressbench needs Python 3.11 or newer (this is {sys.version.split()[0]})")
    if not (BIN / "python").exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if MARKER.exists() and MARKER.read_text().strip() == digest:
        return
    print("installing progressbench and its dependencies into .venv ...", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[test]"], check=True)
    MARKER.write_text(digest)


def lint() -> int:
    """ruff on the repository; mypy and the import contract on the installed layout.

    mypy and import-linter read a package from its folder and cannot follow
    pyproject's ``package-dir``, so they check a copy laid out as installed;
    their messages are mapped back to repository paths.
    """
    sys.path.insert(0, str(ROOT))
    from tests.layout import assemble, package_dirs

    status = subprocess.call([str(BIN / "ruff"), "check", str(ROOT)])
    status |= subprocess.call([str(BIN / "ruff"), "format", "--check", "-q", str(ROOT)])
    with tempfile.TemporaryDirectory() as tmp:
        tree = assemble(Path(tmp))
        prefixes = sorted(
            ((package.replace(".", "/") + "/", folder + "/") for package, folder in package_dirs().items()),
            key=lambda pair: len(pair[0]),
            reverse=True,
        )
        for tool in (["mypy", "progressbench"], ["lint-imports"]):
            proc = subprocess.run([str(BIN / tool[0]), *tool[1:]], cwd=tree, capture_output=True, text=True)
            for line in (proc.stdout + proc.stderr).splitlines():
                for installed, folder in prefixes:
                    if line.startswith(installed):
                        line = folder + line[len(installed) :]
                        break
                print(line)
            status |= proc.returncode
    return status


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test", "lint", "shell"):
        print(__doc__)
        print(
            "usage: python3 dev.py demo [extra run options] | test [--rest|--all] [pytest args]"
            " | lint | shell"
        )
        return 2
    ensure_environment()
    command, extra = argv[0], argv[1:]
    if command == "lint":
        return lint()
    if command == "demo":
        args = [str(BIN / "progressbench"), *DEMO, *extra]
    elif command == "test":
        args = [str(BIN / "python"), *TESTS, *suite_options(extra)]
    else:
        args = [os.environ.get("SHELL", "/bin/sh")]
        os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    os.chdir(ROOT)
    return subprocess.call(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
