"""Relay backups on either backend: one portable file that ``restore`` loads into either backend.

Why one file of our own, not ``pg_dump`` for PostgreSQL: a backup must hold the whole relay
(every table, and the document chunks, which a SQLite relay keeps as files beside its
database), restore with the relay's own command, and move a team between an office relay
(SQLite) and the ministry's PostgreSQL in either direction. A backup file is a SQLite database
of the relay's schema whose ``chunks.data`` column holds the sealed chunk bytes; with
``relay.key`` (kept apart, like any secret) it is the relay. The ministry's own PostgreSQL
backups (pg_dump, base backups) stay valid too: since schema 3 every byte of a PostgreSQL relay
is in its database.

Consistency while the relay runs: SQLite's online backup API copies one snapshot, then the
chunk files its index names are read (a chunk that garbage collection deleted meanwhile had no
reference; its row is left out). PostgreSQL is read in one REPEATABLE READ, READ ONLY
transaction: every table as of one instant.

Rows are copied one at a time (PostgreSQL through a server-side cursor), so memory stays flat
whatever the size of the relay.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Callable, Iterator

from ...errors import ConfigError
from .base import SCHEMA_VERSION

#: Every table of the relay's schema (tests/test_storage.py checks it against both backends' schemas).
TABLES = ("meta", "members", "devices", "invites", "batches", "keys", "grants", "snapshots", "upload_chunks",
          "board", "conflicts", "nonces", "audit", "invite_codes", "code_failures", "enrollments",
          "invite_welcomes", "welcomes", "approvals", "equipment", "chunk_refs", "chunks")
#: Tables whose ``id`` the database numbers (PostgreSQL identity columns: moved on after a restore).
NUMBERED = ("snapshots", "audit", "approvals")

#: (team, id, the row's data) -> the sealed bytes to copy, or None when they are gone.
ReadChunk = Callable[[bytes, bytes, Any], "bytes | None"]
#: (team, id, sealed bytes) -> what the target row's ``data`` holds (the bytes, or None once written as a file).
WriteChunk = Callable[[bytes, bytes, bytes], "bytes | None"]


def rows(txn: Any, sql: str, batch: int = 200) -> tuple[list[str], Iterator[Any]]:
    """(column names, rows) of ``sql``, streamed: PostgreSQL through a server-side cursor of ``batch`` rows."""
    stream = getattr(txn, "stream", None)
    if stream is not None:
        return stream(sql, batch)
    cur = txn.execute(sql)
    return [d[0] for d in cur.description], iter(cur)


def copy(src: Any, dst: Any, read_chunk: ReadChunk, write_chunk: WriteChunk) -> dict[str, int]:
    """Copy every table of ``src`` into ``dst`` (whose tables are empty but for its schema mark).

    Returns rows copied per table. ``meta`` comes whole from ``src`` (its schema mark included).
    ``src`` and ``dst`` are a ``Txn`` each, or a backup file's ``sqlite3.Connection`` (typed ``Any``:
    its ``execute`` takes wider parameters than ``Txn`` states).
    """
    counts: dict[str, int] = {}
    dst.execute("DELETE FROM meta")
    for table in TABLES:
        names, it = rows(src, f"SELECT * FROM {table}", 4 if table == "chunks" else 200)
        cols = ", ".join(f'"{n}"' for n in names)
        sql = f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * len(names))})"
        n = 0
        for row in it:
            row = list(row)
            if table == "chunks":
                i_team, i_cid, i_data = names.index("team"), names.index("cid"), names.index("data")
                team, cid = bytes(row[i_team]), bytes(row[i_cid])
                sealed = read_chunk(team, cid, row[i_data])
                if sealed is None:
                    continue
                row[i_data] = write_chunk(team, cid, sealed)
            dst.execute(sql, [bytes(v) if isinstance(v, memoryview) else v for v in row])
            n += 1
        counts[table] = n
    return counts


def schema_of_file(conn: sqlite3.Connection, path: Path) -> int:
    """The relay schema of a backup file; ConfigError when it is not one."""
    from .sqlite import schema_of

    found = schema_of(conn, path)
    if found is None:
        raise ConfigError(f"{path} is not a relay backup (it has no schema mark)")
    return found


def check_restorable(found: int, path: Path, target: str) -> None:
    """A backup loads into PostgreSQL only at this hbw-relay's schema; SQLite takes older ones (then migrate)."""
    if found > SCHEMA_VERSION or (target == "postgres" and found != SCHEMA_VERSION):
        raise ConfigError(f"{path} holds relay schema {found}; this hbw-relay restores schema {SCHEMA_VERSION} "
                          f"into {'PostgreSQL' if target == 'postgres' else 'SQLite'}",
                          hint="restore it into a SQLite data directory, run 'hbw-relay migrate', and back it up "
                               "again" if found < SCHEMA_VERSION else "use the hbw-relay version that made it")


