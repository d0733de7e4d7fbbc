"""The one adapter that speaks the fault proxy's HTTP API (ours or a real Toxiproxy).

Everything in the project that creates proxies or toxics goes through
:class:`ProxyControl` (blocking) or :class:`AsyncProxyControl` (the same
calls in a worker thread, for asyncio code). Underneath it is the
``toxiproxy-python`` 0.1.1 package, whose quirks are handled here, once:

* Its API host and port are **process-global class attributes**
  (``toxiproxy.api.APIConsumer.host/port``). Every call sets them from this
  adapter's URL while holding a process-wide lock, so two adapters (or two
  threads) pointed at different servers cannot cross wires.
* It has **no request timeout**. During each call the adapter swaps the
  ``requests`` module seen by ``toxiproxy.api`` for a shim that adds
  ``timeout=`` (under the same lock, restored afterwards).
* ``Proxy.add_toxic`` returns ``None`` and ``Toxiproxy.create`` turns a 500
  into ``KeyError: 'name'`` after a racy pre-check; so those calls go
  through the package's own HTTP layer (``APIConsumer``: same requests, same
  error mapping) and the adapter reads the server's answer itself.
* It has no toxic update and no server-side populate. Toxiproxy still serves
  the deprecated ``POST`` for updates, and ``/populate`` is a plain POST, so
  both also go through ``APIConsumer``; no second HTTP client is needed.
* Its errors (``ProxyExists``, ``NotFound``, ``InvalidToxic``, raw
  ``requests`` exceptions, unexpected statuses) become
  :class:`~progressbench.core.errors.ChaosError`; a 400 ``invalid toxic type``
  becomes :class:`~progressbench.core.errors.UnsupportedToxic` (what a real
  Toxiproxy answers for ``blackhole``, ``idle_timeout`` and ``pause_reader``).

Use :meth:`ProxyControl.toxic` to apply a toxic for a block: it removes the
toxic in ``finally``, even when the block fails.

The values it sends and returns (:class:`ToxicSpec`, :class:`ProxyInfo`, ...)
are the proxy server's own, from :mod:`progressbench.chaos.proxy.model`, and
are re-exported here for callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast
from urllib.parse import quote, urlsplit

import requests
import toxiproxy.api as _toxiproxy_api
import toxiproxy.exceptions as _toxiproxy_errors
from progressbench.chaos.proxy.model import ProxyInfo, ProxySpec, Stream, ToxicInfo, ToxicPatch, ToxicSpec
from toxiproxy.api import APIConsumer
from toxiproxy.server import Toxiproxy

from progressbench.core.errors import ChaosError, UnsupportedToxic

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8474"
DEFAULT_TIMEOUT = 10.0
MOBILE_TOXICS = frozenset({"blackhole", "idle_timeout", "pause_reader"})

# toxiproxy-python keeps its endpoint in class attributes: one lock for the process.
_CONSUMER_LOCK = threading.Lock()


class _TimeoutRequests:
    """Stands in for the ``requests`` module inside ``toxiproxy.api`` for one call."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout

    def get(self, url: str, params: Any = None, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        return requests.get(url, params=params, **kwargs)

    def post(self, url: str, data: Any = None, json: Any = None, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        return requests.post(url, data=data, json=json, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        return requests.delete(url, **kwargs)


def _server_message(content: object) -> str:
    """The ``error`` text of a Toxiproxy error body (bytes or str), else the body itself."""
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    text = str(content).strip()
    with contextlib.suppress(ValueError, TypeError):
        data = json.loads(text)
        if isinstance(data, dict) and "error" in data:
            return str(data["error"])
    return text


def _path(*parts: str) -> str:
    return "/" + "/".join(quote(part, safe="") for part in parts)


class ProxyControl:
    """Blocking control of one proxy server at ``url`` (``http://host:port``)."""

    def __init__(self, url: str = DEFAULT_URL, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        parts = urlsplit(url if "//" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise ChaosError(f"chaos proxy URL must look like http://host:port, got {url!r}")
        self.url = url
        self._host = parts.hostname
        self._port = parts.port or 8474
        self._requests = _TimeoutRequests(timeout)
        self._supported: dict[str, bool] = {}

    def __repr__(self) -> str:
        return f"ProxyControl({self.url!r})"

    # -- plumbing ---------------------------------------------------------------

    def _call(self, what: str, call: Callable[[], T]) -> T:
        """Run one toxiproxy-python call against this server; translate its errors."""
        with _CONSUMER_LOCK:
            saved_host, saved_port = APIConsumer.host, APIConsumer.port
            saved_requests = _toxiproxy_api.requests
            APIConsumer.host, APIConsumer.port = self._host, self._port
            _toxiproxy_api.requests = self._requests
            try:
                return call()
            except _toxiproxy_errors.ProxyExists as exc:
                raise ChaosError(f"{what}: {_server_message(exc.args[0])} (409)") from None
            except _toxiproxy_errors.NotFound as exc:
                raise ChaosError(f"{what}: {_server_message(exc.args[0])} (404)") from None
            except _toxiproxy_errors.InvalidToxic as exc:
                message = _server_message(exc.args[0])
                raise ChaosError(f"{what}: {message} (400)") from None
            except requests.RequestException as exc:
                raise ChaosError(f"{what}: chaos proxy at {self.url} unreachable: {exc}") from None
            finally:
                APIConsumer.host, APIConsumer.port = saved_host, saved_port
                _toxiproxy_api.requests = saved_requests

    def _expect(self, what: str, response: requests.Response, *statuses: int) -> Any:
        if response.status_code not in statuses:
            message = _server_message(response.content) or response.reason
            raise ChaosError(f"{what}: {message} ({response.status_code})")
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ChaosError(f"{what}: the server's answer is not JSON") from None

    def _get(self, what: str, path: str) -> Any:
        return self._call(what, lambda: self._expect(what, APIConsumer.get(path), 200))

    def _post(self, what: str, path: str, body: object, *statuses: int) -> Any:
        return self._call(what, lambda: self._expect(what, APIConsumer.post(path, json=body), *statuses))

    def _delete(self, what: str, path: str) -> None:
        self._call(what, lambda: self._expect(what, APIConsumer.delete(path), 204))

    # -- server --------------------------------------------------------------------

    def version(self) -> str:
        """The server's version string (``2.12.0`` for ours, which speaks that API)."""

        def call() -> str:
            response: requests.Response = APIConsumer.get("/version")
            self._expect("version", response, 200)
            text = response.content.decode("utf-8", "replace").strip()
            with contextlib.suppress(ValueError):
                data = json.loads(text)
                if isinstance(data, dict):
                    return str(data.get("version", text))
            return text

        return self._call("version", call)

    def ping(self) -> bool:
        """Whether the API answers (no exception)."""
        try:
            self.version()
        except ChaosError:
            return False
        return True

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self._post("reset", "/reset", None, 204)

    # -- proxies ----------------------------------------------------------------------

    def proxies(self) -> dict[str, ProxyInfo]:
        def call() -> dict[str, ProxyInfo]:
            found = Toxiproxy().proxies()
            return {
                name: ProxyInfo.from_json(
                    {
                        "name": p.name,
                        "listen": p.listen,
                        "upstream": p.upstream,
                        "enabled": p.enabled,
                    }
                )
                for name, p in cast(dict[str, Any], found).items()
            }

        return self._call("list proxies", call)

    def get_proxy(self, name: str) -> ProxyInfo:
        return ProxyInfo.from_json(self._get(f"get proxy {name!r}", _path("proxies", name)))

    def create_proxy(
        self, name: str, upstream: str, listen: str = "127.0.0.1:0", *, enabled: bool = True
    ) -> ProxyInfo:
        """Create a proxy; ``listen`` port 0 gets an ephemeral port (see ``ProxyInfo.port``)."""
        body = ProxySpec(name, listen, upstream, enabled).to_json()
        data = self._post(f"create proxy {name!r}", "/proxies", body, 201)
        return ProxyInfo.from_json(data)

    def delete_proxy(self, name: str) -> None:
        self._delete(f"delete proxy {name!r}", _path("proxies", name))

    def set_enabled(self, name: str, enabled: bool) -> ProxyInfo:
        """Disable (close every connection, refuse new ones) or re-enable a proxy."""
        what = f"{'enable' if enabled else 'disable'} proxy {name!r}"
        data = self._post(what, _path("proxies", name), {"enabled": enabled}, 200)
        return ProxyInfo.from_json(data)

    def populate(self, proxies: Sequence[ProxySpec | Mapping[str, object]]) -> list[ProxyInfo]:
        """Server-side ``/populate``: create or replace proxies; unchanged ones keep state."""
        body = [p.to_json() if isinstance(p, ProxySpec) else dict(p) for p in proxies]
        data = self._post("populate", "/populate", body, 201)
        return [ProxyInfo.from_json(p) for p in (data or {}).get("proxies") or []]

    # -- toxics --------------------------------------------------------------------------

    def toxics(self, proxy: str) -> list[ToxicInfo]:
        data = self._get(f"list toxics of {proxy!r}", _path("proxies", proxy, "toxics"))
        return [ToxicInfo.from_json(t) for t in data or []]

    def add_toxic(self, proxy: str, spec: ToxicSpec) -> ToxicInfo:
        """Add a toxic; :class:`UnsupportedToxic` if the server does not know its type."""
        what = f"add {spec.type} toxic {spec.resolved_name!r} to {proxy!r}"
        try:
            data = self._post(what, _path("proxies", proxy, "toxics"), spec.to_json(), 200)
        except ChaosError as exc:
            if "invalid toxic type" in str(exc):
                raise UnsupportedToxic(self._unsupported_message(spec.type)) from None
            raise
        return ToxicInfo.from_json(data)

    def update_toxic(
        self,
        proxy: str,
        name: str,
        *,
        attributes: Mapping[str, int] | None = None,
        toxicity: float | None = None,
    ) -> ToxicInfo:
        """Change attributes (merged) and/or toxicity; live connections pick them up."""
        body = ToxicPatch(attributes or {}, toxicity).to_json()
        what = f"update toxic {name!r} of {proxy!r}"
        # toxiproxy-python has no PATCH; Toxiproxy serves the deprecated POST alike.
        data = self._post(what, _path("proxies", proxy, "toxics", name), body, 200)
        return ToxicInfo.from_json(data)

    def remove_toxic(self, proxy: str, name: str, *, missing_ok: bool = False) -> None:
        what = f"remove toxic {name!r} from {proxy!r}"
        try:
            self._delete(what, _path("proxies", proxy, "toxics", name))
        except ChaosError as exc:
            if not (missing_ok and str(exc).endswith("(404)")):
                raise

    @contextlib.contextmanager
    def toxic(self, proxy: str, spec: ToxicSpec) -> Iterator[ToxicInfo]:
        """Apply a toxic for the ``with`` block; it is removed in ``finally``.

        A removal failure is raised only if the block itself succeeded (it
        never hides the block's own exception); a toxic already gone (e.g.
        after ``reset()``) is fine.
        """
        info = self.add_toxic(proxy, spec)
        failed = True
        try:
            yield info
            failed = False
        finally:
            try:
                self.remove_toxic(proxy, info.name, missing_ok=True)
            except ChaosError:
                if not failed:
                    raise

    def supports(self, toxic_type: str) -> bool:
        """Whether the server implements ``toxic_type`` (probed once, then cached).

        The probe adds the toxic to a throw-away *disabled* proxy (nothing is
        bound or dialled) and deletes the proxy afterwards.
        """
        if toxic_type not in self._supported:
            probe = f"__progressbench_probe_{uuid.uuid4().hex[:12]}"
            self.create_proxy(probe, "127.0.0.1:9", "127.0.0.1:0", enabled=False)
            try:
                self.add_toxic(probe, ToxicSpec(type=toxic_type, name="probe"))
                self._supported[toxic_type] = True
            except UnsupportedToxic:
                self._supported[toxic_type] = False
            finally:
                self.delete_proxy(probe)
        return self._supported[toxic_type]

    def require(self, toxic_type: str) -> None:
        """Raise :class:`UnsupportedToxic` now, before a run, if the server lacks a type."""
        if not self.supports(toxic_type):
            raise UnsupportedToxic(self._unsupported_message(toxic_type))

    def _unsupported_message(self, toxic_type: str) -> str:
        hint = (
            " it is one of progressbench's mobile toxics, which a stock Toxiproxy lacks;"
            " point the run at the bundled chaos proxy (python -m progressbench.chaos.proxy) instead"
            if toxic_type in MOBILE_TOXICS
            else ""
        )
        return (
            f"the proxy server at {self.url} does not implement the {toxic_type!r} toxic"
            f" (it answered 400 'invalid toxic type');{hint}"
        ).rstrip(";")


class AsyncProxyControl:
    """The same calls for asyncio code: each runs in a worker thread (the client blocks)."""

    def __init__(self, url: str = DEFAULT_URL, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.sync = ProxyControl(url, timeout=timeout)

    @property
    def url(self) -> str:
        return self.sync.url

    async def version(self) -> str:
        return await asyncio.to_thread(self.sync.version)

    async def ping(self) -> bool:
        return await asyncio.to_thread(self.sync.ping)

    async def reset(self) -> None:
        await asyncio.to_thread(self.sync.reset)

    async def proxies(self) -> dict[str, ProxyInfo]:
        return await asyncio.to_thread(self.sync.proxies)

    async def get_proxy(self, name: str) -> ProxyInfo:
        return await asyncio.to_thread(self.sync.get_proxy, name)

    async def create_proxy(
        self, name: str, upstream: str, listen: str = "127.0.0.1:0", *, enabled: bool = True
    ) -> ProxyInfo:
        return await asyncio.to_thread(self.sync.create_proxy, name, upstream, listen, enabled=enabled)

    async def delete_proxy(self, name: str) -> None:
        await asyncio.to_thread(self.sync.delete_proxy, name)

    async def set_enabled(self, name: str, enabled: bool) -> ProxyInfo:
        return await asyncio.to_thread(self.sync.set_enabled, name, enabled)

    async def populate(self, proxies: Sequence[ProxySpec | Mapping[str, object]]) -> list[ProxyInfo]:
        return await asyncio.to_thread(self.sync.populate, proxies)

    async def toxics(self, proxy: str) -> list[ToxicInfo]:
        return await asyncio.to_thread(self.sync.toxics, proxy)

    async def add_toxic(self, proxy: str, spec: ToxicSpec) -> ToxicInfo:
        return await asyncio.to_thread(self.sync.add_toxic, proxy, spec)

    async def update_toxic(
        self,
        proxy: str,
        name: str,
        *,
        attributes: Mapping[str, int] | None = None,
        toxicity: float | None = None,
    ) -> ToxicInfo:
        return await asyncio.to_thread(
            self.sync.update_toxic, proxy, name, attributes=attributes, toxicity=toxicity
        )

    async def remove_toxic(self, proxy: str, name: str, *, missing_ok: bool = False) -> None:
        await asyncio.to_thread(self.sync.remove_toxic, proxy, name, missing_ok=missing_ok)

    async def supports(self, toxic_type: str) -> bool:
        return await asyncio.to_thread(self.sync.supports, toxic_type)

    async def require(self, toxic_type: str) -> None:
        await asyncio.to_thread(self.sync.require, toxic_type)

    @contextlib.asynccontextmanager
    async def toxic(self, proxy: str, spec: ToxicSpec) -> AsyncIterator[ToxicInfo]:
        """Async :meth:`ProxyControl.toxic`: removed in ``finally``, also on cancellation."""
        info = await self.add_toxic(proxy, spec)
        failed = True
        try:
            yield info
            failed = False
        finally:
            try:
                # Shielded so that a cancelled block still removes its toxic.
                await asyncio.shield(self.remove_toxic(proxy, info.name, missing_ok=True))
            except ChaosError:
                if not failed:
                    raise


__all__ = [
    "MOBILE_TOXICS",
    "AsyncProxyControl",
    "ProxyControl",
    "ProxyInfo",
    "ProxySpec",
    "Stream",
    "ToxicInfo",
    "ToxicSpec",
]
