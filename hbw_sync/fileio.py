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

It also names a fault of the disk (``fault_code``) from SQLite's result code
or the OS's errno, one table for the client and the relay; each edge says it
in its own words (``server/db.py``, ``client/store.py``).

Plain ``os`` calls only (SQLite's result codes are plain numbers, read from the
exception): the client and the relay both use this module and must not import
each other, and the core stays free of sqlite3.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from .errors import UsageError
from .i18n import _

FILE_MODE = 0o600
DIR_MODE = 0o700
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
#: On Windows the C runtime may open a descriptor in text mode, which turns every \n in a bundle into \r\n.
O_BINARY = getattr(os, "O_BINARY", 0)

# SQLite primary result codes (https://sqlite.org/rescode.html), as ``sqlite3.Error.sqlite_errorcode & 0xFF``.
_SQLITE_FAULTS: dict[int, str] = {
    13: "store.disk_full",  # SQLITE_FULL
    10: "store.io",  # SQLITE_IOERR
    14: "store.io",  # SQLITE_CANTOPEN
    8: "store.read_only",  # SQLITE_READONLY
    3: "store.read_only",  # SQLITE_PERM
    5: "store.busy",  # SQLITE_BUSY
    6: "store.busy",  # SQLITE_LOCKED
    11: "store.corrupt",  # SQLITE_CORRUPT (SQLITE_NOTADB, a file that is no database, is the caller's ConfigError)
}
_ERRNO_FAULTS: dict[int, str] = {
    errno.ENOSPC: "store.disk_full",
    errno.EDQUOT: "store.disk_full",
    errno.EIO: "store.io",
    errno.EROFS: "store.read_only",
}


NEARLY_FULL = 1 << 20  # an I/O error on a disk with less free space than this is a full disk


def fault_code(exc: BaseException, where: Path | None = None) -> str | None:
    """``store.disk_full``, ``store.io``, ``store.read_only``, ``store.busy`` or ``store.corrupt`` for a
    fault of the disk under a file or database; None for anything else (a constraint, a bad statement, a bug).

    SQLite reports some failures of a full disk as I/O errors (creating its
    ``-shm`` file, say); given ``where`` (a path on that disk), an I/O error on
    a disk with almost no free space is called what it is: full.
    """
    code = None
    if isinstance(exc, OSError):
        code = _ERRNO_FAULTS.get(exc.errno) if exc.errno is not None else None
    else:
        primary = getattr(exc, "sqlite_errorcode", None)
        if type(primary) is int:
            code = _SQLITE_FAULTS.get(primary & 0xFF)
    if code == "store.io" and where is not None:
        with contextlib.suppress(OSError):
            if shutil.disk_usage(where).free < NEARLY_FULL:
                code = "store.disk_full"
    return code


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
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_BINARY, FILE_MODE)
    except FileExistsError:
        tighten(path)
        return
    os.close(fd)
    os.chmod(path, FILE_MODE)  # O_CREAT's mode is filtered by the umask; 0600 is never looser, but be exact


def _mine(st: os.stat_result) -> bool:
    """Whether the current user owns the file; on Windows (no uids, and no mode bits beyond read-only) never."""
    getuid = getattr(os, "getuid", None)
    return getuid is not None and st.st_uid == getuid()


def tighten(path: Path) -> None:
    """Make an existing file we own 0600 if it is looser (a database an older version created)."""
    with contextlib.suppress(FileNotFoundError, PermissionError):
        st = os.stat(path)
        if stat.S_IMODE(st.st_mode) & 0o077 and _mine(st):
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
        if stat.S_IMODE(st.st_mode) & 0o077 and _mine(st):
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
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_BINARY, FILE_MODE)
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


@contextlib.contextmanager
def reading(path: Path) -> Iterator[None]:
    """Say plainly why a file a person named cannot be read (``doc add``, ``task import``...).

    One place for the words, so every command that reads a person's file answers the same way.
    """
    try:
        yield
    except FileNotFoundError:
        raise UsageError(_("no such file: {path}").format(path=path)) from None
    except IsADirectoryError:
        raise UsageError(_("{path} is a directory, not a file").format(path=path)) from None
    except PermissionError:
        raise UsageError(_("cannot read {path}: permission denied").format(path=path)) from None
    except OSError as e:
        raise UsageError(_("cannot read {path}: {v}").format(path=path, v=e.strerror or e)) from None
