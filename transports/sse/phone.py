"""``sse``'s client face: the Python watcher, or a browser page for an ``sse:browser`` cell's first phones.

The registry entry names :class:`ResumableClient` (``client_ref``); this
module is imported only by a process that drives ``sse`` phones.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

from progressbench.transports.sse import browser
from progressbench.transports.sse.browser import BrowserSseWatcher
from progressbench.transports.sse.client import ResumableSseWatcher
from progressbench.transports.types import ClientSettings, JobRequest, ProbeReport

from progressbench.core.events import ClientEvent


class ResumableClient:
    """``sse``'s client face: the Python watcher; for the first ``browser_phones`` phones of an
    ``sse:browser`` cell, a page in headless Chromium (:mod:`~progressbench.transports.sse.browser`)."""

    __slots__ = ("watcher",)

    def __init__(self, settings: ClientSettings) -> None:
        self.watcher: ResumableSseWatcher | BrowserSseWatcher
        if settings.variant == "browser" and browser.is_browser_phone(settings):
            self.watcher = BrowserSseWatcher(settings)
        else:
            self.watcher = ResumableSseWatcher(settings)

    def session(self, request: JobRequest) -> AsyncIterator[ClientEvent]:
        return self.watcher.session(request)

    async def probe(self, phone: str, victim_job_id: str, window_s: float) -> ProbeReport:
        return await self.watcher.probe(phone, victim_job_id, window_s)

    def prepared(self, phone: str) -> AbstractAsyncContextManager[None]:
        """A page loads before its session's clock starts; a Python phone has nothing to load."""
        if isinstance(self.watcher, BrowserSseWatcher):
            return self.watcher.prepared(phone)
        return contextlib.nullcontext()


__all__ = ["ResumableClient"]
