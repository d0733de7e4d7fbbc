"""Chaos proxy overhead with no toxics: added round-trip latency and single-stream throughput.

    python benchmarks/bench_proxy.py [--samples 20000] [--mb 1024] [--pin]

Three processes on 127.0.0.1: a small asyncio upstream (echo on one port,
a byte blaster on another), the chaos proxy (``python -m progressbench.chaos.proxy``), and
this script as a blocking-socket client. Each measurement runs once direct
and once through a proxy created with :mod:`progressbench.chaos.client`:

* RTT: ``--samples`` ping-pongs of 64 bytes each way (after 1,000 warm-up
  ones), direct and proxied interleaved in blocks of 500; p50/p99 of each
  and the proxy's added p50/p99 (difference of the percentiles).
* Throughput: the blaster sends ``--mb`` MiB downstream as fast as it can;
  MB/s from the first byte to EOF (stopped early after 15 s).

``--pin`` puts the upstream and proxy on CPU 0 and the client on CPU 1
(Linux). Prints numbers; asserts nothing. Bounded to well under 60 s.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from progressbench.chaos.client import ProxyControl  # noqa: E402

from progressbench.app.bench_figures import record  # noqa: E402

UPSTREAM = r"""
import asyncio, sys

class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
    def data_received(self, data):
        self.transport.write(data)

class Blast(asyncio.Protocol):
    CHUNK = b"\0" * (1 << 20)
    def connection_made(self, transport):
        self.transport = transport
        self.left = 0
        self.paused = False
    def data_received(self, data):
        self.left = int(data.split(b"\n")[0]) << 20
        self.pump()
    def pause_writing(self):
        self.paused = True
    def resume_writing(self):
        self.paused = False
        self.pump()
    def pump(self):
        while self.left > 0 and not self.paused:
            n = min(self.left, len(self.CHUNK))
            self.transport.write(self.CHUNK[:n])
            self.left -= n
        if self.left <= 0 and not self.transport.is_closing():
            # Not from inside resume_writing: CPython 3.11 would report the loss twice.
            asyncio.get_running_loop().call_soon(self.transport.close)
    def connection_lost(self, exc):
        self.left = 0

async def main():
    loop = asyncio.get_running_loop()
    echo = await loop.create_server(Echo, "127.0.0.1", 0)
    blast = await loop.create_server(Blast, "127.0.0.1", 0)
    print(echo.sockets[0].getsockname()[1], blast.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def _pin(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if cpu >= 0 else []


def start(cmd: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def _ping(sock: socket.socket, payload: bytes) -> float:
    started = time.perf_counter()
    sock.sendall(payload)
    got = 0
    while got < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed during the RTT test")
        got += len(chunk)
    return time.perf_counter() - started


def rtt_samples(
    direct: tuple[str, int], proxied: tuple[str, int], samples: int
) -> tuple[list[float], list[float]]:
    """Interleaved blocks of 500 pings, so load changes hit both paths alike."""
    payload = b"p" * 64
    times: tuple[list[float], list[float]] = ([], [])
    with socket.create_connection(direct) as a, socket.create_connection(proxied) as b:
        socks = (a, b)
        for sock in socks:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(1000):
                _ping(sock, payload)
        while len(times[1]) < samples:
            for sock, out in zip(socks, times, strict=True):
                out.extend(_ping(sock, payload) for _ in range(min(500, samples - len(out))))
    return times


def throughput(address: tuple[str, int], mebibytes: int, limit_s: float = 15.0) -> float:
    with socket.create_connection(address) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.sendall(f"{mebibytes}\n".encode())
        buffer = bytearray(1 << 20)
        view = memoryview(buffer)
        total = sock.recv_into(view)
        started = time.perf_counter()
        while n := sock.recv_into(view):
            total += n
            if time.perf_counter() - started > limit_s:
                break
        elapsed = time.perf_counter() - started
    return total / elapsed / 1e6


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--mb", type=int, default=1024, help="MiB per throughput run")
    parser.add_argument("--pin", action="store_true", help="servers on CPU 0, client on CPU 1")
    args = parser.parse_args()
    if args.pin:
        os.sched_setaffinity(0, {1})
    server_cpu = 0 if args.pin else -1

    upstream = start([*_pin(server_cpu), sys.executable, "-c", UPSTREAM])
    proxy = start([*_pin(server_cpu), sys.executable, "-m", "progressbench.chaos.proxy", "--port", "0"])
    try:
        assert upstream.stdout is not None and proxy.stdout is not None
        echo_port, blast_port = map(int, upstream.stdout.readline().split())
        url = proxy.stdout.readline().strip().rsplit(" ", 1)[-1]
        control = ProxyControl(url)
        echo = control.create_proxy("bench-echo", f"127.0.0.1:{echo_port}")
        blast = control.create_proxy("bench-blast", f"127.0.0.1:{blast_port}")

        print(f"chaos proxy overhead, no toxics ({os.cpu_count()} CPUs, pinned={args.pin})")
        direct, proxied = rtt_samples(("127.0.0.1", echo_port), echo.address, args.samples)
        d50, d99 = percentile(direct, 50), percentile(direct, 99)
        p50, p99 = percentile(proxied, 50), percentile(proxied, 99)
        print(f"RTT 64 B x {args.samples}:  direct p50 {d50 * 1e6:7.1f} us  p99 {d99 * 1e6:7.1f} us")
        print(f"                     proxied p50 {p50 * 1e6:7.1f} us  p99 {p99 * 1e6:7.1f} us")
        print(
            f"                     added   p50 {(p50 - d50) * 1e6:7.1f} us  p99 {(p99 - d99) * 1e6:7.1f} us"
        )
        record("proxy.added_p50_us", (p50 - d50) * 1e6, "us", samples=args.samples)
        direct_mbs = throughput(("127.0.0.1", blast_port), args.mb)
        proxied_mbs = throughput(blast.address, args.mb)
        print(f"Throughput, 1 stream, {args.mb} MiB:  direct {direct_mbs:8.0f} MB/s")
        print(f"                                proxied {proxied_mbs:8.0f} MB/s")
        control.delete_proxy("bench-echo")
        control.delete_proxy("bench-blast")
    finally:
        for process in (proxy, upstream):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
