"""The relay's SQLite store: schema, connections, and the single writer thread.

Why one writer: SQLite allows one writer at a time, and the event loop must
never block on a lock or an fsync. So every write goes, as a function, through
a queue to one thread that owns the write connection (as Datasette does). The
thread drains whatever is queued and commits it in *one* transaction: many
devices syncing at once share one fsync (group commit), and no request is
acknowledged before its transaction is durable.

Reads that must see the writer's latest state run in the writer too; plain
listings for admin commands open their own read connection.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable

import sqlite_utils

from ..errors import ConfigError

DB_NAME = "relay.db"
SCHEMA_VERSION = 1
MAX_GROUP = 64  # requests committed together at most


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
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
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION).encode(),))
    conn.execute("COMMIT")
    conn.close()


def _add_columns(conn: sqlite3.Connection) -> None:
    """Columns added within schema 1 (older code ignores them): ``upload_chunks.created_ms`` (expiry)."""
    cols = {r[1] for r in conn.execute("PRAGMA table_info(upload_chunks)")}
    if cols and "created_ms" not in cols:
        conn.execute("ALTER TABLE upload_chunks ADD COLUMN created_ms INTEGER")
        conn.execute("UPDATE upload_chunks SET created_ms = CAST(strftime('%s','now') AS INTEGER) * 1000")


def open_checked(path: Path) -> sqlite3.Connection:
    """A connection to an existing relay database of the schema this version knows."""
    if not path.exists():
        raise ConfigError(f"no relay data in {path.parent}", hint="run 'hbw-relay init --data DIR --team NAME' first")
    try:
        conn = connect(path)
    except sqlite3.DatabaseError as e:
        raise ConfigError(f"{path} is not a relay database ({e})") from None
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    except sqlite3.DatabaseError as e:
        conn.close()
        raise ConfigError(f"{path} is not a relay database ({e})") from None
    if row is None or row[0] != str(SCHEMA_VERSION).encode():
        conn.close()
        found = row[0].decode() if row else "none"
        raise ConfigError(f"relay data in {path.parent} has schema {found}; this hbw-relay knows {SCHEMA_VERSION}",
                          hint="use the hbw-relay version that created it, or restore a matching backup")
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
                        conn.execute("ROLLBACK TO item")
                        conn.execute("RELEASE item")
                        outcomes.append((False, e))
                conn.execute("COMMIT")
                self.commits += 1
            except BaseException as e:  # noqa: BLE001 - disk full, I/O error: nothing of the group is durable
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                outcomes = [(False, e)] * len(items)
            for (_fn, _args, fut), (ok, value) in zip(items, outcomes):
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)
            # Let go of this group's requests now, not when the next one arrives: a 31 MiB body
            # must not outlive its answer while the relay waits.
            first = items = outcomes = fn = args = _fut = _fn = _args = fut = value = None  # type: ignore[assignment]
        conn.close()
