"""The relay's SQLite store: schema, connections, and the single writer thread.

Why one writer: SQLite allows one writer at a time, and the event loop must
never block on a lock or an fsync. So every write goes, as a function, through
a queue to one thread that owns the write connection (as Datasette does). The
thread drains whatever is queued and commits it in *one* transaction: many
devices syncing at once share one fsync (group commit), and no request is
acknowledged before its transaction is durable.

Reads that must see the writer's latest state run in the writer too; plain
listings for admin commands open their own read connection.

Faults of the disk (full, I/O error, read-only, locked) are turned into one
``StorageError`` here (``storage_error``; the codes come from
``fileio.fault_code``), so the HTTP edge answers 503 with Retry-After and the
admin CLI exits 74 with words, instead of "internal error (OperationalError)".
A fault fails the writer's whole group: nothing of it is durable. The database
and its -wal/-shm files are 0600 (``fileio.private_sqlite``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import sqlite_utils

from .. import fileio
from ..errors import ConfigError, StorageError
from ..i18n import _

DB_NAME = "relay.db"
SCHEMA_VERSION = 1
MAX_GROUP = 64  # requests committed together at most


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


def storage_error(exc: BaseException, disk: str = RELAY_DISK, outcome: str = "nothing was changed",
                  then: str = "", where: Path | None = None) -> StorageError | None:
    """The ``StorageError`` for a disk fault (SQLite result code or errno), or None for anything else.

    Only SQLite's ``OperationalError`` family and ``OSError`` qualify: an
    ``IntegrityError`` (a replayed nonce, a duplicate batch) is a value the
    caller handles, not a fault of the disk. ``disk`` names the disk in the
    words ("the disk that holds /backups") when it is not the relay's;
    ``outcome`` says what was kept, ``then`` what to do once the disk is fixed;
    ``where``, a path on that disk, lets an I/O error of a full disk be told as "full".
    """
    if isinstance(exc, StorageError):
        return exc
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
    """Turn a disk fault raised inside the block into ``StorageError``; other errors pass unchanged."""
    try:
        yield
    except (sqlite3.Error, OSError) as e:
        err = storage_error(e, disk, outcome, then, where)
        if err is None:
            raise
        raise err from e


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the relay database (created 0600 if missing), WAL, synchronous=FULL."""
    with faults(where=path.parent):
        fileio.private_sqlite(path)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        fileio.private_sqlite(path)  # the -wal and -shm files SQLite just made
    return conn


def create_schema(path: Path) -> None:
    conn = connect(path)
    db = sqlite_utils.Database(conn)
    conn.execute("BEGIN IMMEDIATE")
    db["meta"].create({"key": str, "value": bytes}, pk="key")
    db["members"].create({"name": str, "role": str, "created_ms": int}, pk="name")
    db["devices"].create(
        {
            "device": bytes,
            "member": str,
            "author_pub": bytes,
            "transport_pub": bytes,
            "x25519_pub": bytes,
            "enrolled_ms": int,
            "revoked_ms": int,
            "last_seen_ms": int,
            "label": str,
            "last_bundle": int,
            "roster_v": int,  # the roster version at which this device's entry last changed
        },
        pk="device",
    )
    db["invites"].create(
        {"token_hash": bytes, "member": str, "role": str, "created_ms": int, "expires_ms": int, "used_ms": int,
         "device": bytes},
        pk="token_hash",
    )
    db["batches"].create(
        {"rseq": int, "device": bytes, "seq": int, "received_ms": int, "size": int, "n_ops": int, "epoch": int,
         "data": bytes},
        pk="rseq",
    )
    conn.execute("CREATE UNIQUE INDEX batches_device_seq ON batches (device, seq)")
    db["keys"].create({"epoch": int, "key_id": bytes, "created_ms": int, "created_by": bytes}, pk="epoch")
    db["grants"].create({"device": bytes, "epoch": int, "data": bytes, "created_ms": int}, pk=("device", "epoch"))
    db["snapshots"].create({"id": int, "cursor": int, "device": bytes, "created_ms": int, "data": bytes}, pk="id")
    db["upload_chunks"].create({"device": bytes, "seq": int, "offset": int, "total": int, "data": bytes,
                                "created_ms": int}, pk=("device", "seq", "offset"))
    db["board"].create({"kind": int, "entity": bytes, "assignee": str, "status": int, "head": bytes, "state": bytes},
                       pk=("kind", "entity"))
    db["conflicts"].create(
        {"entity": bytes, "field": str, "winner": bytes, "loser": bytes, "winner_value": bytes, "loser_value": bytes,
         "rule": str, "created_ms": int},
        pk=("entity", "field", "loser"),
    )
    db["nonces"].create({"nonce": bytes, "time_ms": int}, pk="nonce")
    db["nonces"].create_index(["time_ms"])
    db["audit"].create({"id": int, "time_ms": int, "actor": str, "action": str, "detail": str}, pk="id")
    from . import admission  # here: admission imports relay, which imports this module

    admission.create_tables(conn)
    ensure_invite_codes(conn)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION).encode(),))
    conn.execute("COMMIT")
    conn.close()


