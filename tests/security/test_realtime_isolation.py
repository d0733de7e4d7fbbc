"""Probe 3 of issue 13: another tenant's rows through an unfiltered realtime subscription.

Before: create any job as ``owner: "bob"`` (the body chose the owner), join
``postgres_changes`` on ``job_events`` unfiltered with the token it returned
→ every row of all of bob's jobs arrived. Now the owner is the verified user,
so no token a stranger can get carries bob's ``sub``, and RLS delivers none
of bob's rows to anyone else.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from realtime import AsyncRealtimeClient
from realtime.types import RealtimePostgresChangesListenEvent

from progressbench.app.supervisor import Stack
from tests.helpers import UNIT, wait_until
from tests.security.conftest import account, create

SHORT = {"waves": [{"label": "Scanning", "items": 3}], "step_seconds_min": 0.2, "step_seconds_max": 0.2}


async def test_no_stranger_receives_another_users_rows(full_stack: Stack) -> None:
    """Mallory subscribes unfiltered with every token she can get (one naming bob as owner if the
    API gives one, her access token, her own job's); none of bob's rows reaches her."""
    api, rt = full_stack.endpoints()["api"], full_stack.endpoints()["realtime"]
    bob, mallory = account(api, "bob"), account(api, "mallory")
    tokens: dict[str, str] = {}
    posing = await asyncio.to_thread(create, api, "/realtime/jobs", mallory, owner=bob.owner, shape=SHORT)
    anon = posing.json().get("anon_key") if posing.status_code == 202 else None
    if posing.status_code == 202:
        tokens["posing-as-bob"] = posing.json()["token"]
    if mallory.token:
        tokens["access"] = mallory.token
        own = await asyncio.to_thread(create, api, "/realtime/jobs", mallory, shape=SHORT)
        assert own.status_code == 202, own.text
        tokens["own-job"], anon = own.json()["token"], own.json()["anon_key"]
    assert tokens and anon

    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in tokens}
    clients: list[AsyncRealtimeClient] = []
    try:
        for name, token in tokens.items():
            client = AsyncRealtimeClient(f"{rt}/realtime/v1", token=anon)
            clients.append(client)
            await client.set_auth(token)
            channel = client.channel(f"all-{name}")
            channel.on_postgres_changes(
                RealtimePostgresChangesListenEvent.Insert,
                lambda payload, sink=rows[name]: sink.append(payload["data"].get("record") or {}),
                table="job_events",
                schema="public",
            )
            live = asyncio.Event()
            channel.on_system(lambda _payload, flag=live: flag.set())
            await channel.subscribe()
            await asyncio.wait_for(live.wait(), 10 * UNIT)

        victim = await asyncio.to_thread(create, api, "/realtime/jobs", bob, shape=SHORT)
        assert victim.status_code == 202, victim.text
        bob_job = victim.json()["job_id"]
        marker_job = ""
        if mallory.token:
            # Rows arrive in commit order: once a row committed after bob's last one reaches
            # mallory, every row of bob's that was going to (wrongly) reach her has.
            await wait_until(lambda: _job_done(full_stack, bob_job), 30, "bob's job to finish", interval=0.2)
            marker = await asyncio.to_thread(create, api, "/realtime/jobs", mallory, shape=SHORT)
            marker_job = marker.json()["job_id"]

        def settled() -> bool:
            seen = [r for sink in rows.values() for r in sink]
            return any(r.get("job_id") == bob_job for r in seen) or any(
                r.get("job_id") == marker_job and r.get("kind") == "done" for r in seen
            )

        await wait_until(settled, 30, "bob's rows or mallory's later marker")
    finally:
        for client in clients:
            await client.close()
    leaked = {name: sum(r.get("job_id") == bob_job for r in sink) for name, sink in rows.items()}
    assert not any(leaked.values()), f"bob's rows reached mallory: {leaked}"
    assert posing.status_code == 422, "a body may not name the owner"


def _job_done(stack: Stack, job_id: str) -> bool:
    with psycopg.connect(stack.database_url) as conn:
        row = conn.execute("SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone()
    return row is not None and row[0] == "done"
