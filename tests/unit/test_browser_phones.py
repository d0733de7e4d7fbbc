"""``sse:browser`` without a browser: what is missing is said, and the page's reports are booked.

The pages themselves run in tests/integration/test_sse_browser_phones.py
(skipped where Chromium is missing); here is what needs no browser.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from progressbench.transports.registry import resolve
from progressbench.transports.sse import browser
from progressbench.transports.sse.browser import PAGE_HTML, BrowserSseWatcher
from progressbench.transports.sse.client import ResumableSseWatcher
from progressbench.transports.sse.phone import ResumableClient
from progressbench.transports.types import ClientSettings

from progressbench.core.config import Timing
from progressbench.core.errors import TransportError
from progressbench.core.events import Connected, Disconnected, Progress, Reconnected, Resumed
from progressbench.core.reconnect import LAST_EVENT_ID, Reconnector


def test_missing_chromium_is_named_with_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With no Chromium on PATH the sentence names it and the install command; sse:browser
    needs nothing when no phone is a page, and plain sse never needs a browser."""
    monkeypatch.setenv("PATH", str(tmp_path))
    problem = browser.missing()
    assert problem is not None
    assert "Chromium executable on PATH" in problem and "apt-get install chromium" in problem
    transport, _ = resolve("sse:browser")
    assert transport.missing("browser", {"browser_phones": "2"}) == problem
    assert transport.missing("browser", {"browser_phones": "0"}) is None
    assert transport.missing(None, {"browser_phones": "2"}) is None


def _event(seq: int, kind: str = "step") -> dict[str, object]:
    data = {"job_id": "j", "seq": seq, "kind": kind, "message": f"m{seq}"}
    return {"type": "event", "kind": kind, "id": str(seq), "data": json.dumps(data)}


def test_page_reports_become_the_watchers_events() -> None:
    """open → Connected; a retrying error → one Disconnected; the next open → Reconnected +
    Resumed after the highest id seen; every event a Progress receipt, repeats included."""
    state = Reconnector(LAST_EVENT_ID)
    book = BrowserSseWatcher._book
    seen = [
        *book(state, {"type": "open"}),
        *book(state, _event(1)),
        *book(state, _event(2)),
        *book(state, {"type": "error", "readyState": 0}),
        *book(state, {"type": "error", "readyState": 0}),
        *book(state, {"type": "open"}),
        *book(state, _event(2)),
        *book(state, _event(3, "done")),
    ]
    assert [type(e) for e in seen] == [
        Connected,
        Progress,
        Progress,
        Disconnected,
        Reconnected,
        Resumed,
        Progress,
        Progress,
    ]
    assert seen[4] == Reconnected(attempt=2) and seen[5] == Resumed(from_seq=2)
    assert state.final is not None and state.final.seq == 3


def test_an_eventsource_that_gave_up_ends_the_session() -> None:
    """readyState CLOSED after an error (a non-200 answer): no retry will come, say so."""
    with pytest.raises(TransportError, match="closed for good"):
        BrowserSseWatcher._book(Reconnector(LAST_EVENT_ID), {"type": "error", "readyState": 2})


def test_the_page_listens_to_every_event_kind_the_server_names() -> None:
    """Named SSE events reach only listeners of their name: the page must list each kind."""
    for kind in ("step", "done", "failed"):
        assert f'"{kind}"' in PAGE_HTML


def test_only_the_first_browser_phones_of_a_cell_are_pages() -> None:
    """``browser_phones`` picks the pages by phone index; the rest (and the canary, which has no
    index) run the Python watcher; plain ``sse`` never runs a page."""
    transport, _ = resolve("sse:browser")
    assert transport.client is ResumableClient

    def client(variant: str | None, **options: str) -> object:
        settings = ClientSettings(endpoints={}, timing=Timing(), variant=variant, options=options)
        return ResumableClient(settings).watcher

    assert isinstance(client("browser", phone_index="1", browser_phones="2"), BrowserSseWatcher)
    assert isinstance(client("browser", phone_index="2", browser_phones="2"), ResumableSseWatcher)
    assert isinstance(client("browser", browser_phones="2"), ResumableSseWatcher)
    assert isinstance(client(None, phone_index="0", browser_phones="2"), ResumableSseWatcher)
