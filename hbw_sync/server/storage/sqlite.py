"""The relay's SQLite backend (the embedded default): schema, migrations, connections, the single writer.

Why one writer: SQLite allows one writer at a time, and the event loop must
never block on a lock or an fsync. So every write goes, as a function, through
a queue to one thread that owns the write connection (as Datasette does). The
thread drains whatever is queued and commits it in *one* transaction: many
devices syncing at once share one fsync (group commit), and no request is
acknowledged before its transaction is durable.

Reads that must see the writer's latest state run in the writer too; plain
listings for admin commands open their own read connection.

Faults of the disk (full, I/O error, read-only, locked) are turned into one
``StorageError`` (``faults.storage_error``; the codes come from
``fileio.fault_code``), so the HTTP edge answers 503 with Retry-After and the
admin CLI exits 74 with words, instead of "internal error (OperationalError)".
A fault fails the writer's whole group: nothing of it is durable. The database
and its -wal/-shm files are 0600 (``fileio.private_sqlite``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import queue
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import sqlite_utils

try:
    import fcntl
except ImportError:  # Windows: no flock; BEGIN IMMEDIATE and the busy timeout alone (``WriteLock``)
    fcntl = None  # type: ignore[assignment]

from ... import fileio
from ...errors import ConfigError, StorageError
from .base import SCHEMA_VERSION, Runner, TxnFn
from .faults import faults, is_storage_fault, storage_error

DB_NAME = "relay.db"
MAX_GROUP = 64  # requests committed together at most
STAGE_THREADS = 2  # threads that write chunk files before the writer's transaction (``Writer.run``)


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
    db.table("meta").create({"key": str, "value": bytes}, pk="key")
    db.table("members").create({"name": str, "role": str, "created_ms": int}, pk="name")
    db.table("devices").create(
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
            "reads": int,  # what its software reads, as it last declared (features.py; NULL: never, reads 0)
        },
        pk="device",
    )
    db.table("invites").create(
        {"token_hash": bytes, "member": str, "role": str, "created_ms": int, "expires_ms": int, "used_ms": int,
         "device": bytes},
        pk="token_hash",
    )
    db.table("batches").create(
        {"rseq": int, "device": bytes, "seq": int, "received_ms": int, "size": int, "n_ops": int, "epoch": int,
         "data": bytes},
        pk="rseq",
    )
    conn.execute("CREATE UNIQUE INDEX batches_device_seq ON batches (device, seq)")
    db.table("keys").create({"epoch": int, "key_id": bytes, "created_ms": int, "created_by": bytes}, pk="epoch")
    db.table("grants").create({"device": bytes, "epoch": int, "data": bytes, "created_ms": int}, pk=("device", "epoch"))
    db.table("snapshots").create({"id": int, "cursor": int, "device": bytes, "created_ms": int, "data": bytes}, pk="id")
    db.table("upload_chunks").create({"device": bytes, "seq": int, "offset": int, "total": int, "data": bytes,
                                "created_ms": int}, pk=("device", "seq", "offset"))
    db.table("board").create({"kind": int, "entity": bytes, "assignee": str, "status": int, "head": bytes, "state": bytes},
                       pk=("kind", "entity"))
    db.table("conflicts").create(
        {"entity": bytes, "field": str, "winner": bytes, "loser": bytes, "winner_value": bytes, "loser_value": bytes,
         "rule": str, "created_ms": int},
        pk=("entity", "field", "loser"),
    )
    db.table("nonces").create({"nonce": bytes, "time_ms": int}, pk="nonce")
    db.table("nonces").create_index(["time_ms"])
    db.table("audit").create({"id": int, "time_ms": int, "actor": str, "action": str, "detail": str}, pk="id")
    _tables_since_1(conn)
    _tables_since_2(conn)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION).encode(),))
    conn.execute("COMMIT")
    conn.close()


#: Tables schema 1 created on first use (so older data dirs lacked them); schema 2 creates them at init.
_SINCE_1 = (
    # Word-code invites (PROTOCOL.md §14a): the sealed full invite under a slot number.
    "CREATE TABLE IF NOT EXISTS invite_codes (slot INTEGER PRIMARY KEY, proof_digest BLOB NOT NULL,"
    " sealed BLOB NOT NULL, token_hash BLOB NOT NULL, expires_ms INTEGER NOT NULL,"
    " failures INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS code_failures (time_ms INTEGER NOT NULL)",
    # Admission (server/admission.py, PROTOCOL.md §14b).
    "CREATE TABLE IF NOT EXISTS enrollments (device BLOB PRIMARY KEY, proof BLOB, token_hash BLOB)",
    "CREATE TABLE IF NOT EXISTS invite_welcomes (token_hash BLOB PRIMARY KEY, data BLOB, epochs BLOB, made_by BLOB)",
    "CREATE TABLE IF NOT EXISTS welcomes (device BLOB PRIMARY KEY, data BLOB, made_by BLOB, created_ms INTEGER)",
    "CREATE TABLE IF NOT EXISTS approvals (id INTEGER PRIMARY KEY, device BLOB, approver BLOB, data BLOB,"
    " created_ms INTEGER)",
    "CREATE INDEX IF NOT EXISTS approvals_device ON approvals (device)",
    # The equipment register (server/equipment.py), keyed by team.
    "CREATE TABLE IF NOT EXISTS equipment (team BLOB NOT NULL, asset TEXT NOT NULL, serial TEXT, model TEXT,"
    " note TEXT, added_ms INTEGER NOT NULL, holder TEXT, lent_ms INTEGER, returned_ms INTEGER,"
    " lost_ms INTEGER, invite_hash BLOB, device BLOB, PRIMARY KEY (team, asset))",
    # Which document chunks each stored batch names (server/chunk_actions.py, garbage collection).
    "CREATE TABLE IF NOT EXISTS chunk_refs (cid BLOB NOT NULL, rseq INTEGER NOT NULL, PRIMARY KEY (cid, rseq))"
    " WITHOUT ROWID",
)


#: Schema 3: the document-chunk index (``server/chunkstore.py``); SQLite keeps the bytes in files
#: under ``DATA/chunks`` and ``data`` NULL, except in backup files (``storage.dump``), which carry them.
_SINCE_2 = (
    "CREATE TABLE IF NOT EXISTS chunks (team BLOB NOT NULL, cid BLOB NOT NULL, size INTEGER NOT NULL,"
    " stored_ms INTEGER NOT NULL, data BLOB, PRIMARY KEY (team, cid))",
)


def _tables_since_1(conn: sqlite3.Connection) -> None:
    for sql in _SINCE_1:
        conn.execute(sql)


def _tables_since_2(conn: sqlite3.Connection) -> None:
    for sql in _SINCE_2:
        conn.execute(sql)


def chunk_files(data: Path) -> Iterator[tuple[bytes, bytes, Path]]:
    """(team, id, path) of every chunk file under ``data/chunks`` (schema 2 kept no index of them)."""
    root = Path(data) / "chunks"
    if not root.is_dir():
        return
    for team_dir in sorted(root.iterdir()):
        for sub in sorted(team_dir.iterdir()) if team_dir.is_dir() else ():
            for f in sorted(sub.iterdir()) if sub.is_dir() else ():
                try:
                    team, cid = bytes.fromhex(team_dir.name), bytes.fromhex(f.name)
                except ValueError:  # a stray temp file
                    continue
                if len(cid) == 16 and f.is_file():
                    yield team, cid, f


def _migrate_3_to_4(conn: sqlite3.Connection, data: Path) -> None:
    """Schema 3 -> 4: ``devices.reads`` (what each device's software reads, PROTOCOL.md §16); NULL until
    the device next syncs, read as 0 (nothing new): a writer keeps the older form until then."""
    cols = {r[1] for r in conn.execute("PRAGMA table_info(devices)")}
    if "reads" not in cols:
        conn.execute("ALTER TABLE devices ADD COLUMN reads INTEGER")


def _migrate_2_to_3(conn: sqlite3.Connection, data: Path) -> None:
    """Schema 2 -> 3: the chunk index, filled from the files schema 2 kept (their mtime as stored time)."""
    _tables_since_2(conn)
    for team, cid, f in chunk_files(data):
        st = f.stat()
        conn.execute("INSERT INTO chunks (team, cid, size, stored_ms) VALUES (?, ?, ?, ?)"
                     " ON CONFLICT (team, cid) DO NOTHING", (team, cid, st.st_size, int(st.st_mtime * 1000)))


def _migrate_1_to_2(conn: sqlite3.Connection, data: Path) -> None:
    """Schema 1 -> 2: the tables schema 1 made on first use, and ``upload_chunks.created_ms`` (expiry).

    Schema 2 has no lazily created tables, so every statement of the relay can be
    the same on PostgreSQL, whose schema is made whole at init.
    """
    cols = {r[1] for r in conn.execute("PRAGMA table_info(upload_chunks)")}
    if "created_ms" not in cols:
        conn.execute("ALTER TABLE upload_chunks ADD COLUMN created_ms INTEGER")
        conn.execute("UPDATE upload_chunks SET created_ms = CAST(strftime('%s','now') AS INTEGER) * 1000")
    _tables_since_1(conn)


#: from-version -> step; each step runs in the same transaction as the version bump.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection, Path], None]] = {1: _migrate_1_to_2, 2: _migrate_2_to_3,
                                                                    3: _migrate_3_to_4}


def schema_of(conn: sqlite3.Connection, path: Path) -> int | None:
    """The schema version of an open relay database; ConfigError if it is not one."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    except sqlite3.DatabaseError as e:
        raise ConfigError(f"{path} is not a relay database ({e})") from None
    if row is None:
        return None
    try:
        return int(row[0].decode())
    except (ValueError, AttributeError, UnicodeDecodeError):
        raise ConfigError(f"{path} is not a relay database (its schema mark is {row[0]!r})") from None


def _connect_existing(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise ConfigError(f"no relay data in {path.parent}", hint="run 'hbw-relay init --data DIR --team NAME' first")
    try:
        return connect(path)
    except sqlite3.DatabaseError as e:
        raise ConfigError(f"{path} is not a relay database ({e})") from None


def migrate(path: Path) -> tuple[int, int]:
    """Upgrade the relay database at ``path`` to ``SCHEMA_VERSION``, one step per version, all in one
    transaction (a failure leaves it as it was). Returns (version found, version now).

    Raises:
        ConfigError: not a relay database, or made by a newer hbw-relay (never downgraded).
    """
    conn = _connect_existing(path)
    try:
        with faults(where=path.parent):
            conn.execute("BEGIN IMMEDIATE")
            try:
                found = schema_of(conn, path)
                if found is None or found > SCHEMA_VERSION or (found < SCHEMA_VERSION and found not in MIGRATIONS):
                    raise ConfigError(f"relay data in {path.parent} has schema {found}; this hbw-relay upgrades "
                                      f"1 to {SCHEMA_VERSION}",
                                      hint="use the hbw-relay version that created it, or restore a matching backup")
                v = found
                while v < SCHEMA_VERSION:
                    MIGRATIONS[v](conn, path.parent)
                    v += 1
                conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(v).encode(),))
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
    finally:
        conn.close()
    return found, v


