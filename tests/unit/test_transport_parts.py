"""Every registered transport has all its parts (transports/README.md), and the checklist notices a gap."""

from __future__ import annotations

import fnmatch
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from progressbench.transports.registry import REGISTRY, available, defaults
from progressbench.transports.types import ServiceSpec, Transport

from progressbench.app.checklist import missing_parts, version_clashes
from progressbench.app.gate_rules import builtin_rules
from progressbench.app.schema import migrations
from tests.layout import pyproject

FAKE = "pigeonpost"
RULES = '[[rule]]\ntransport = "pigeon*"\nmetric = "lost"\nop = "=="\nvalue = 0\n'


#: The fake's server and client, written to its server.py and client.py (an entry names them).
SERVER = """
class Routes:
    def api_router(self, ctx):
        return object()


class Silent:  # a server object that mounts nothing
    pass
"""
CLIENT = """
from progressbench.transports.types import ProbeReport


class Carrier:  # a watcher factory with the canary's probe
    def __init__(self, settings):
        self.settings = settings

    async def probe(self, phone, victim_job_id, window_s):
        return ProbeReport()


def probeless(settings):
    return None
"""


@pytest.fixture
def fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A complete transport subpackage on disk; a test removes or spoils one part."""
    root = tmp_path / FAKE
    (root / "migrations").mkdir(parents=True)
    for name in ("__init__.py", "loft.py"):
        (root / name).write_text("")
    (root / "server.py").write_text(SERVER)
    (root / "client.py").write_text(CLIENT)
    (root / "README.md").write_text("# pigeon\n")
    (root / "rules.toml").write_text(RULES)
    (root / "migrations" / "900_pigeon.sql").write_text("SELECT 1;\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _forget_fake()
    yield root
    _forget_fake()


def _forget_fake() -> None:
    """Each test imports its own copy of the fake (an earlier test's may lack a part)."""
    for name in [m for m in sys.modules if m == FAKE or m.startswith(f"{FAKE}.")]:
        del sys.modules[name]
    importlib.invalidate_caches()


def pigeon(**changes: object) -> Transport:
    fields: dict[str, object] = {
        "name": "pigeon",
        "server_ref": f"{FAKE}.server:Routes",
        "client_ref": f"{FAKE}.client:Carrier",
        "package": FAKE,
        "variants": frozenset({"homing"}),
        "services": (ServiceSpec(role="loft", module=f"{FAKE}.loft"),),
        "migrations": ("migrations/900_pigeon.sql",),
    }
    fields.update(changes)
    return Transport(**fields)  # type: ignore[arg-type]


def test_every_registered_transport_has_all_its_parts() -> None:
    """README, client, server, rules that concern it, declared migrations and services: all present."""
    assert [problem for t in REGISTRY.values() for problem in missing_parts(t)] == []


def test_a_complete_transport_passes_the_checklist(fake_package: Path) -> None:
    """The fake below is complete, so each removal in the next test is the only problem."""
    assert missing_parts(pigeon()) == []


@pytest.mark.parametrize(
    ("part", "problems"),
    [
        ("README.md", ["README.md is missing"]),
        (
            "client.py",
            [
                "client.py is missing",
                f"client cannot be loaded ({FAKE}.client:Carrier: No module named '{FAKE}.client')",
            ],
        ),
        (
            "server.py",
            [
                "server.py is missing",
                f"server cannot be loaded ({FAKE}.server:Routes: No module named '{FAKE}.server')",
            ],
        ),
        ("rules.toml", ["gate rules pigeonpost/rules.toml are missing"]),
        ("migrations/900_pigeon.sql", ["migration migrations/900_pigeon.sql is missing"]),
        ("loft.py", ["service module pigeonpost.loft is missing"]),
    ],
)
def test_a_transport_lacking_a_part_fails_the_checklist(
    fake_package: Path, part: str, problems: list[str]
) -> None:
    """Each missing part is named, with the transport it belongs to (a missing face's file also
    leaves its reference pointing at nothing)."""
    (fake_package / part).unlink()
    importlib.invalidate_caches()
    assert missing_parts(pigeon()) == [f"pigeon: {problem}" for problem in problems]


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        (
            {"client_ref": f"{FAKE}.client:Pigeon"},
            f"client cannot be loaded ({FAKE}.client:Pigeon: module {FAKE}.client has no 'Pigeon')",
        ),
        (
            {"server_ref": f"{FAKE}.routes:Routes"},
            f"server cannot be loaded ({FAKE}.routes:Routes: No module named '{FAKE}.routes')",
        ),
        (
            {"server_ref": f"{FAKE}.server.Routes"},
            f"server cannot be loaded ('{FAKE}.server.Routes' is not a 'package.module:attribute' reference)",
        ),
    ],
)
def test_a_reference_to_a_missing_face_fails_the_checklist(
    fake_package: Path, changes: dict[str, str], problem: str
) -> None:
    """An entry names its faces and imports them on first use: a misspelt name is found here, not
    by the first phone or service that needs it."""
    assert missing_parts(pigeon(**changes)) == [f"pigeon: {problem}"]


