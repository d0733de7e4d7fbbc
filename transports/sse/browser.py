"""``sse:browser`` phones: a page in headless Chromium whose plain ``EventSource`` watches the job.

The Python ``sse`` watcher is a careful client (an idle watchdog, doubling
back-off). A web app has none of that: it has ``new EventSource(url)``, which
cannot send headers, reconnects on its own after the server's ``retry:``,
sends ``Last-Event-ID`` itself, sees no heartbeat comments and has no
watchdog. Only the real thing shows what that costs under a fault, so these
phones are pages in the system's Chromium (Debian's ``chromium``), driven
through Playwright's Python API pointed at that executable (no browser
download).

One phone, one session:

1. the app's own side (sign-in and the job's POST, with the app's retries)
   runs in Python as for every phone — :func:`~progressbench.transports.http.submit_job`;
2. the page (origin :data:`~progressbench.core.config.PHONE_PAGE_ORIGIN`,
   served from inside Chromium by a route, so nothing listens there) opens
   ``new EventSource(events_href + "?token=<job read token>")`` through the
   cell's chaos proxy: cross-origin, so the API answers CORS for that origin;
3. every ``open``, named event (``step``/``done``/``failed``) and ``error``
   the page sees is reported back through a binding and booked on the same
   :class:`~progressbench.core.reconnect.Reconnector` the Python watchers use
   (``Disconnected`` … ``Reconnected`` + ``Resumed(from_seq)`` and every
   receipt, duplicates included). The page closes its ``EventSource`` on the
   terminal event, as an app does. An ``EventSource`` that gave up for good
   (``readyState`` CLOSED: a non-200 answer) ends the session with an error.

Each phone gets its own browser context (cookies and cache of its own); one
Chromium per agent process is shared by its pages and closed when the last
page closes.

Option ``browser_phones`` (a number, from ``RunConfig.browser_phones``)
says how many phones of an ``sse:browser`` cell are pages: phones whose
``phone_index`` option is below it. The others run the Python ``sse``
watcher, so a cell can mix a few browsers with many phones.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import shutil
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from progressbench.transports.http import phone_client, submit_job
from progressbench.transports.sse.client import ResumableSseWatcher
from progressbench.transports.types import ClientSettings, JobRequest, ProbeReport

from progressbench.core.config import PHONE_PAGE_ORIGIN
from progressbench.core.errors import TransportError
from progressbench.core.events import TERMINAL, ClientEvent, Finding, Progress, Submitted
from progressbench.core.reconnect import LAST_EVENT_ID, Reconnector

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, Playwright

#: Executable names of a system Chromium, in the order they are looked for on ``PATH``.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: How many phones of a cell are pages when the option is absent.
DEFAULT_BROWSER_PHONES = 4
#: Launching Chromium on a loaded small machine takes seconds; past this it is broken (real s).
LAUNCH_TIMEOUT_S = 90.0
PAGE_URL = f"{PHONE_PAGE_ORIGIN}/phone.html"
_BINDING = "progressbenchReport"

#: The whole app as far as progress goes: an EventSource and a listener per event kind.
PAGE_HTML = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>progressbench phone</title></head>
<body><p id="status">idle</p><script>
const KINDS = {json.dumps(sorted(("step", *TERMINAL)))};
const TERMINAL = {json.dumps(sorted(TERMINAL))};
window.watch = (url, withCredentials) => {{
  const report = (item) => window.{_BINDING}(item);
  const source = new EventSource(url, {{ withCredentials }});
  const status = document.getElementById("status");
  source.onopen = () => {{ status.textContent = "open"; report({{ type: "open" }}); }};
  source.onerror = () => report({{ type: "error", readyState: source.readyState }});
  for (const kind of KINDS) {{
    source.addEventListener(kind, (event) => {{
      status.textContent = event.data;
      if (TERMINAL.includes(kind)) source.close();
      report({{ type: "event", kind, id: event.lastEventId, data: event.data }});
    }});
  }}
}};
</script></body></html>
"""


def chromium_path() -> str | None:
    """The system Chromium's executable on ``PATH``, if any."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def missing() -> str | None:
    """What this machine lacks for browser phones, as one sentence for the user; None: all there."""
    lacks = []
    if importlib.util.find_spec("playwright") is None:
        lacks.append("the Python package playwright (pip install 'progressbench[browser]')")
    if chromium_path() is None:
        lacks.append(
            f"a Chromium executable on PATH ({', '.join(CHROMIUM_NAMES)}; Debian/Ubuntu: "
            "apt-get install chromium)"
        )
    if not lacks:
        return None
    return (
        "browser phones (sse:browser) need "
        + " and ".join(lacks)
        + "; the Playwright browser download is not used (--browser-phones 0 runs none)"
    )


def browser_phones(settings: ClientSettings) -> int:
    raw = settings.options.get("browser_phones", str(DEFAULT_BROWSER_PHONES))
    try:
        return max(int(raw), 0)
    except ValueError:
        raise TransportError(f"option browser_phones: expected a number, got {raw!r}") from None


def is_browser_phone(settings: ClientSettings) -> bool:
    """This phone is a page: its index in the cell is below ``browser_phones`` (no index: a probe)."""
    index = settings.options.get("phone_index")
    return index is not None and index.isdigit() and int(index) < browser_phones(settings)


class _Chromium:
    """One Chromium per event loop, shared by the pages of that loop, closed with the last one."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0
        self.playwright: Playwright | None = None
        self.browser: Browser | None = None

    async def acquire(self) -> Browser:
        async with self.lock:
            if self.browser is None or not self.browser.is_connected():
                await self._close()
                self.browser = await self._launch()
            self.users += 1
            return self.browser

    async def release(self) -> None:
        async with self.lock:
            self.users -= 1
            if self.users <= 0:
                self.users = 0
                await self._close()

    async def _launch(self) -> Browser:
        problem = missing()
        if problem is not None:
            raise TransportError(problem)
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import async_playwright

        self.playwright = await async_playwright().start()
        try:
            return await self.playwright.chromium.launch(
                executable_path=chromium_path(),
                headless=True,
                timeout=LAUNCH_TIMEOUT_S * 1000,
                args=[
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    # The page is served by a route, so Chromium knows no address for it and takes
                    # it for a public site reaching into loopback, which Local Network Access
                    # blocks. In production both are public; here both are 127.0.0.1.
                    "--disable-features=LocalNetworkAccessChecks,PrivateNetworkAccessChecks",
                ],
            )
        except PlaywrightError as exc:
            await self._close()
            raise TransportError(f"Chromium did not start: {str(exc).splitlines()[0]}") from None

    async def _close(self) -> None:
        browser, playwright = self.browser, self.playwright
        self.browser = self.playwright = None
        with contextlib.suppress(Exception):
            if browser is not None:
                await browser.close()
        with contextlib.suppress(Exception):
            if playwright is not None:
                await playwright.stop()