def _add_columns(conn: sqlite3.Connection) -> None:
    """Columns added within schema 1 (older code ignores them): ``upload_chunks.created_ms`` (expiry)."""
    cols = {r[1] for r in conn.execute("PRAGMA table_info(upload_chunks)")}
    if cols and "created_ms" not in cols:
        conn.execute("ALTER TABLE upload_chunks ADD COLUMN created_ms INTEGER")
        conn.execute("UPDATE upload_chunks SET created_ms = CAST(strftime('%s','now') AS INTEGER) * 1000")


def ensure_invite_codes(conn: sqlite3.Connection) -> None:
    """Word-code invites (PROTOCOL.md §14a): the sealed full invite under a slot number. Created on first
    use too, so a relay made before word codes existed needs no migration."""
    conn.execute("CREATE TABLE IF NOT EXISTS invite_codes (slot INTEGER PRIMARY KEY, proof_digest BLOB NOT NULL,"
                 " sealed BLOB NOT NULL, token_hash BLOB NOT NULL, expires_ms INTEGER NOT NULL,"
                 " failures INTEGER NOT NULL DEFAULT 0)")
    conn.execute("CREATE TABLE IF NOT EXISTS code_failures (time_ms INTEGER NOT NULL)")


def open_checked(path: Path) -> sqlite3.Connection:
    """A connection to an existing relay database of the schema this version knows."""
    if not path.exists():
        raise ConfigError(_("no relay data in {parent}").format(parent=path.parent), hint=_("run 'hbw-relay init --data DIR --team NAME' first"))
    try:
        conn = connect(path)
    except sqlite3.DatabaseError as e:
        raise ConfigError(_("{path} is not a relay database ({e})").format(path=path, e=e)) from None
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    except sqlite3.DatabaseError as e:
        conn.close()
        raise ConfigError(_("{path} is not a relay database ({e})").format(path=path, e=e)) from None
    if row is None or row[0] != str(SCHEMA_VERSION).encode():
        conn.close()
        found = row[0].decode() if row else "none"
        raise ConfigError(_("relay data in {parent} has schema {found}; this hbw-relay knows {SCHEMA_VERSION}").format(parent=path.parent, found=found, SCHEMA_VERSION=SCHEMA_VERSION),
                          hint=_("use the hbw-relay version that created it, or restore a "
                                "matching backup"))
    _add_columns(conn)
    return conn


class Writer:
    """One thread, one connection, a queue of write functions; group commit."""

    def __init__(self, path: Path):
        self.path = path
        self._q: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="hbw-relay-writer", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.commits = 0
        #: The disk fault of the last failed transaction, None once one commits (for /healthz).
        self.fault: StorageError | None = None

    def start(self) -> None:
        self._thread.start()
        self._started.wait()
        if self._error:
            raise self._error

    def stop(self) -> None:
        self._q.put(None)
        self._thread.join()

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
        """Queue ``fn(conn, *args)``; the future resolves once its transaction is committed."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._q.put((fn, args, fut))
        return fut

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.wrap_future(self.submit(fn, *args))

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Blocking form of ``run`` for threads without an event loop (admin tasks, tests)."""
        return self.submit(fn, *args).result()

    def _run(self) -> None:
        try:
            conn = connect(self.path)
        except BaseException as e:  # noqa: BLE001 - reported to start()
            self._error = e
            self._started.set()
            return
        self._started.set()
        stop = False
        while not stop:
            first = self._q.get()
            if first is None:
                break
            items = [first]
            while len(items) < MAX_GROUP:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                items.append(nxt)
            outcomes: list[tuple[bool, Any]] = []
            try:
                conn.execute("BEGIN IMMEDIATE")
                for fn, args, _fut in items:
                    conn.execute("SAVEPOINT item")
                    try:
                        outcomes.append((True, fn(conn, *args)))
                        conn.execute("RELEASE item")
                    except BaseException as e:  # noqa: BLE001 - one bad request must not fail the group
                        if is_storage_fault(e):
                            raise  # the disk, not the request: the whole group fails below
                        conn.execute("ROLLBACK TO item")
                        conn.execute("RELEASE item")
                        outcomes.append((False, e))
                conn.execute("COMMIT")
                self.commits += 1
                self.fault = None
            except BaseException as e:  # noqa: BLE001 - disk full, I/O error: nothing of the group is durable
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                err = storage_error(e, where=self.path.parent)
                if err is not None:
                    self.fault = err
                outcomes = [(False, err or e)] * len(items)
            for (_fn, _args, fut), (ok, value) in zip(items, outcomes):
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)
            # Let go of this group's requests now, not when the next one arrives: a 31 MiB body
            # must not outlive its answer while the relay waits.
            first = items = outcomes = fn = args = _fut = _fn = _args = fut = value = err = None  # type: ignore[assignment]
        conn.close()