def open_any_schema(path: Path) -> sqlite3.Connection:
    """A connection to an existing relay database of any schema (for a backup before ``migrate``)."""
    conn = _connect_existing(path)
    try:
        if schema_of(conn, path) is None:
            raise ConfigError(f"{path} is not a relay database (it has no schema mark)")
    except ConfigError:
        conn.close()
        raise
    return conn


def open_checked(path: Path) -> sqlite3.Connection:
    """A connection to an existing relay database of the schema this version knows."""
    conn = _connect_existing(path)
    try:
        found = schema_of(conn, path)
    except ConfigError:
        conn.close()
        raise
    if found != SCHEMA_VERSION:
        conn.close()
        if found is not None and found < SCHEMA_VERSION:
            raise ConfigError(f"relay data in {path.parent} has schema {found}, made by an older hbw-relay; "
                              f"this one uses {SCHEMA_VERSION}",
                              hint=f"back it up ('hbw-relay backup'), then run 'hbw-relay migrate --data {path.parent}'")
        raise ConfigError(f"relay data in {path.parent} has schema {found}; this hbw-relay knows {SCHEMA_VERSION}",
                          hint="use the hbw-relay version that created it, or restore a matching backup")
    return conn


def under_write_lock(path: Path, fn: TxnFn) -> Any:
    """``fn(conn)`` while holding the database's write lock (``BEGIN IMMEDIATE``), then roll back.

    For a look that must not race any writer of any process (``FileChunkStore.unstage``): while
    it runs, no transaction is between its first write and its commit. Changes nothing itself.
    """
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        with faults(where=path.parent):
            conn.execute("BEGIN IMMEDIATE")
            try:
                return fn(conn)
            finally:
                conn.execute("ROLLBACK")
    finally:
        conn.close()


