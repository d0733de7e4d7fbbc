"""Optional: the real ``@supabase/realtime-js`` (npm), unchanged, against the realtime server.

It connects with its default serializer, vsn 2.0.0, signs in through
``setAuth`` with a JWT from the project's sign-in service, subscribes to
``postgres_changes`` and sends one broadcast (a binary kind-3 frame) with ack.
Needs ``node`` and the package installed beside the phone script::

    npm install --prefix tests/integration/realtime_js --no-package-lock

Otherwise the test skips and says which part is missing. CI does not install
it (the npm registry is not a dependency of the test suite).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from progressbench.app.supervisor import Stack
from tests.helpers import UNIT, wait_until
from tests.integration.api_client import sign_in, user_id
from tests.integration.conftest import running_stack
from tests.integration.sse_helpers import wait_for_events
from tests.integration.test_realtime_vsn2 import ALL_SEQS, MARKER, _create

PHONE_DIR = Path(__file__).parent / "realtime_js"
PACKAGE = PHONE_DIR / "node_modules" / "@supabase" / "realtime-js" / "package.json"
NODE = shutil.which("node")


def _node_args() -> list[str]:
    """``node`` with the flag that gives Node 20/21 the global WebSocket realtime-js needs."""
    assert NODE is not None
    version = subprocess.run(
        [NODE, "--version"], capture_output=True, text=True, timeout=10 * UNIT, check=True
    )
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    return [NODE, "--experimental-websocket"] if major < 22 else [NODE]


pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not installed: the realtime-js phone needs it"),
    pytest.mark.skipif(
        not PACKAGE.exists(),
        reason="@supabase/realtime-js is not installed: npm install --prefix tests/integration/realtime_js "
        "--no-package-lock",
    ),
]


@pytest.fixture(scope="module")
def rt_stack(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("rtjs"), module_database_url, transports=("realtime",)
    ) as running:
        yield running


class Phone:
    """The node process's JSON lines, collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []

    async def read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(json.loads(raw))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["type"] == kind]

    def rows(self) -> list[dict[str, Any]]:
        return [line["record"] for line in self.of("row")]


@asynccontextmanager
async def phone(url: str, anon: str, token: str, channel: str) -> AsyncIterator[Phone]:
    proc = await asyncio.create_subprocess_exec(
        *_node_args(),
        str(PHONE_DIR / "phone.mjs"),
        url,
        anon,
        token,
        channel,
        cwd=PHONE_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    running = Phone(proc)
    reader = asyncio.create_task(running.read())
    try:
        yield running
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10 * UNIT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        await asyncio.wait_for(reader, 10 * UNIT)


async def test_realtime_js_with_its_default_vsn_2_gets_own_rows_in_order_and_none_of_another_users(
    rt_stack: Stack,
) -> None:
    """The npm client, unchanged and on vsn 2.0.0: SUBSCRIBED, "Subscribed to PostgreSQL", its
    binary broadcast acked, every row of its user's job in order and none of bob's."""
    api, rt = rt_stack.endpoints()["api"], rt_stack.endpoints()["realtime"]
    anon = (await _create(api, "warmup"))["anon_key"]
    token = (await asyncio.to_thread(sign_in, api, "judy"))["access_token"]
    url = f"{rt.replace('http', 'ws', 1)}/realtime/v1"
    async with phone(url, anon, token, "judy-jobs") as js:
        await wait_until(lambda: js.of("sent"), 20, "the subscription and the acked broadcast")
        assert js.of("vsn") == [{"type": "vsn", "vsn": "2.0.0"}]
        assert [s["status"] for s in js.of("status")] == ["SUBSCRIBED"]
        assert js.of("system")[0]["payload"]["message"] == "Subscribed to PostgreSQL"
        assert js.of("sent") == [{"type": "sent", "result": "ok"}]
        judy, bob = await asyncio.gather(_create(api, "judy"), _create(api, "bob"))
        await wait_until(
            lambda: any(r["job_id"] == judy["job_id"] and r["kind"] == "done" for r in js.rows()),
            20,
            "done row",
        )
        await wait_for_events(rt_stack.database_url, "bob", len(ALL_SEQS), timeout=20)
        marker = await _create(api, "judy", MARKER)
        await wait_until(lambda: any(r["job_id"] == marker["job_id"] for r in js.rows()), 20, "the marker")
        statuses = [s["status"] for s in js.of("status")]
    assert [r["seq"] for r in js.rows() if r["job_id"] == judy["job_id"]] == ALL_SEQS
    assert {r["owner"] for r in js.rows()} == {await asyncio.to_thread(user_id, api, "judy")}
    assert not any(r["job_id"] == bob["job_id"] for r in js.rows())
    assert statuses == ["SUBSCRIBED"], "no channel error, no rejoin while the job ran"
    assert [s["status"] for s in js.of("status")] == ["SUBSCRIBED", "CLOSED"], "left cleanly at the end"
