"""The parts a registered transport must have, checked (the list is ``transports/README.md``).

Everything the testbed needs from a transport comes from its registry entry
and its subpackage; a part that is missing would otherwise show up late and
quietly (a transport without rules passes the gate by saying nothing, a
migration file left out of the wheel breaks only installed runs). The
checklist names each missing part; ``tests/unit/test_transport_parts.py``
runs it over the registry.
"""

from __future__ import annotations

import fnmatch
import importlib.util
from collections.abc import Iterable
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import PurePosixPath

from progressbench.app.gate_rules import rules_source, transport_rules
from progressbench.core.contract import Transport
from progressbench.core.errors import ConfigError
from progressbench.kit.database import core_migrations
from progressbench.transports.types import ApiRoutes, WorkerRoutes

#: Files every transport subpackage holds (STYLE.md 1).
FILES = ("README.md", "client.py", "server.py")


def _file(root: Traversable, path: str) -> Traversable:
    return root.joinpath(*PurePosixPath(path).parts)


def missing_parts(transport: Transport) -> list[str]:
    """What ``transport`` lacks, one line per part; empty when it is complete."""
    try:
        root = resources.files(transport.package)
    except (ModuleNotFoundError, TypeError):
        return [f"{transport.name}: package {transport.package!r} cannot be found"]
    problems = [f"{name} is missing" for name in FILES if not _file(root, name).is_file()]
    problems += _face_problems(transport)
    problems += _rules_problems(transport, root)
    for path in transport.migrations:
        if not path.endswith(".sql") or not _file(root, path).is_file():
            problems.append(f"migration {path} is missing")
    for service in transport.services:
        if importlib.util.find_spec(service.module) is None:
            problems.append(f"service module {service.module} is missing")
    return [f"{transport.name}: {p}" for p in problems]


def _face_problems(transport: Transport) -> list[str]:
    """The server and the client, resolved from their references (an entry names them lazily)."""
    problems: list[str] = []
    try:
        server = transport.server
    except ImportError as exc:
        problems.append(f"server cannot be loaded ({exc})")
    else:
        if not isinstance(server, ApiRoutes | WorkerRoutes):
            problems.append("server mounts no routes (neither api_router nor worker_router)")
    try:
        client = transport.client
    except ImportError as exc:
        problems.append(f"client cannot be loaded ({exc})")
    else:
        if not callable(client):
            problems.append("client is not a watcher factory")
        elif not callable(getattr(client, "probe", None)):
            problems.append("client has no probe (the cell's cross-tenant canary)")
    return problems


def _rules_problems(transport: Transport, root: Traversable) -> list[str]:
    if not _file(root, transport.rules).is_file():
        return [f"gate rules {rules_source(transport)} are missing"]
    try:
        rules = transport_rules(transport)
    except ConfigError as exc:
        return [str(exc)]
    problems = [
        f"{rules_source(transport)}: a rule for every transport belongs in reports/rules.toml"
        for rule in rules
        if rule.transport == "*"
    ]
    if not any(fnmatch.fnmatchcase(name, rule.transport) for rule in rules for name in transport.names):
        problems.append(f"{rules_source(transport)} holds no rule for {transport.name}")
    return problems


def version_clashes(transports: Iterable[Transport]) -> list[str]:
    """Migration file names used twice: each is a version in ``schema_migrations`` and must be unique."""
    owners: dict[str, set[str]] = {m.version: {"the core"} for m in core_migrations()}
    for transport in transports:
        for path in transport.migrations:
            owners.setdefault(PurePosixPath(path).name, set()).add(transport.package)
    return [
        f"migration {name} is shipped by {', '.join(sorted(who))}"
        for name, who in owners.items()
        if len(who) > 1
    ]
