"""Stop signals: the first interrupts, later ones are noted, and a teardown runs to its end."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from types import FrameType

import pytest

from progressbench.app.interrupts import STOP_SIGNALS, StopSignals, deferred, held, install, settle


class Delivered(Exception):
    """Raised by the test's own handler, to see when (and whether) a signal reached it."""


def _raise_delivered(signum: int, frame: FrameType | None) -> None:
    raise Delivered(signal.Signals(signum).name)


@pytest.fixture(autouse=True)
def restore_handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_sigterm_interrupts_like_ctrl_c_and_only_once() -> None:
    """SIGTERM raises KeyboardInterrupt; a second signal during the teardown is a note, not an abort."""
    notes: list[str] = []
    handler = install(notes.append)
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGTERM)
    signal.raise_signal(signal.SIGINT)
    signal.raise_signal(signal.SIGTERM)
    assert handler.received == 3
    assert len(notes) == 2 and notes[0].startswith("SIGINT: already stopping")


def test_held_records_signals_and_puts_the_handler_back() -> None:
    """Inside held() a stop signal is data for the caller; outside, the old handler acts again."""
    signal.signal(signal.SIGTERM, _raise_delivered)
    after: list[str] = []
    with held() as signals:
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGINT)
        after.append("block ran on")
    assert after == ["block ran on"]
    assert signals.received == [signal.SIGTERM, signal.SIGINT]
    assert signal.getsignal(signal.SIGTERM) is _raise_delivered
    with pytest.raises(Delivered):
        signal.raise_signal(signal.SIGTERM)


def test_deferred_finishes_the_block_then_delivers_the_first_signal() -> None:
    """A signal landing mid-teardown waits for the teardown, then reaches the handler it was meant for."""
    signal.signal(signal.SIGTERM, _raise_delivered)
    steps: list[str] = []
    with pytest.raises(Delivered, match="SIGTERM"):
        with deferred():
            steps.append("stop services")
            signal.raise_signal(signal.SIGTERM)
            steps.append("stop postgres")
    assert steps == ["stop services", "stop postgres"]


def test_deferred_delivers_even_when_the_block_fails() -> None:
    """A held signal is never lost, not even behind an error of the block."""
    signal.signal(signal.SIGTERM, _raise_delivered)
    with pytest.raises(Delivered) as caught:
        with deferred():
            signal.raise_signal(signal.SIGTERM)
            raise RuntimeError("teardown step failed")
    assert isinstance(caught.value.__context__, RuntimeError)


def test_deferred_after_the_cli_handler_counts_as_its_first_signal() -> None:
    """The CLI's first-signal rule still holds for a signal that was deferred."""
    handler = StopSignals(lambda note: None)
    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)
    with pytest.raises(KeyboardInterrupt), deferred():
        signal.raise_signal(signal.SIGINT)
    assert handler.received == 1


def test_outside_the_main_thread_nothing_is_touched() -> None:
    """Handlers belong to the main thread: elsewhere held() is a no-op instead of a ValueError."""
    signal.signal(signal.SIGTERM, _raise_delivered)
    errors: list[BaseException] = []

    def body() -> None:
        try:
            with deferred(), held() as signals:
                assert signals.received == []
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive() and errors == []
    assert signal.getsignal(signal.SIGTERM) is _raise_delivered


def test_after_settle_a_late_signal_cannot_turn_the_exit_code_into_a_kill() -> None:
    """Once the command is done, stop signals are ignored (Python would restore SIGTERM's default)."""
    install(lambda note: None)
    settle()
    signal.raise_signal(signal.SIGTERM)
    signal.raise_signal(signal.SIGINT)
    assert all(signal.getsignal(sig) is signal.SIG_IGN for sig in STOP_SIGNALS)