# -- SQLite's side: chunk bytes between files and a backup file's rows ------------------------------


def _has_chunks(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'chunks'").fetchone() is not None


def pack_chunk_files(backup: Path, data: Path) -> int:
    """Put the bytes of every chunk a SQLite backup file indexes into its rows, from ``data/chunks``.

    A row whose file is gone (collected after the snapshot) is dropped. Returns chunks packed.
    Backups of a schema before 3 hold no index: their files are left where they are.
    """
    from ..chunkstore import FileChunkStore

    files = FileChunkStore(Path(data) / "chunks", 0)
    conn = sqlite3.connect(backup, isolation_level=None)
    try:
        if not _has_chunks(conn):
            return 0
        conn.execute("BEGIN")
        n = 0
        for team, cid in conn.execute("SELECT team, cid FROM chunks").fetchall():
            try:
                sealed = files.path(team, cid).read_bytes()
            except FileNotFoundError:
                conn.execute("DELETE FROM chunks WHERE team = ? AND cid = ?", (team, cid))
                continue
            conn.execute("UPDATE chunks SET data = ? WHERE team = ? AND cid = ?", (sealed, team, cid))
            n += 1
        # Rows may have been dropped: each team's running total is counted again at first use.
        conn.execute("DELETE FROM meta WHERE key LIKE 'chunk_bytes:%'")
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode=DELETE")  # one file to carry away, no -wal beside it
        return n
    finally:
        conn.close()


def unpack_chunk_files(db_path: Path, data: Path) -> int:
    """After a SQLite restore: write each chunk a row carries to ``data/chunks`` and empty its ``data``."""
    from ..chunkstore import FileChunkStore, write_file

    files = FileChunkStore(Path(data) / "chunks", 0)
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        if not _has_chunks(conn):
            return 0
        n = 0
        conn.execute("BEGIN")
        for team, cid in conn.execute("SELECT team, cid FROM chunks WHERE data IS NOT NULL").fetchall():
            (sealed,) = conn.execute("SELECT data FROM chunks WHERE team = ? AND cid = ?", (team, cid)).fetchone()
            write_file(files.path(team, cid), sealed)
            conn.execute("UPDATE chunks SET data = NULL WHERE team = ? AND cid = ?", (team, cid))
            n += 1
        conn.execute("COMMIT")
        if n:
            conn.execute("VACUUM")  # give back the pages the bytes took
        return n
    finally:
        conn.close()


def backup_postgres(url: str, dest: Path) -> int:
    """A backup file of the PostgreSQL relay ``url``, read as of one instant. Returns chunks copied."""
    from .postgres import PgStore
    from .sqlite import create_schema

    create_schema(dest)
    out = sqlite3.connect(dest, isolation_level=None)
    try:
        out.execute("BEGIN")
        store = PgStore(url)
        try:
            counts = store.snapshot(lambda t: copy(t, out, lambda _t, _c, d: None if d is None else bytes(d),
                                                   lambda _t, _c, s: s))
        finally:
            store.close()
        out.execute("COMMIT")
        out.execute("PRAGMA journal_mode=DELETE")
    finally:
        out.close()
    return counts["chunks"]


def restore_postgres(backup: sqlite3.Connection, url: str) -> int:
    """Load a backup file into an empty PostgreSQL database (or schema), all in one transaction."""
    from . import postgres

    counts = postgres.create(url, lambda t: copy(backup, t, lambda _t, _c, d: None if d is None else bytes(d),
                                                 lambda _t, _c, s: s))
    return counts["chunks"]
