"""A tiny asyncio TCP forwarder to break SSE connections on purpose, plus session helpers.

:class:`Forwarder` sits between a watcher and the API on 127.0.0.1 (port
chosen by the OS). ``cut`` closes every client-side socket at once (a real
close the client sees), refuses new connections for ``outage_s`` and closes
the API-side sockets only ``server_learns_after_s`` later, the way a server
learns late that a phone dropped off. ``freeze`` blackholes every open
connection (bytes stop both ways, no FIN, no RST) while new connections go
through, like a NAT that forgot a flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import psycopg

from progressbench.app.session import SessionSpec
from progressbench.app.truth import read_truth
from progressbench.core.config import JobShape, Timing
from progressbench.core.events import SessionRecord
from progressbench.core.ledger import SessionRow, account
from tests.helpers import wait_until


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    frozen: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class Forwarder:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.links: set[_Link] = set()
        self.refuse_until = 0.0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._later: set[asyncio.Task[None]] = set()

    @classmethod
    def to_url(cls, url: str) -> Forwarder:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        return cls(host, int(port))

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self.links):
            self._close_link(link, both=True)
        for task in list(self._later):
            task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self.refuse_until:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        link = _Link(client=writer, server=up_writer)
        self.links.add(link)
        link.tasks = [
            asyncio.create_task(self._pipe(link, reader, up_writer)),
            asyncio.create_task(self._pipe(link, up_reader, writer)),
        ]

    async def _pipe(self, link: _Link, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await src.read(65536)
                if not data:
                    break
                if link.frozen or dst.is_closing():
                    continue  # blackholed: swallow the bytes
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        if not link.frozen:
            self._close_link(link, both=True)

    def _close_link(self, link: _Link, *, both: bool) -> None:
        link.client.transport.abort()
        if both:
            link.server.transport.abort()
            self.links.discard(link)

    def cut(self, outage_s: float = 0.0, server_learns_after_s: float = 0.0) -> None:
        """Close every client socket now; the API side sees its close later."""
        self.refuse_until = time.monotonic() + outage_s
        for link in list(self.links):
            link.frozen = True  # bytes from the server go nowhere until it learns
            self._close_link(link, both=False)
            self.links.discard(link)
            task = asyncio.create_task(self._close_server_later(link, server_learns_after_s))
            self._later.add(task)
            task.add_done_callback(self._later.discard)

    async def _close_server_later(self, link: _Link, delay: float) -> None:
        await asyncio.sleep(delay)
        link.server.transport.abort()

    def freeze(self) -> None:
        """Blackhole every open connection (no FIN, no RST); new ones still work."""
        for link in self.links:
            link.frozen = True


async def wait_for_events(database_url: str, owner: str, count: int, timeout: float) -> str:
    """The id of ``owner``'s job once it has committed ``count`` events (``timeout`` scaled by UNIT).

    ``owner`` is the phone's (or test user's) name: the job's owner is the id of the
    account it signed in with, whose email starts with ``<name>.``.
    """
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:

        async def committed() -> str | None:
            cur = await conn.execute(
                "SELECT j.id, count(e.seq) FROM jobs j LEFT JOIN job_events e ON e.job_id = j.id "
                "WHERE j.owner IN (SELECT id::text FROM auth_users WHERE email LIKE %s) GROUP BY j.id",
                (owner.replace("_", "\\_") + ".%",),
            )
            row = await cur.fetchone()
            return str(row[0]) if row is not None and row[1] >= count else None

        return await wait_until(committed, timeout, f"{owner}'s job to commit {count} events")


def session_spec(
    transport: str,
    owner: str,
    api_url: str,
    timing: Timing,
    shape: JobShape,
    options: dict[str, str] | None = None,
) -> SessionSpec:
    return SessionSpec(
        transport=transport,
        profile="test",
        owner=owner,
        user_index=0,
        job_index=0,
        seed=7,
        shape=shape,
        timing=timing,
        endpoints={"api": api_url},
        options=options or {},
    )


def score(database_url: str, record: SessionRecord) -> SessionRow:
    truths = read_truth(database_url, [i for i in [record.job_id, *record.extra_job_ids] if i])
    row, _events = account(record, truths)
    return row


def progress_seqs(record: SessionRecord) -> list[int]:
    """The steps the user saw, in order (receipts the client's dedupe hid are not shown)."""
    return [o.seq for o in record.observations if o.type == "progress" and o.seq is not None and o.shown]
