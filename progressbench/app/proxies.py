"""The chaos proxies in front of a stack: one per phone cell and client-facing service, one on dispatch.

The proxy server is either the bundled Toxiproxy-compatible proxy, started
as a child process on a socket the supervisor binds, or a real Toxiproxy
(``toxiproxy_url``) that outlives the stack. Everything the stack creates on
it is named with :data:`PROXY_PREFIX`: on a shared server, :meth:`StackProxies.close`
deletes exactly those, and a start removes what an earlier run left behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import time
from pathlib import Path

from progressbench.app.interrupts import deferred
from progressbench.app.processes import listen_socket, python_module, socket_url, spawn, tail, terminate
from progressbench.chaos.client import ProxyControl, ProxyInfo
from progressbench.core.errors import ChaosError, StackError

log = logging.getLogger(__name__)

#: Every proxy the testbed creates is named with this prefix.
PROXY_PREFIX = "pb-"
DISPATCH = f"{PROXY_PREFIX}dispatch"


class StackProxies:
    """The proxy server's control plus the proxies this stack made on it."""

    def __init__(
        self,
        control: ProxyControl,
        process: subprocess.Popen[bytes] | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        self.control = control
        #: The bundled proxy's process (None when driving an external Toxiproxy).
        self.process = process
        self._socket = sock
        self.dispatch_proxy: str | None = None
        self._cells: dict[int, dict[str, ProxyInfo]] = {}

    @classmethod
    def external(cls, url: str) -> StackProxies:
        """Drive the Toxiproxy-compatible server at ``url``, after removing this testbed's leftovers."""
        control = ProxyControl(url)
        if not control.ping():
            raise StackError(
                f"no Toxiproxy API answers at {url}: start toxiproxy-server there, or leave out "
                "--toxiproxy-url (and TOXIPROXY_URL) to use the bundled chaos proxy"
            )
        for name in control.proxies():
            if name.startswith(PROXY_PREFIX):  # left by an earlier run against this server
                control.delete_proxy(name)
        return cls(control)

    @classmethod
    def bundled(cls, log_dir: Path, startup_timeout_s: float) -> StackProxies:
        """Start the bundled proxy as a child process and wait until its API answers."""
        sock = listen_socket()
        log_path = log_dir / "chaos-proxy.log"
        with deferred():  # a stop signal must not fall between starting it and owning it
            process = spawn(
                [
                    *python_module("progressbench.chaos.proxy"),
                    "--fd",
                    str(sock.fileno()),
                    "--parent-pid",
                    str(os.getpid()),
                ],
                log_path,
                pass_fds=(sock.fileno(),),
            )
            proxies = cls(ProxyControl(socket_url(sock)), process, sock)
        try:
            deadline = time.monotonic() + startup_timeout_s
            while not proxies.control.ping():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise StackError(f"the chaos proxy did not start; see {log_path}\n{tail(log_path)}")
                time.sleep(0.05)
        except BaseException:  # the caller never gets it to close: stop it here (also on Ctrl-C)
            proxies.close()
            raise
        return proxies

    def dispatch(self, upstream: str) -> str:
        """The proxy on the API → worker dispatch path; returns the URL to dispatch through."""
        proxy = self.control.create_proxy(DISPATCH, upstream)
        self.dispatch_proxy = proxy.name
        return "http://{}:{}".format(*proxy.address)

    def cell_endpoints(self, direct: dict[str, str], cells: int) -> list[dict[str, str]]:
        """Per phone cell, each service in ``direct`` through that cell's own proxy (made once)."""
        result = []
        for cell in range(cells):
            proxies = self._cells.setdefault(cell, {})
            for role, url in direct.items():
                if role not in proxies:
                    upstream = url.removeprefix("http://")
                    proxies[role] = self.control.create_proxy(f"{PROXY_PREFIX}c{cell}-{role}", upstream)
            result.append({role: "http://{}:{}".format(*p.address) for role, p in proxies.items()})
        return result

    def cell_proxy_names(self, cells: int) -> list[list[str]]:
        return [[p.name for p in self._cells.get(c, {}).values()] for c in range(cells)]

    def close(self) -> None:
        """Stop the bundled proxy, or delete this stack's proxies from the external server."""
        if self.process is None:
            names = [p.name for c in self._cells.values() for p in c.values()]
            for name in [*names, *([self.dispatch_proxy] if self.dispatch_proxy else [])]:
                try:
                    self.control.delete_proxy(name)
                except ChaosError as exc:
                    log.warning("could not delete proxy %s: %s", name, exc)
        else:
            terminate(self.process, grace_s=10.0)
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
