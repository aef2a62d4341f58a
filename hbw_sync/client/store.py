"""The device's local SQLite store: schema, location and transactions.

One file (``store.db``, WAL) in the user's data directory. What is in clear and
what is sealed follows ``vault``: routing columns (assignee, status, due...) and
already sealed batches are readable without the passphrase, so ``status`` and a
scheduled ``sync`` work unattended; every content value sits in a ``state`` or
``body`` blob sealed under the store key.

Transactions: sqlite-utils helpers commit on their own (``with conn:``), which
would break a multi-statement change in two. So the schema is made with
sqlite-utils, and every change runs inside ``Store.transaction()``: an explicit
``BEGIN IMMEDIATE`` on an autocommit connection, with raw SQL inside. A kill -9
at any point leaves either the whole command or none of it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any, Iterator

import msgpack
import platformdirs
import sqlite_utils

from .. import fileio
from ..errors import ConfigError, StorageError, StoreError
from ..i18n import _

SCHEMA_VERSION = 2
#: Tables whose rows keep words as (code, params) since schema 2; their sentence column stays for
#: rows of schema 1 and for logs (English).
NOTICE_TABLES = ("conflicts", "notices", "sync_log")
DB_NAME = "store.db"


def default_home() -> Path:
    """Where the store lives when no home is given: the platform's user data dir.

    HBW_SYNC_HOME is the front end's business (``--home``'s envvar, ``ClientConfig``): the
    library reads no environment variable (STYLE.md §12).
    """
    return Path(platformdirs.user_data_dir("hbw-sync", appauthor=False))


# What a full or failing disk means, in the words of the person at this computer (fileio.fault_code's codes).
_FAULT_WORDS: dict[str, tuple[str, str]] = {
    "store.disk_full": ("this computer's disk is full", "free space on this computer (empty the recycle bin, move "
                        "big files away), then do it again"),
    "store.io": ("this computer's disk reported an error", "tell office IT soon: the disk may be failing"),
    "store.read_only": ("hbw-sync's folder cannot be written", "check that the disk is not read-only and that "
                        "the folder belongs to you"),
    "store.busy": ("another hbw-sync command is using this computer's store", "do it again in a moment"),
    "store.corrupt": ("this computer's hbw-sync store is damaged", "tell office IT: the device can join the team "
                      "again and get the team's data back"),
}


def storage_error(exc: BaseException, where: Path | None = None) -> StorageError | None:
    """A fault of this computer's disk as ``StorageError`` (exit 74) in plain words; None for anything else.

    ``where``: a path on the disk, so that an I/O error of a full disk is told as "full".
    """
    if isinstance(exc, StorageError):
        return exc
    code = fileio.fault_code(exc, where)
    if code is None:
        return None
    what, fix = _FAULT_WORDS[code]
    err = StorageError(_("{what}; nothing was changed").format(what=what), code=code, hint=fix)
    err.__cause__ = exc
    return err


def _pack(v: Any) -> bytes:
    return msgpack.packb(v, use_bin_type=True)


def _unpack(b: bytes) -> Any:
    return msgpack.unpackb(b, raw=False, strict_map_key=False)


class Store:
    """An open store file. ``Store.create`` makes a new one; ``Store.open`` an existing one."""

    def __init__(self, home: Path, conn: sqlite3.Connection):
        self.home = home
        self.conn = conn
        self.db = sqlite_utils.Database(conn)

    # -- opening ----------------------------------------------------------------------------

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        try:
            fileio.private_sqlite(path)  # 0600 before SQLite opens it: its -wal and -shm inherit the mode
            conn = sqlite3.connect(path, isolation_level=None, timeout=10)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # an acknowledged command survives power loss
            conn.execute("PRAGMA foreign_keys=ON")
            fileio.private_sqlite(path)
        except (sqlite3.Error, OSError) as e:
            raise storage_error(e, path.parent) or StoreError(_("cannot open the local store {path}: {e}").format(path=path, e=e)) from None
        return conn

    @classmethod
    def open(cls, home: Path | None = None) -> "Store":
        home = Path(home) if home else default_home()
        path = home / DB_NAME
        if not path.exists():
            raise ConfigError(
                _("no hbw-sync store in {home}").format(home=home), code="config.no_store"
            )
        store = cls(home, cls._connect(path))
        version = store.meta("schema")
        if version == 1:
            store._migrate_1_to_2()
            version = store.meta("schema")
        if version != SCHEMA_VERSION:
            raise StoreError(_("store {path} has schema version {version}; this hbw-sync knows {SCHEMA_VERSION}").format(path=path, version=version, SCHEMA_VERSION=SCHEMA_VERSION))
        return store

    @classmethod
    def create(cls, home: Path | None = None) -> "Store":
        home = Path(home) if home else default_home()
        path = home / DB_NAME
        if path.exists():
            raise ConfigError(_("{home} already holds an hbw-sync store").format(home=home), hint=_("use another --home, or keep using this one"))
        try:
            fileio.private_dir(home)
        except OSError as e:
            raise StoreError(_("cannot create {home}: {e}").format(home=home, e=e)) from None
        store = cls(home, cls._connect(path))
        store._create_schema()
        return store

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate_1_to_2(self) -> None:
        """Schema 2: notices, conflicts and sync-log entries keep a ``code`` and JSON ``params``.

        Why: their words are rendered when shown, in the language of that moment (``notices.py``),
        not stored as a sentence in the language of the moment they happened. Rows written by
        schema 1 keep their sentence (``code`` NULL) and are shown as they are.
        """
        with self.transaction():
            for table in NOTICE_TABLES:
                have = {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}
                for column in ("code", "params"):
                    if column not in have:
                        self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
            self.set_meta("schema", 2)

    def _create_schema(self) -> None:
        db = self.db
        with self.transaction():
            db.table("meta").create({"key": str, "value": bytes}, pk="key")
            db.table("team_keys").create({"epoch": int, "key_id": bytes, "sealed": bytes}, pk="epoch")
            db.table("entities").create(
                {
                    "kind": int,
                    "id": bytes,
                    "assignee": str,
                    "status": int,
                    "due": int,
                    "priority": int,
                    "needs": int,
                    "pinned": int,
                    "head": bytes,
                    "state": bytes,
                },
                pk=("kind", "id"),
            )
            db.table("oplog").create(
                {
                    "op_id": bytes,
                    "kind": int,
                    "entity": bytes,
                    "device": bytes,
                    "hlc": int,
                    "received_ms": int,
                    "batch_seq": int,
                    "body": bytes,
                },
                pk="op_id",
            )
            db.table("oplog").create_index(["kind", "entity"])
            db.table("oplog").create_index(["batch_seq"])
            db.table("outbox").create(
                {"seq": int, "state": str, "n_ops": int, "size": int, "data": bytes, "created_ms": int, "closed_ms": int},
                pk="seq",
            )
            db.table("inbox").create({"rseq": int, "device": bytes, "received_ms": int, "data": bytes}, pk="rseq")
            db.table("downloads").create({"rseq": int, "device": bytes, "received_ms": int, "size": int}, pk="rseq")
            db.table("download_chunks").create({"rseq": int, "offset": int, "data": bytes}, pk=("rseq", "offset"))
            db.table("conflicts").create(
                {
                    "id": int,
                    "kind": int,
                    "entity": bytes,
                    "field": str,
                    "winner": bytes,
                    "loser": bytes,
                    "detail": str,
                    "created_ms": int,
                    "seen": int,
                    "code": str,
                    "params": str,
                },
                pk="id",
            )
            db.table("conflicts").create_index(["entity", "field", "loser"], unique=True)
            db.table("blobs").create({"sha256": bytes, "size": int, "nonce": bytes, "sealed": bytes}, pk="sha256")
            db.table("notices").create({"id": int, "created_ms": int, "text": str, "seen": int, "code": str,
                                        "params": str}, pk="id")
            db.table("sync_log").create(
                {"id": int, "started_ms": int, "finished_ms": int, "ok": int, "how": str, "detail": str, "code": str,
                 "params": str}, pk="id"
            )
            self.set_meta("schema", SCHEMA_VERSION)

    # -- transactions and meta ----------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic change. Nested use joins the outer transaction."""
        if self.conn.in_transaction:
            yield self.conn
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise storage_error(e, self.home) or StoreError(_("the local store is busy or unwritable: {e}").format(e=e)) from None
        try:
            yield self.conn
        except BaseException as e:
            if self.conn.in_transaction:  # SQLite may have rolled back already (disk full)
                self.conn.execute("ROLLBACK")
            fault = storage_error(e, self.home)
            if fault is not None and fault is not e:
                raise fault from None
            raise
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as e:  # disk full, I/O error: nothing was written
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise storage_error(e, self.home) or StoreError(_("could not save the change (nothing was changed): {e}").format(e=e)) from None

    @contextlib.contextmanager
    def savepoint(self, name: str = "part") -> Iterator[None]:
        """A part of the current transaction undone alone if it raises (the outer change goes on).

        Why: ``transaction`` joins an outer one, so a step that may fail halfway inside a sync's
        apply (a derived manifest's chunks, kept as they are cut) needs its own undo.
        """
        with self.transaction():
            self.conn.execute(f"SAVEPOINT {name}")
            try:
                yield
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute(f"ROLLBACK TO {name}")
                    self.conn.execute(f"RELEASE {name}")
                raise
            self.conn.execute(f"RELEASE {name}")

    def meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else _unpack(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, _pack(value)))

    def execute(self, sql: str, params: tuple | list = ()) -> sqlite3.Cursor:
        try:
            return self.conn.execute(sql, params)
        except sqlite3.OperationalError as e:
            raise storage_error(e, self.home) or StoreError(_("local store error: {e}").format(e=e)) from None
