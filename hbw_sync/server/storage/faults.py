"""Faults of the relay's storage told in words: one ``StorageError`` for every backend.

Moved here from ``server/db.py`` unchanged for SQLite (result codes and errno,
via ``fileio.fault_code``) and extended for PostgreSQL (SQLSTATE classes), so
the HTTP edge answers 503 with Retry-After and the admin CLI exits 74 with
words whichever database the relay runs on. A constraint violation or a bad
statement is never a fault: it is a bug or a value the caller handles.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Iterator

from ... import fileio
from ...errors import StorageError

# code -> (what happened, what office IT does about it); {disk} names the disk that failed.
_FAULT_WORDS: dict[str, tuple[str, str]] = {
    "store.disk_full": ("{disk} is full", "free space on {disk}"),
    "store.io": ("{disk} reported an I/O error", "check the disk (dmesg, smartctl); restore from a backup if it is "
                 "failing"),
    "store.read_only": ("{disk} is read-only", "check the directory's permissions and that its disk is mounted "
                        "read-write"),
    "store.busy": ("the relay's database is busy (another program holds its lock)", "try again in a moment"),
    "store.corrupt": ("the relay's database is damaged", "stop the relay and restore from a backup "
                      "('hbw-relay restore')"),
}
RELAY_DISK = "the relay's disk"
_PG_DISK = "the relay's PostgreSQL server"

# SQLSTATE (class or full code) -> fault code; https://www.postgresql.org/docs/current/errcodes-appendix.html
_PG_FAULTS: dict[str, str] = {
    "53100": "store.disk_full",  # disk_full
    "53": "store.busy",  # insufficient resources (memory, connections)
    "08": "store.busy",  # connection exception: the server is unreachable or went away
    "57P": "store.busy",  # operator intervention: shutting down, cannot connect now
    "40": "store.busy",  # serialization failure, deadlock: retrying is right
    "25006": "store.read_only",  # read_only_sql_transaction (a standby)
    "58": "store.io",  # system error (I/O on the server)
    "XX001": "store.corrupt",
    "XX002": "store.corrupt",
}


def _pg_fault(exc: BaseException) -> str | None:
    """The fault code of a psycopg error, None for other errors (without importing psycopg)."""
    if not type(exc).__module__.startswith("psycopg"):
        return None
    state = getattr(exc, "sqlstate", None)
    if state:
        for prefix in (state, state[:3], state[:2]):
            if prefix in _PG_FAULTS:
                return _PG_FAULTS[prefix]
        return None
    # No SQLSTATE: the connection failed or broke (psycopg.OperationalError, InterfaceError).
    return "store.busy" if type(exc).__name__ in ("OperationalError", "InterfaceError", "PoolTimeout") else None


def storage_error(exc: BaseException, disk: str = RELAY_DISK, outcome: str = "nothing was changed",
                  then: str = "", where: Path | None = None) -> StorageError | None:
    """The ``StorageError`` for a storage fault (SQLite result code, errno or SQLSTATE), or None for anything else.

    Only SQLite's ``OperationalError`` family, ``OSError`` and PostgreSQL's
    resource/connection classes qualify: an integrity error (a replayed nonce, a
    duplicate batch) is a value the caller handles, not a fault of the disk. ``disk``
    names the disk in the words ("the disk that holds /backups") when it is not the
    relay's; ``outcome`` says what was kept, ``then`` what to do once the disk is fixed;
    ``where``, a path on that disk, lets an I/O error of a full disk be told as "full".
    """
    if isinstance(exc, StorageError):
        return exc
    code = _pg_fault(exc)
    if code is not None:
        if disk == RELAY_DISK:
            disk = _PG_DISK
        if code == "store.busy":
            what, fix = (f"{disk} could not be reached or is busy ({type(exc).__name__})",
                         "check that PostgreSQL runs and accepts connections; try again in a moment")
        else:
            what, fix = (w.format(disk=disk) for w in _FAULT_WORDS[code])
    else:
        code = fileio.fault_code(exc, where)
        if code is None:
            return None
        what, fix = (w.format(disk=disk) for w in _FAULT_WORDS[code])
    err = StorageError(f"{what}; {outcome}", code=code, hint=fix + (f", then {then}" if then else ""))
    err.__cause__ = exc
    return err


_DEVICE_HINT = ("nothing was lost: your changes stay queued on this device and go out at a later sync; "
                "if this lasts, tell office IT")


def for_device(err: StorageError) -> StorageError:
    """The same fault in the words a device's person reads: what it means for *their* changes.

    The relay's own words tell IT what to fix; a device's person needs to hear
    that nothing of theirs was lost and that a later sync will do.
    """
    what = _FAULT_WORDS.get(err.code, ("the relay could not use its disk", ""))[0].format(disk=RELAY_DISK)
    hint = "nothing was lost: sync again in a moment" if err.code == "store.busy" else _DEVICE_HINT
    return StorageError(f"{what}, so it could not finish this sync", code=err.code, hint=hint)


def is_storage_fault(exc: BaseException) -> bool:
    return storage_error(exc) is not None


@contextlib.contextmanager
def faults(disk: str = RELAY_DISK, outcome: str = "nothing was changed", then: str = "",
           where: Path | None = None) -> Iterator[None]:
    """Turn a storage fault raised inside the block into ``StorageError``; other errors pass unchanged."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - sqlite3.Error, OSError, psycopg.Error; the rest re-raised
        if not isinstance(e, (sqlite3.Error, OSError)) and _pg_fault(e) is None:
            raise
        err = storage_error(e, disk, outcome, then, where)
        if err is None:
            raise
        raise err from e
