"""Chaos proxy overhead with no toxics: added round-trip latency and single-stream throughput.

    python benchmarks/bench_proxy.py [--samples 20000] [--mb 1024] [--pin] [--toxiproxy PATH]

Processes on 127.0.0.1: a small asyncio upstream (echo on one port, a byte
blaster on another), the chaos proxy (``python -m progressbench.chaos.proxy``),
a real Toxiproxy when one is available, and this script as a blocking-socket
client. Each measurement runs direct and through each proxy (created with
:mod:`progressbench.chaos.client`), in the same run:

* RTT: ``--samples`` ping-pongs of 64 bytes each way (after 1,000 warm-up
  ones), the paths interleaved in blocks of 500 so load changes hit them
  alike; p50/p99 of each and each proxy's added p50/p99 (difference of the
  percentiles). With a Toxiproxy, the ratio of the added p50s (the anchor:
  ours no more than Toxiproxy 2.12's, ratio <= 1); without one, the anchor
  is <= 30 us over direct.
* Throughput: the blaster sends ``--mb`` MiB downstream as fast as it can;
  MB/s from the first byte to EOF (stopped early after 15 s).

The Toxiproxy binary is ``--toxiproxy``, else ``$TOXIPROXY_BIN``, else
``toxiproxy-server`` on PATH (chaos/README.md says how to build one); when
there is none the script says so and measures the chaos proxy alone.
``--pin`` puts the upstream and proxies on CPU 0 and the client on CPU 1
(Linux). Prints numbers; asserts nothing. Bounded to well under 120 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

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


def rtt_samples(addresses: list[tuple[str, int]], samples: int) -> list[list[float]]:
    """Interleaved blocks of 500 pings per address, so load changes hit every path alike."""
    payload = b"p" * 64
    times: list[list[float]] = [[] for _ in addresses]
    socks = [socket.create_connection(address) for address in addresses]
    try:
        for sock in socks:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(1000):
                _ping(sock, payload)
        while len(times[-1]) < samples:
            for sock, out in zip(socks, times, strict=True):
                out.extend(_ping(sock, payload) for _ in range(min(500, samples - len(out))))
    finally:
        for sock in socks:
            sock.close()
    return times


def toxiproxy_binary(given: str | None) -> str | None:
    """``--toxiproxy``, else ``$TOXIPROXY_BIN``, else ``toxiproxy-server`` on PATH."""
    candidate = given or os.environ.get("TOXIPROXY_BIN")
    if candidate:
        return candidate if os.access(candidate, os.X_OK) else None
    return shutil.which("toxiproxy-server")


def start_toxiproxy(binary: str, cpu: int) -> tuple[subprocess.Popen[str], str]:
    """A real Toxiproxy on a free loopback port; (process, API URL) once ``/version`` answers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [*_pin(cpu), binary, "-host", "127.0.0.1", "-port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "LOG_LEVEL": "error"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/version", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.05)
    stop(process)
    raise RuntimeError(f"{binary} did not start on port {port}")


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


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
    parser.add_argument("--toxiproxy", default=None, help="toxiproxy-server binary to compare with")
    args = parser.parse_args()
    if args.pin:
        os.sched_setaffinity(0, {1})
    server_cpu = 0 if args.pin else -1

    binary = toxiproxy_binary(args.toxiproxy)
    processes: list[subprocess.Popen[str]] = []
    try:
        upstream = start([*_pin(server_cpu), sys.executable, "-c", UPSTREAM])
        processes.append(upstream)
        proxy = start([*_pin(server_cpu), sys.executable, "-m", "progressbench.chaos.proxy", "--port", "0"])
        processes.append(proxy)
        assert upstream.stdout is not None and proxy.stdout is not None
        echo_port, blast_port = map(int, upstream.stdout.readline().split())
        servers = {"chaos proxy": proxy.stdout.readline().strip().rsplit(" ", 1)[-1]}
        if binary is None:
            print(
                "no Toxiproxy binary (--toxiproxy, $TOXIPROXY_BIN or toxiproxy-server on PATH):"
                " measuring the chaos proxy alone"
            )
        else:
            toxiproxy, servers["toxiproxy"] = start_toxiproxy(binary, server_cpu)
            processes.append(toxiproxy)
        echoes, blasts = {}, {}
        for label, url in servers.items():
            control = ProxyControl(url)
            echoes[label] = control.create_proxy("bench-echo", f"127.0.0.1:{echo_port}").address
            blasts[label] = control.create_proxy("bench-blast", f"127.0.0.1:{blast_port}").address
            if label == "toxiproxy":
                print(f"toxiproxy {control.version()} at {binary}")

        print(f"proxy overhead, no toxics ({os.cpu_count()} CPUs, pinned={args.pin})")
        times = rtt_samples([("127.0.0.1", echo_port), *echoes.values()], args.samples)
        direct = times[0]
        d50, d99 = percentile(direct, 50), percentile(direct, 99)
        print(f"RTT 64 B x {args.samples}:  direct       p50 {d50 * 1e6:7.1f} us  p99 {d99 * 1e6:7.1f} us")
        added: dict[str, float] = {}
        for label, proxied in zip(echoes, times[1:], strict=True):
            p50, p99 = percentile(proxied, 50), percentile(proxied, 99)
            added[label] = (p50 - d50) * 1e6
            print(f"  {label:<12} p50 {p50 * 1e6:7.1f} us  p99 {p99 * 1e6:7.1f} us", end="")
            print(f"  added p50 {added[label]:+7.1f} us  p99 {(p99 - d99) * 1e6:+7.1f} us")
        record("proxy.added_p50_us", added["chaos proxy"], "us", samples=args.samples)
        if "toxiproxy" in added:
            record("proxy.toxiproxy_added_p50_us", added["toxiproxy"], "us", samples=args.samples)
            if added["toxiproxy"] > 0:
                ratio = added["chaos proxy"] / added["toxiproxy"]
                print(f"added p50: chaos proxy / toxiproxy = {ratio:.2f} (anchor: <= 1)")
                record("proxy.added_p50_ratio_to_toxiproxy", ratio, "x", samples=args.samples)
            else:
                reason = "toxiproxy's added p50 was not above direct: the machine is too busy to measure it"
                print(f"added p50 ratio undefined: {reason}")
                record("proxy.added_p50_ratio_to_toxiproxy", None, "x", reason=reason)
        else:
            print(f"added p50 {added['chaos proxy']:.1f} us (anchor without a Toxiproxy: <= 30 us)")
            record("proxy.added_p50_ratio_to_toxiproxy", None, "x", reason="no Toxiproxy binary")

        direct_mbs = throughput(("127.0.0.1", blast_port), args.mb)
        print(f"Throughput, 1 stream, {args.mb} MiB:  direct       {direct_mbs:8.0f} MB/s")
        for label, address in blasts.items():
            print(f"  {label:<12} {throughput(address, args.mb):8.0f} MB/s")
    finally:
        for process in reversed(processes):
            stop(process)
    return 0


if __name__ == "__main__":
    sys.exit(main())
