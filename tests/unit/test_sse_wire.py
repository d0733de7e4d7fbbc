"""The SSE wire helpers: Last-Event-ID parsing and the incremental event-stream parser."""

from __future__ import annotations

import pytest
from progressbench.transports.sse.wire import (
    BadLastEventId,
    Comment,
    Message,
    Retry,
    SSEParser,
    parse_last_event_id,
)


@pytest.mark.parametrize(("raw", "seq"), [(None, 0), ("", 0), ("  ", 0), ("0", 0), ("7", 7), (" 42 ", 42)])
def test_last_event_id_accepts_absent_empty_and_plain_integers(raw: str | None, seq: int) -> None:
    """Absent or blank means from the start; a plain decimal is the seq to continue after."""
    assert parse_last_event_id(raw) == seq


@pytest.mark.parametrize("raw", ["-1", "+3", "1.5", "12abc", "1 2", "x", "٣", "9" * 19])
def test_last_event_id_rejects_anything_else(raw: str) -> None:
    """Signs, floats, junk, non-ASCII digits and absurd lengths are a clear error, not a guess."""
    with pytest.raises(BadLastEventId, match="Last-Event-ID"):
        parse_last_event_id(raw)


def test_parser_yields_messages_comments_and_retry_across_chunk_boundaries() -> None:
    """Items come out only when complete, whatever the chunking and line endings."""
    stream = (
        b': hb 1\r\nretry: 150\r\n\r\nid: 3\nevent: step\ndata: {"a":\ndata: 1}\n\n:\rid: 4\r\ndata: x\r\r\n'
    )
    parser = SSEParser()
    items = [item for i in range(len(stream)) for item in parser.feed(stream[i : i + 1])]
    assert items == [
        Comment("hb 1"),
        Retry(150),
        Message(event="step", data='{"a":\n1}', id="3"),
        Comment(""),
        Message(event="message", data="x", id="4"),
    ]


def test_parser_ignores_blank_lines_and_unknown_fields() -> None:
    """Blank lines between events and fields it does not know produce nothing."""
    assert SSEParser().feed(b"\n\nfoo: bar\n\nretry: soon\n\n") == []
