"""The one lock that keeps two syncs (or a sync and a bundle) off one store at a time.

It is the client's only use of an operating-system lock, kept behind this seam so
the client runs where officials' laptops do: ``filelock`` takes ``msvcrt`` locks on
Windows and ``flock`` on Linux and macOS, both released by the OS when the process
dies, so a killed sync never leaves the store locked. (Where neither exists,
filelock falls back to a lock file that a killed process can leave behind; the
error then says which file to delete.)

A second sync gives up at once instead of waiting: a scheduler's next run comes
soon, and a person who clicked "Sync now" twice needs no second transfer.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Iterator

from ..errors import TransientError
from ..i18n import _

with warnings.catch_warnings():
    # Without fcntl (no POSIX locks), filelock warns once at import that it falls back to a
    # lock file; that is a fact for this module's docstring, not words for a person's terminal.
    warnings.simplefilter("ignore")
    import filelock

LOCK_NAME = "sync.lock"


@contextlib.contextmanager
def sync_lock(home: Path) -> Iterator[None]:
    """Hold this store's sync lock for the block; raise ``TransientError`` (exit 75) if another holds it."""
    path = Path(home) / LOCK_NAME
    lock = filelock.FileLock(str(path), timeout=0, mode=0o600)
    try:
        lock.acquire()
    except filelock.Timeout:
        hint = "it will finish on its own"
        if isinstance(lock, filelock.SoftFileLock):
            hint += f"; if no sync is running (the computer was switched off during one), delete {path}"
        raise TransientError(_("another sync of this store is running"), code="transient.locked", hint=hint) from None
    try:
        yield
    finally:
        lock.release()