_CHROMIUMS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Chromium] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def phone_page(reports: asyncio.Queue[dict[str, Any]]) -> AsyncIterator[tuple[Page, str]]:
    """A fresh page of the phone app (its own context) reporting into ``reports``, and Chromium's version."""
    loop = asyncio.get_running_loop()
    chromium = _CHROMIUMS.setdefault(loop, _Chromium())
    browser = await chromium.acquire()
    try:
        context = await browser.new_context()
        try:
            await context.route(
                f"{PHONE_PAGE_ORIGIN}/**",
                lambda route: route.fulfill(status=200, content_type="text/html", body=PAGE_HTML),
            )
            await context.expose_function(_BINDING, reports.put_nowait)
            page = await context.new_page()
            page.on("crash", lambda _page: reports.put_nowait({"type": "crash"}))
            await page.goto(PAGE_URL)
            yield page, browser.version
        finally:
            with contextlib.suppress(Exception):
                await context.close()
    finally:
        await chromium.release()


def stream_url(api: str, events_href: str, token: str) -> str:
    """What the page opens: the job's stream with its read token in the query (no headers possible)."""
    return f"{api.rstrip('/')}{events_href}?{urlencode({'token': token})}"


class BrowserSseWatcher:
    """An ``sse:browser`` phone: the app's POST in Python, the watch in a real ``EventSource``.

    :meth:`prepared` loads the page before the session's clock starts (the
    session driver enters it, as it signs the phone in): an app is open
    before its user taps, and a browser's start on a loaded machine is not
    the job's time. A session entered without it loads the page itself.
    """

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self.python = ResumableSseWatcher(settings)  # its back-off paces the app's own retries
        self.reports: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._page: Page | None = None
        self._version = ""

    async def probe(self, phone: str, victim_job_id: str, window_s: float) -> ProbeReport:
        return await self.python.probe(phone, victim_job_id, window_s)

    @contextlib.asynccontextmanager
    async def prepared(self, phone: str = "") -> AsyncIterator[None]:
        """The phone's page, loaded and waiting for its job, for as long as this is entered
        (the page signs nobody in: the phone's token reaches it with the job)."""
        if self._page is not None:
            yield
            return
        async with phone_page(self.reports) as (page, version):
            self._page, self._version = page, version
            try:
                yield
            finally:
                self._page = None

    async def session(self, request: JobRequest) -> AsyncIterator[ClientEvent]:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.prepared())
            assert self._page is not None
            async with contextlib.aclosing(self._watch(self._page, request)) as events:
                async for event in events:
                    yield event

    async def _watch(self, page: Page, request: JobRequest) -> AsyncGenerator[ClientEvent, None]:
        api = self.settings.endpoints["api"]
        yield Finding(name="browser-page", detail=f"Chromium {self._version} EventSource")
        async with phone_client(api, self.settings.timing) as http:
            created = await submit_job(
                http,
                "/sse/jobs",
                request.body(),
                self.python.backoff.delay,
                phone=request.owner,
                timing=self.settings.timing,
            )
        for finding in created.findings():
            yield finding
        yield Submitted(job_id=created["job_id"], token=created["token"])
        url = stream_url(api, created["events_href"], created["token"])
        await page.evaluate("([url, creds]) => window.watch(url, creds)", [url, False])
        state = Reconnector(LAST_EVENT_ID)
        while True:
            report = await self.reports.get()
            for event in self._book(state, report):
                yield event
                if event is state.final:
                    return

    @staticmethod
    def _book(state: Reconnector, report: dict[str, Any]) -> list[ClientEvent]:
        """One report of the page, as the events a watcher yields (raises when the watch is over)."""
        now = time.monotonic()
        kind = report.get("type")
        if kind == "open":
            return state.up(now)
        if kind == "event":
            body = json.loads(report["data"])
            progress = Progress(
                job_id=body["job_id"], seq=int(body["seq"]), kind=body["kind"], message=body["message"]
            )
            return [state.receive(progress).event]
        if kind == "error" and report.get("readyState") == 0:  # CONNECTING: it retries on its own
            return state.dropped("eventsource error", now)
        if kind == "error":
            raise TransportError(
                "EventSource closed for good (the stream answered other than 200 text/event-stream)"
            )
        raise TransportError("the phone's page crashed")