class WriteLock:
    """The relay's writers across processes take turns through one lock file (``relay.db.lock``).

    Why, when ``BEGIN IMMEDIATE`` already lets one writer in at a time: a writer that finds
    the database locked sleeps in SQLite's busy handler (1, 2, 5, 10... ms) and tries again,
    so with ``serve --workers 2`` each turn would cost a sleep. ``flock`` wakes the waiting
    process as soon as the other commits. The kernel releases it when a process dies, so a
    killed worker never strands the others. The busy timeout (30 s) stays for the writers
    that do not take this lock (admin commands, ``bundle ingest``). Not on Windows (no
    ``fcntl``): there the busy handler alone keeps it correct.
    """

    def __init__(self, db_path: Path):
        self.path = db_path.with_name(db_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Wait for the turn (no-op without ``fcntl``)."""
        if fcntl is not None:
            if self._fd is None:
                with faults(where=self.path.parent):
                    self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, fileio.FILE_MODE)
            fcntl.flock(self._fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if fcntl is not None and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Writer:
    """One thread, one connection, a queue of write functions; group commit.

    Several processes may each run a Writer on one database (``serve --workers N``): WAL lets
    their readers go on, ``BEGIN IMMEDIATE`` makes each group one writer's at a time, and
    ``WriteLock`` passes the turn between processes without the busy handler's sleeps. What
    must be shared between them is in the database: ``rseq`` is MAX + 1 inside the
    transaction, nonces and word-code failures are rows.
    """

    def __init__(self, path: Path):
        self.path = path
        self._lock = WriteLock(path)
        self._q: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="hbw-relay-writer", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.commits = 0
        #: The disk fault of the last failed transaction, None once one commits (for /healthz).
        self.fault: StorageError | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None  # staging threads, made on first use
        self._local = threading.local()  # each staging thread's read connection
        self._readers: list[sqlite3.Connection] = []

    def start(self) -> None:
        self._thread.start()
        self._started.wait()
        if self._error:
            raise self._error

    def stop(self) -> None:
        self._q.put(None)
        self._thread.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for conn in self._readers:
            conn.close()

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
        """Queue ``fn(conn, *args)``; the future resolves once its transaction is committed."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._q.put((fn, args, fut))
        return fut

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(conn, *args)`` in the writer; first, outside it, whatever ``fn.stage`` asks (``base.Runner``).

        ``fn.stage(*args)`` (cheap, on the event loop) returns None or ``work(read_txn)``, run in
        a staging thread with a read connection before the transaction (e.g. writing chunk files:
        ``relay.stage``); ``work`` returns None or a cleanup called once the transaction is over.
        A staging failure is not the request's: the writer then does all of it, and answers.
        """
        stage = getattr(fn, "stage", None)
        work = stage(*args) if stage is not None else None
        loop = asyncio.get_running_loop()
        cleanup = await loop.run_in_executor(self._stagers(), self._staged, work) if work is not None else None
        try:
            return await asyncio.wrap_future(self.submit(fn, *args))
        finally:
            if cleanup is not None:
                await loop.run_in_executor(self._stagers(), cleanup)

    def _stagers(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(STAGE_THREADS, thread_name_prefix="hbw-relay-stage")
        return self._pool

    def _staged(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        conn = getattr(self._local, "conn", None)
        try:
            if conn is None:
                conn = self._local.conn = connect(self.path)
                self._readers.append(conn)
            return work(conn)
        except Exception:  # noqa: BLE001 - bad signature, full disk...: the writer decides and answers
            return None

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
                self._lock.acquire()
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
            finally:
                self._lock.release()
            for (_fn, _args, fut), (ok, value) in zip(items, outcomes):
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)
            # Let go of this group's requests now, not when the next one arrives: a 31 MiB body
            # must not outlive its answer while the relay waits.
            first = items = outcomes = fn = args = _fut = _fn = _args = fut = value = err = None  # type: ignore[assignment]
        conn.close()
        self._lock.close()


class SqliteStore:
    """The ``Store`` of a data directory's ``relay.db``: admin transactions on their own connection
    (WAL lets the server go on), the server's through one ``Writer``."""

    kind = "sqlite"

    def __init__(self, data: Path):
        self.data = Path(data)
        self.path = self.data / DB_NAME
        open_checked(self.path).close()

    def transact(self, fn: TxnFn, *args: Any) -> Any:
        conn = open_checked(self.path)
        try:
            with faults(where=self.data):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    out = fn(conn, *args)
                except BaseException:
                    if conn.in_transaction:  # SQLite may already have rolled back (disk full)
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            return out
        finally:
            conn.close()

    def read(self, fn: TxnFn, *args: Any) -> Any:
        conn = open_checked(self.path)
        try:
            with faults(where=self.data):
                return fn(conn, *args)
        finally:
            conn.close()

    def runner(self) -> Runner:
        return Writer(self.path)

    def close(self) -> None:
        pass


def create(data: Path) -> None:
    """A new ``relay.db`` of the current schema in ``data``."""
    create_schema(Path(data) / DB_NAME)
