"""Files only their owner can read: one way to make the directories and files hbw-sync keeps.

Why: a store, a relay database, a backup or a bundle holds signed routing data,
sealed content and key material. On a shared office machine (or a laptop with
more than one account) the default umask makes new files world-readable
(0644). So every directory hbw-sync creates for its data is 0700, and every file
it writes there (databases with their ``-wal`` and ``-shm`` files, backups,
bundles, reply bundles) is 0600, whatever the umask says.

SQLite creates ``-wal`` and ``-shm`` with the permissions of the database file
itself (its unix VFS copies the main file's mode), so creating the database
file 0600 *before* SQLite opens it is enough; ``tighten`` also fixes files
that an older version left 0644.

Plain ``os`` calls only: the client and the relay both use this module and
must not import each other.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if missing, and make ``path`` itself 0700."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    os.chmod(path, DIR_MODE)
    return path


def create_private(path: Path) -> None:
    """Create an empty file 0600 if it does not exist (before SQLite opens it), else tighten it."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        tighten(path)
        return
    os.close(fd)
    os.chmod(path, FILE_MODE)  # O_CREAT's mode is filtered by the umask; 0600 is never looser, but be exact


def tighten(path: Path) -> None:
    """Make an existing file we own 0600 if it is looser (a database an older version created)."""
    with contextlib.suppress(FileNotFoundError, PermissionError):
        st = os.stat(path)
        if stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid == os.getuid():
            os.chmod(path, FILE_MODE)


def private_sqlite(path: Path) -> None:
    """Make a SQLite database and its side files 0600 (creating the database if missing), its directory 0700."""
    path = Path(path)
    tighten_dir(path.parent)
    create_private(path)
    for suffix in SQLITE_SIDE_FILES:
        tighten(path.with_name(path.name + suffix))


def tighten_dir(path: Path) -> None:
    """Make an existing directory we own 0700 if it is looser (one an older version left 0755)."""
    with contextlib.suppress(FileNotFoundError, PermissionError):
        st = os.stat(path)
        if stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid == os.getuid():
            os.chmod(path, DIR_MODE)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a ``.part`` file, fsync, rename), 0600.

    A reader never sees half a file: a kill or a full disk leaves the old file
    (or none) and removes the part file when it can.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
