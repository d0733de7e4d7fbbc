"""``python -m progressbench.chaos.proxy``: run the chaos proxy server as a process.

Prints one line, ``chaos-proxy listening on http://HOST:PORT``, on stdout
once the API accepts connections (and the ``--config`` proxies exist), then
logs to stderr only. SIGTERM or SIGINT shut it down cleanly (exit 0). A bad
``--config`` exits 2 with one line on stderr; a failed bind exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from progressbench.chaos.proxy.server import serve

from progressbench.core.errors import ConfigError, ProgressbenchError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m progressbench.chaos.proxy",
        description="Toxiproxy-API-compatible TCP fault proxy with mobile toxics.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="API host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8474, help="API port, 0 = any (default 8474)")
    parser.add_argument(
        "--fd", type=int, default=None, help="inherited, already-bound listening socket for the API"
    )
    parser.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        help="exit (as on SIGTERM) when this process is gone: a supervisor killed hard leaves no orphan",
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="JSON array of proxies (the /populate format)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for toxicity and jitter")
    parser.add_argument(
        "--allow-external-listen",
        action="store_true",
        help="let proxies listen beyond loopback and on ports below 1024 (off: loopback only)",
    )
    parser.add_argument(
        "--proxy-metrics", action="store_true", help="serve /metrics with per-proxy byte counters"
    )
    parser.add_argument(
        "--runtime-metrics", action="store_true", help="serve /metrics with the process's own metrics"
    )
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    return parser


def _load_config(path: Path) -> Sequence[Mapping[str, object]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--config {path}: {exc}") from None
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise ConfigError(f"--config {path}: expected a JSON array of proxy objects")
    return data


def _announce(url: str) -> None:
    sys.stdout.write(f"chaos-proxy listening on {url}\n")
    sys.stdout.flush()


async def _stop_without(parent_pid: int, stop: asyncio.Event, every_s: float = 0.5) -> None:
    """Stop the proxy (as on SIGTERM) once ``parent_pid`` is no longer its parent: it was killed."""
    while not stop.is_set():
        if os.getppid() != parent_pid:
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


async def _run(args: argparse.Namespace, config: Sequence[Mapping[str, object]] | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    sock = None
    if args.fd is not None:
        sock = socket.socket(fileno=args.fd)
    if args.parent_pid:
        watch = asyncio.create_task(_stop_without(args.parent_pid, stop), name="parent-watch")
        watch.add_done_callback(lambda _: None)
    await serve(
        args.host,
        args.port,
        sock=sock,
        config=config,
        seed=args.seed,
        ready=_announce,
        stop=stop,
        allow_external_listen=args.allow_external_listen,
        proxy_metrics=args.proxy_metrics,
        runtime_metrics=args.runtime_metrics,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = _load_config(args.config) if args.config is not None else None
        asyncio.run(_run(args, config))
    except ProgressbenchError as exc:
        sys.stderr.write(f"chaos-proxy: {exc}\n")
        return exc.exit_code
    except OSError as exc:
        sys.stderr.write(f"chaos-proxy: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