def test_a_watcher_without_the_canarys_probe_fails_the_checklist(fake_package: Path) -> None:
    """Every cell runs a cross-tenant canary through its transport's client face."""
    assert missing_parts(pigeon(client_ref=f"{FAKE}.client:probeless")) == [
        "pigeon: client has no probe (the cell's cross-tenant canary)"
    ]


def test_rules_that_do_not_concern_the_transport_fail_the_checklist(fake_package: Path) -> None:
    """A rules file must hold a rule for its transport, and no rule for every cell (that is the gate's)."""
    (fake_package / "rules.toml").write_text(RULES.replace("pigeon*", "carrier"))
    assert missing_parts(pigeon()) == ["pigeon: pigeonpost/rules.toml holds no rule for pigeon"]
    (fake_package / "rules.toml").write_text(RULES + RULES.replace('transport = "pigeon*"\n', ""))
    assert missing_parts(pigeon()) == [
        "pigeon: pigeonpost/rules.toml: a rule for every transport belongs in reports/rules.toml"
    ]
    (fake_package / "rules.toml").write_text(RULES.replace("lost", "lost_pigeons"))
    [problem] = missing_parts(pigeon())
    assert "unknown metric 'lost_pigeons'" in problem


def test_a_server_without_routes_fails_the_checklist(fake_package: Path) -> None:
    """A server object that mounts nothing is not a transport's server."""
    assert missing_parts(pigeon(server_ref=f"{FAKE}.server:Silent")) == [
        "pigeon: server mounts no routes (neither api_router nor worker_router)"
    ]


def test_migration_versions_are_unique_across_the_project() -> None:
    """A file name is a version in schema_migrations: two owners of one name would skip one of them."""
    assert version_clashes(REGISTRY.values()) == []
    clash = pigeon(migrations=("migrations/002_realtime.sql",))
    assert version_clashes([*REGISTRY.values(), clash]) == [
        f"migration 002_realtime.sql is shipped by {FAKE}, progressbench.transports.realtime"
    ]


def test_the_schema_is_the_cores_then_each_transports_in_registry_order() -> None:
    """Existing databases keep their history: the versions are the file names they always had."""
    assert [m.version for m in migrations()] == [
        "001_init.sql",
        "004_step_runs_started.sql",
        "005_auth.sql",
        "002_realtime.sql",
        "003_relay.sql",
        "006_relay_public_keys.sql",
    ]


def test_declared_files_are_packaged() -> None:
    """A transport's rules and migrations match pyproject's package-data, so the wheel carries them."""
    data: dict[str, list[str]] = pyproject()["tool"]["setuptools"]["package-data"]  # type: ignore[index]
    for transport in REGISTRY.values():
        globs = [*data.get("*", []), *data.get(transport.package, [])]
        for path in (transport.rules, *transport.migrations):
            assert any(fnmatch.fnmatchcase(path, g) for g in globs), (transport.name, path)


def test_defaults_and_rules_come_from_the_registry() -> None:
    """`run` without --transports runs every registered transport; the gate gets each one's rules."""
    assert defaults() == tuple(REGISTRY) == ("sse-naive", "sse", "realtime", "relay", "polling")
    assert set(defaults()) < set(available())
    concerned = {
        t.name
        for t in REGISTRY.values()
        for r in builtin_rules()
        for n in t.names
        if fnmatch.fnmatchcase(n, r.transport) and r.transport != "*"
    }
    assert concerned == set(REGISTRY)
