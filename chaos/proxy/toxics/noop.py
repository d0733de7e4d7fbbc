"""``noop``: passes everything unchanged (also what a stage runs when its toxicity roll misses)."""

from __future__ import annotations

from dataclasses import dataclass

from progressbench.chaos.proxy.stub import Stub


@dataclass(frozen=True, slots=True)
class NoopToxic:
    async def pipe(self, stub: Stub) -> None:
        while True:
            chunk = await stub.recv()
            if chunk is None:
                stub.close()
                return
            stub.send(chunk)


NOOP = NoopToxic()
