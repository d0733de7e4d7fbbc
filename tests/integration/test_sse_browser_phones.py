"""``sse:browser`` phones are pages in headless Chromium: a plain ``EventSource`` through a proxy.

The page reaches the API cross-origin (its origin is
``PHONE_PAGE_ORIGIN``), so these also pin that the stack's CORS and the
``?token=`` door work for the real client, not only for httpx. Skipped,
with the reason, where Chromium or playwright is missing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest
from progressbench.transports.sse import browser
from progressbench.transports.sse.browser import phone_page

from progressbench.app.session import run_session
from progressbench.app.supervisor import Stack
from progressbench.core import identity
from progressbench.core.config import PHONE_PAGE_ORIGIN, JobShape
from tests.helpers import UNIT
from tests.integration.api_client import auth, sign_in
from tests.integration.conftest import running_stack
from tests.integration.sse_helpers import Forwarder, progress_seqs, score, session_spec, wait_for_events

MISSING = browser.missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

SHAPE = JobShape(step_seconds_min=6.0, step_seconds_max=6.0)
ALL_SEQS = list(range(1, SHAPE.total_steps + 2))
BROWSER = {"phone_index": "0", "browser_phones": "1"}


@pytest.fixture(scope="module")
def page_stack(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("pages"),
        module_database_url,
        transports=("sse",),
        cors_origins=(PHONE_PAGE_ORIGIN,),
    ) as running:
        yield running


async def test_a_browser_phone_resumes_across_a_cut_with_last_event_id(page_stack: Stack) -> None:
    """Chromium's EventSource, cut mid-job, reconnects on its own with ``Last-Event-ID``: every
    event once, in order; each disconnect is followed by a reconnect and a replayed-complete resume."""
    timing = page_stack.settings.timing
    forwarder = Forwarder.to_url(page_stack.endpoints()["api"])
    url = await forwarder.start()
    owner = f"page-cut-{uuid.uuid4().hex[:6]}"
    spec = session_spec("sse:browser", owner, url, timing, SHAPE, options=BROWSER)
    task = asyncio.create_task(run_session(spec))
    try:
        await wait_for_events(page_stack.database_url, owner, 3, timeout=90)
        forwarder.cut(outage_s=1.0, server_learns_after_s=1.0)
        record = await asyncio.wait_for(task, timeout=90 * UNIT)
    finally:
        await forwarder.close()
    assert record.outcome == "terminal", record.error
    assert any(o.type == "finding" and o.kind == "browser-page" for o in record.observations)
    assert progress_seqs(record) == ALL_SEQS
    row = score(page_stack.database_url, record)
    assert (row.lost, row.duplicates, row.out_of_order) == (0, 0, 0)
    # one cut; on a loaded machine the platform's request timeout may close the stream once more
    assert row.disconnects >= 1 and row.reconnects == row.disconnects == row.resumes
    assert row.resume_replayed_complete == row.resumes


async def test_a_page_signed_in_by_cookie_reads_its_stream_cross_origin(page_stack: Stack) -> None:
    """A page signs in with ``fetch`` (credentials included), gets the HttpOnly session cookie,
    and an ``EventSource`` with ``withCredentials`` and no token in the URL streams its job;
    a page of the same user without the cookie gets an error and no event."""
    api = page_stack.endpoints()["api"]
    owner = f"page-cookie-{uuid.uuid4().hex[:6]}"
    account = sign_in(api, owner)
    body = {"seed": 5, "time_scale": page_stack.settings.timing.time_scale, "shape": SHAPE.model_dump()}
    created = httpx.post(f"{api}/sse/jobs", json=body, headers=auth(api, owner), timeout=10 * UNIT).json()
    for with_cookie in (True, False):
        reports: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        async with phone_page(reports) as (page, _version):
            if with_cookie:
                status = await page.evaluate(
                    """async ([api, email, password]) => {
                        const r = await fetch(api + "/auth/v1/token?grant_type=password", {
                          method: "POST", credentials: "include",
                          headers: {"content-type": "application/json"},
                          body: JSON.stringify({email, password})});
                        return [r.status, document.cookie];
                    }""",
                    [api, account["user"]["email"], "pw-" + owner * 2],
                )
                assert status == [200, ""], "signed in; the cookie is HttpOnly, hidden from scripts"
                cookies = await page.context.cookies(api)
                assert [c["name"] for c in cookies] == [identity.SESSION_COOKIE]
            await page.evaluate(
                "([url, creds]) => window.watch(url, creds)", [api + created["events_href"], True]
            )
            seen: list[int] = []
            while True:
                report = await asyncio.wait_for(reports.get(), timeout=60 * UNIT)
                if report["type"] == "event":
                    seen.append(int(str(report["id"])))
                    if report["kind"] == "done":
                        break
                elif report["type"] == "error" and not with_cookie:
                    break
        if with_cookie:
            assert seen == ALL_SEQS
        else:
            assert seen == [] and report["readyState"] == 2, "refused (401): EventSource gave up"
