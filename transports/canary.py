"""Building blocks of the cross-tenant canary, shared by the transports' ``probe`` methods.

The canary is a phone that signed in (its own account, owning no job) and
tries to read a job of another phone through the transport's client face.
Each transport's watcher composes these into its ``probe``; what counts as a
leak is the same everywhere: any event of a job the canary does not own.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from progressbench.core.contract import ProbeReport

#: One status/snapshot read is short; streams and sockets listen for the caller's window.
MAX_BODY_EVENTS = 10_000


def foreign_in(events: object, own: frozenset[str] = frozenset()) -> int:
    """How many items of a JSON ``events`` list belong to a job not in ``own``."""
    if not isinstance(events, list):
        return 0
    count = 0
    for item in events[:MAX_BODY_EVENTS]:
        if isinstance(item, dict) and str(item.get("job_id", "")) not in own:
            count += 1
    return count


def foreign_in_body(response: httpx.Response, victim: str) -> int:
    """Events of other jobs in a JSON answer: its ``events`` list, or the job's own state."""
    try:
        body: Any = response.json()
    except ValueError:
        return 0
    if not isinstance(body, dict):
        return 0
    found = foreign_in(body.get("events"))
    if not found and str(body.get("job_id", "")) == victim:
        found = 1  # the job's state itself (status, step) is the victim's data
    return found


async def probe_get(
    http: httpx.AsyncClient, report: ProbeReport, name: str, path: str, victim: str, token: str | None
) -> None:
    """GET a read URL of the victim's job with ``token`` (None: no token); count what it shows."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        response = await http.get(path, headers=headers)
    except httpx.HTTPError as exc:
        report.add(name, f"no answer ({type(exc).__name__})")
        return
    foreign = foreign_in_body(response, victim) if response.status_code == 200 else 0
    report.add(name, f"http {response.status_code}", foreign)


async def probe_sse(
    http: httpx.AsyncClient,
    report: ProbeReport,
    name: str,
    method: str,
    path: str,
    window_s: float,
    headers: dict[str, str],
    json_body: dict[str, object] | None = None,
    own: frozenset[str] = frozenset(),
) -> None:
    """Open an event stream at ``path``; count ``data:`` lines of jobs not in ``own`` for ``window_s``."""
    foreign = 0
    outcome = "refused"
    try:
        async with asyncio.timeout(window_s):
            async with http.stream(method, path, headers=headers, json=json_body) as response:
                outcome = f"http {response.status_code}"
                if response.status_code == 200:
                    async for line in response.aiter_lines():
                        if not line.startswith("data:"):
                            continue
                        try:
                            data = json.loads(line[5:].strip())
                        except ValueError:
                            continue
                        if isinstance(data, dict) and "seq" in data and str(data.get("job_id")) not in own:
                            foreign += 1
    except TimeoutError:
        outcome += f", listened {window_s:.1f}s"
    except httpx.HTTPError as exc:
        outcome = f"{outcome}; {type(exc).__name__}"
    report.add(name, outcome, foreign)
