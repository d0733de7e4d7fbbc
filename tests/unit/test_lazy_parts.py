"""A registry entry is data: its server and client are imported on first use, and still work.

``check``, ``report`` and the runner read every entry (names, variants, rules,
billing, timers, services); a phone's process needs the clients only. Each
probe runs in a fresh interpreter (``python -P``: nothing from the working
directory), where whatever this test session imported before cannot hide an
import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from progressbench.transports.registry import REGISTRY, resolve

from progressbench.app.cell import CELL_ENV
from tests.helpers import UNIT
from tests.unit.specs import cell_plan

#: Server-side libraries: a process that only reads entries or drives phones must not import them.
SERVER_LIBRARIES = ("fastapi", "starlette", "uvicorn", "sse_starlette", "prometheus_client", "asyncpg")
#: ...and what the clients bring: reading entries imports none of these either.
CLIENT_LIBRARIES = ("httpx", "h11", "websockets", "realtime", "supabase", "playwright", "psycopg")

#: Reads every entry as ``check`` and ``report`` do, then lists the imported modules.
READ_ENTRIES = """
import json, sys
from progressbench.app.gate_rules import builtin_rules
from progressbench.transports.registry import REGISTRY, available, defaults, resolve, services_for

assert builtin_rules()
for name in available():
    transport, variant = resolve(name)
    transport.context_for(variant), transport.billing, transport.timers, transport.migrations
services_for(), defaults()
print(json.dumps(sorted(sys.modules)))
"""

#: Loads the session agent, makes a watcher of every transport and variant (as phones do), lists
#: the modules; then resolves every server and says what each one mounts.
DRIVE_PHONES_THEN_SERVE = """
import json, sys
import progressbench.loadtests.agent
from progressbench.core.config import Timing
from progressbench.transports.registry import REGISTRY, available, resolve
from progressbench.transports.types import ApiRoutes, ClientSettings, WorkerRoutes

URL = "http://127.0.0.1:9"
endpoints = {"api": URL, **{s.role: URL for t in REGISTRY.values() for s in t.services}}
watchers = {}
for name in available():
    transport, variant = resolve(name)
    watcher = transport.client(ClientSettings(endpoints=endpoints, timing=Timing(), variant=variant))
    watchers[name] = [callable(getattr(watcher, m, None)) for m in ("session", "probe")]
phone_modules = sorted(sys.modules)
servers = {
    t.name: [isinstance(t.server, ApiRoutes), isinstance(t.server, WorkerRoutes), t.server is t.server]
    for t in REGISTRY.values()
}
print(json.dumps({"watchers": watchers, "phone_modules": phone_modules, "servers": servers}))
"""


#: The session agent's warm-up, under the cell plan in the environment.
AGENT_WARM_UP = """
import json, sys
from progressbench.loadtests.agent import _import_clients

_import_clients()
print(json.dumps(sorted(sys.modules)))
"""


def _fresh(script: str, env: dict[str, str] | None = None) -> object:
    done = subprocess.run(
        [sys.executable, "-P", "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60 * UNIT,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _imported(modules: list[str], libraries: tuple[str, ...]) -> list[str]:
    return sorted({m.split(".")[0] for m in modules} & set(libraries))


def _face_modules() -> dict[str, set[str]]:
    """The modules the entries name for their servers and their clients."""
    return {
        "server": {t.server_ref.partition(":")[0] for t in REGISTRY.values()},
        "client": {t.client_ref.partition(":")[0] for t in REGISTRY.values()},
    }


def test_reading_every_entry_imports_no_server_and_no_client() -> None:
    """Rules, variants, billing, timers and services come from each transport's ``__init__`` alone."""
    modules = _fresh(READ_ENTRIES)
    assert isinstance(modules, list)
    assert _imported(modules, SERVER_LIBRARIES + CLIENT_LIBRARIES) == []
    faces = _face_modules()
    assert faces["server"] & set(modules) == set()
    assert faces["client"] & set(modules) == set()


def test_phones_import_their_clients_and_no_server_and_every_face_still_works() -> None:
    """The session agent makes a watcher of every transport and variant without importing a
    server; each server then resolves, mounts routes, and is made once."""
    found = _fresh(DRIVE_PHONES_THEN_SERVE)
    assert isinstance(found, dict)
    names = [name for t in REGISTRY.values() for name in t.names]
    assert found["watchers"] == {name: [True, True] for name in names}
    phone_modules = found["phone_modules"]
    assert _imported(phone_modules, SERVER_LIBRARIES) == []
    assert _face_modules()["server"] & set(phone_modules) == set()
    assert set(found["servers"]) == set(REGISTRY)
    for name, (api, worker, once) in found["servers"].items():
        assert (api or worker) and once, name


def test_a_cells_agent_imports_the_client_its_phones_drive_and_no_other(tmp_path: Path) -> None:
    """The agent imports its cell's client while Locust starts, so the first phone does not wait for it."""
    plan = cell_plan(tmp_path / "sessions.jsonl", "relay:ack-at-end", run_id="lazy")
    modules = _fresh(AGENT_WARM_UP, {CELL_ENV: plan.model_dump_json()})
    assert isinstance(modules, list)
    relay, _ = resolve("relay")
    others = _face_modules()["client"] - {relay.client_ref.partition(":")[0]}
    assert relay.client_ref.partition(":")[0] in modules
    assert others & set(modules) == set()
    assert _imported(modules, SERVER_LIBRARIES) == []
