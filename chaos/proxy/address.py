"""``host:port`` strings the way Go's ``net`` package reads them, and binding listeners.

Toxiproxy's ``listen`` and ``upstream`` fields go through ``net.Listen`` /
``net.Dial`` / ``net.ResolveTCPAddr``, so its error texts (returned to API
clients) come from there; :class:`AddressError` and :class:`ListenError`
carry the same wording.

* ``""`` or ``":port"`` listens on all interfaces (dual-stack ``[::]``),
  except that a server limited to loopback binds an empty ``listen`` (a
  proxy created without one) on ``127.0.0.1`` rather than refusing it.
* A host name is resolved, preferring IPv4 (``localhost`` → ``127.0.0.1``).
* An empty port means port 0 (an ephemeral port); a port may be a service
  name (``localhost:http``) or carry a sign (``+80``), as Go allows.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

LISTEN_BACKLOG = 1024


class AddressError(ValueError):
    """A malformed ``host:port`` (message as Go's ``net`` package words it)."""


class ListenError(Exception):
    """The listener could not be created; the message is Go's ``listen tcp ...`` text."""


class ListenRefused(ListenError):
    """The listen address is outside the server's policy (not loopback, or a privileged port).

    Toxiproxy has no such policy; this server has one because its proxies sit in
    front of an embedded Postgres superuser and the testbed's services (issue #13,
    probe 7). ``--allow-external-listen`` lifts it.
    """


def check_local(host: str, ip: str, port: int) -> None:
    """ListenRefused unless ``ip`` is a loopback address and ``port`` is 0 or unprivileged."""
    shown = join_host_port(ip or host, port)
    if host == "" or not ipaddress.ip_address(ip).is_loopback:
        raise ListenRefused(
            f"listen tcp {shown}: not a loopback address (start the server with --allow-external-listen)"
        )
    if 0 < port < 1024:
        raise ListenRefused(
            f"listen tcp {shown}: privileged port (start the server with --allow-external-listen)"
        )


def split_host_port(address: str) -> tuple[str, int]:
    """``"127.0.0.1:80"`` → ``("127.0.0.1", 80)``; ``"[::1]:0"`` → ``("::1", 0)``; ``""`` → ``("", 0)``."""
    if address == "":
        return "", 0
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise AddressError(f"address {address}: missing ']' in address")
        host, rest = address[1:end], address[end + 1 :]
        if not rest.startswith(":"):
            raise AddressError(f"address {address}: missing port in address")
        port_text = rest[1:]
    else:
        if ":" not in address:
            raise AddressError(f"address {address}: missing port in address")
        host, port_text = address.rsplit(":", 1)
        if ":" in host:
            raise AddressError(f"address {address}: too many colons in address")
    return host, _parse_port(port_text)


def _parse_port(text: str) -> int:
    """Go's ``parsePort`` then range check: a signed decimal, else a service name."""
    if text == "":
        return 0
    digits = text[1:] if text[0] in "+-" else text
    if digits.isascii() and digits.isdigit():
        port = -int(digits) if text[0] == "-" else int(digits)
        if not 0 <= port <= 65535:
            raise AddressError(f"address {text}: invalid port")
        return port
    try:
        return socket.getservbyname(text.lower(), "tcp")
    except OSError:
        raise AddressError(f"address tcp/{text}: unknown port") from None


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_string(sock: socket.socket) -> str:
    """The bound address as Toxiproxy reports it (``127.0.0.1:35241``, ``[::]:38269``)."""
    host, port = sock.getsockname()[:2]
    return join_host_port(host, port)


async def _resolve_host(host: str, port: int) -> tuple[socket.AddressFamily, str]:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        return family, str(ip)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise AddressError(f"lookup {host}: no such host") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    family, _, _, _, sockaddr = infos[0]
    return family, str(sockaddr[0])


async def resolve_listen(listen: str) -> str:
    """What Go's ``ResolveTCPAddr(listen).String()`` gives (Toxiproxy compares with it)."""
    host, port = split_host_port(listen)
    if host == "":
        return f":{port}"
    _, ip = await _resolve_host(host, port)
    return join_host_port(ip, port)


async def bind_listener(listen: str, *, local_only: bool = False) -> socket.socket:
    """A non-blocking listening socket for ``listen``, or :class:`ListenError`.

    ``local_only``: refuse (:class:`ListenRefused`) anything but loopback and
    unprivileged ports, before binding.
    """
    try:
        host, port = split_host_port(listen)
        if listen == "" and local_only:
            host = "127.0.0.1"  # no listen given: any port, on loopback (Toxiproxy: all interfaces)
        if host == "":
            family, ip = (socket.AF_INET6, "::") if socket.has_ipv6 else (socket.AF_INET, "0.0.0.0")
        else:
            family, ip = await _resolve_host(host, port)
    except AddressError as exc:
        raise ListenError(f"listen tcp: {exc}") from None
    if local_only:
        check_local(host, ip, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host == "":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((ip, port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        reason = (exc.strerror or str(exc)).lower()
        raise ListenError(f"listen tcp {join_host_port(ip, port)}: bind: {reason}") from None
    return sock
