"""``bandwidth``: at most ``rate`` KB/s (KB = 1000 bytes) per connection and direction.

Port of Toxiproxy's algorithm: each chunk costs ``len / rate`` ms of sleep,
owed time carries over (so timer slop is paid back), and chunks larger than
``rate * 100`` bytes go out in ``rate * 100``-byte slices every 100 ms.
``rate <= 0`` stalls the stream completely, as in Toxiproxy 2.12 (the
"no limit" branch there is unreachable).
"""

from __future__ import annotations

from dataclasses import dataclass

from progressbench.chaos.proxy.stub import Stub
from progressbench.chaos.proxy.types import Interrupted

SLICE_SECONDS = 0.1


@dataclass(frozen=True, slots=True)
class BandwidthToxic:
    rate: int = 0

    async def pipe(self, stub: Stub) -> None:
        owed = 0.0
        while True:
            chunk = await stub.recv()
            if chunk is None:
                stub.close()
                return
            data = chunk.data
            if self.rate > 0:
                owed += len(data) / (self.rate * 1000)
            else:
                owed = 0.0
            slice_size = max(self.rate * 100, 0)
            while len(data) > slice_size:
                try:
                    await stub.sleep(SLICE_SECONDS)
                except Interrupted:
                    stub.send(chunk.with_data(data))
                    raise
                stub.send(chunk.with_data(data[:slice_size]))
                data = data[slice_size:]
                owed -= SLICE_SECONDS
            started = stub.clock.now()
            try:
                await stub.sleep(owed)
            except Interrupted:
                stub.send(chunk.with_data(data))
                raise
            owed -= stub.clock.now() - started
            stub.send(chunk.with_data(data))
