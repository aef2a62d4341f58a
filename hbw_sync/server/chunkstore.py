"""Where the relay keeps sealed document chunks: the index in the team's transaction, the bytes per backend.

The relay never opens a chunk: it stores and serves sealed bytes under their 16-byte id
(``hbw_sync.chunks``, PROTOCOL.md §18d). Two parts:

- **The index** (table ``chunks``: team, id, size, stored at) is written in the same
  transaction as the rest of the request, under the team's lock (SQLite's one writer, or
  PostgreSQL's advisory lock), so quota, ``chunk_missing`` and garbage collection see one
  consistent state across every relay process, and a batch naming a chunk cannot be accepted
  between GC's look and its delete. A row means "held": the bytes are in place before the
  row commits, and a file is removed only once its row's deletion has committed (GC's next
  ``sweep``), so a rollback or a crash can leave bytes without a row (never served or counted,
  overwritten by the next put of that id, swept after the grace period), never a row without bytes.
- **The bytes** go where the backend says. PostgreSQL: in the ``chunks.data`` column (BYTEA,
  storage EXTERNAL: sealed bytes do not compress). Why there and not in large objects or files:
  several relay processes on several hosts must all see a chunk the moment its row commits, a
  row and its bytes commit or roll back together, and the ministry's pg_dump, replication and
  backups cover them with nothing else to copy; large objects would need their own unlink
  bookkeeping and are skipped by a per-table dump. SQLite: files under ``DATA/chunks`` as
  before (``<team hex>/<first 2 hex of the id>/<id hex>``, temp + fsync + rename + fsync of the
  directory), so a team's gigabytes of documents stay out of the one SQLite file that every
  sync writes to; the column stays NULL (a backup file fills it: ``storage.dump``). Their bytes
  are written before the transaction by staging threads (``stage``, ``relay.stage``), so the
  single writer only indexes them (``scripts/bench_chunkstore.py`` measures both, and rows in
  SQLite: 1.2-1.4x the writer time of an index row alone, against 3.5-6x for files written in it).

A chunk already indexed is not written again: the first upload of an id wins (an id names one
content, so an honest second upload is the same bytes).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from .. import codec
from ..chunks import ID_LEN
from .storage import Txn

#: Ids per ``IN (...)`` list: under SQLite's oldest bound-parameter limit (999) with the team.
_IN_BATCH = 500


class ChunkStore(Protocol):
    """What the relay needs of a chunk store; every method runs in the caller's transaction, team first."""

    #: Bytes of chunks one team may keep (``limits.CHUNK_QUOTA`` unless the relay was told another).
    quota: int

    def put(self, conn: Txn, team: bytes, cid: bytes, data: bytes, now: int) -> bool:
        """Keep a sealed chunk; False if it was already held (nothing written)."""
        ...

    def has_many(self, conn: Txn, team: bytes, ids: Iterable[bytes]) -> list[bool]:
        """For each id, whether the chunk is held."""
        ...

    def get(self, conn: Txn, team: bytes, cid: bytes) -> bytes | None:
        """A held chunk's sealed bytes, or None."""
        ...

    def delete(self, conn: Txn, team: bytes, cid: bytes) -> None:
        """Forget a chunk (no error if it is not held)."""
        ...

    def usage(self, conn: Txn, team: bytes) -> int:
        """Bytes the team's chunks take (their sealed sizes)."""
        ...

    def garbage(self, conn: Txn, team: bytes, before_ms: int) -> list[bytes]:
        """Ids stored before ``before_ms`` that no stored batch refers to (``chunk_refs``)."""
        ...


class _Index:
    """The ``chunks`` table, in the portable SQL of ``storage.base``; subclasses say where bytes go."""

    def __init__(self, quota: int):
        self.quota = quota

    def has_many(self, conn: Txn, team: bytes, ids: Iterable[bytes]) -> list[bool]:
        ids = list(ids)
        held: set[bytes] = set()
        for i in range(0, len(ids), _IN_BATCH):
            part = ids[i:i + _IN_BATCH]
            marks = ", ".join("?" * len(part))
            held.update(bytes(r[0]) for r in conn.execute(
                f"SELECT cid FROM chunks WHERE team = ? AND cid IN ({marks})", (team, *part)))
        return [cid in held for cid in ids]

    def usage(self, conn: Txn, team: bytes) -> int:
        # A running total in ``meta``, kept in the same transactions as the rows: a SUM over a full
        # team's index (20 GiB of chunks: ~300,000 rows) took 175 ms, on every upload. Counted once
        # when missing (a migrated relay, a restored backup).
        key = usage_key(team)
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is not None:
            return int(codec.unpack(bytes(row[0])))
        used = int(conn.execute("SELECT COALESCE(SUM(size), 0) FROM chunks WHERE team = ?", (team,)).fetchone()[0])
        self._set_usage(conn, team, used)
        return used

    def _set_usage(self, conn: Txn, team: bytes, used: int) -> None:
        conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                     (usage_key(team), codec.pack(used)))

    def garbage(self, conn: Txn, team: bytes, before_ms: int) -> list[bytes]:
        return [bytes(r[0]) for r in conn.execute(
            "SELECT c.cid FROM chunks c WHERE c.team = ? AND c.stored_ms < ?"
            " AND NOT EXISTS (SELECT 1 FROM chunk_refs r WHERE r.cid = c.cid) ORDER BY c.cid", (team, before_ms))]

    def _held(self, conn: Txn, team: bytes, cid: bytes) -> bool:
        return conn.execute("SELECT 1 FROM chunks WHERE team = ? AND cid = ?", (team, cid)).fetchone() is not None

    def _index(self, conn: Txn, team: bytes, cid: bytes, size: int, now: int, data: bytes | None) -> bool:
        used = self.usage(conn, team)  # before the row: counted without it when missing
        if conn.execute("INSERT INTO chunks (team, cid, size, stored_ms, data) VALUES (?, ?, ?, ?, ?)"
                        " ON CONFLICT (team, cid) DO NOTHING", (team, cid, size, now, data)).rowcount != 1:
            return False
        self._set_usage(conn, team, used + size)
        return True

    def _unindex(self, conn: Txn, team: bytes, cid: bytes) -> bool:
        used = self.usage(conn, team)
        row = conn.execute("DELETE FROM chunks WHERE team = ? AND cid = ? RETURNING size", (team, cid)).fetchone()
        if row is None:
            return False
        self._set_usage(conn, team, used - int(row[0]))
        return True


class DbChunkStore(_Index):
    """Index and bytes in one row (PostgreSQL): every relay process on every host sees the same chunks."""

    def put(self, conn: Txn, team: bytes, cid: bytes, data: bytes, now: int) -> bool:
        _check_id(cid)
        return self._index(conn, team, cid, len(data), now, bytes(data))

    def get(self, conn: Txn, team: bytes, cid: bytes) -> bytes | None:
        run = getattr(conn, "execute_binary", conn.execute)  # PostgreSQL: BYTEA as is, not as hex text
        row = run("SELECT data FROM chunks WHERE team = ? AND cid = ?", (team, cid)).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def delete(self, conn: Txn, team: bytes, cid: bytes) -> None:
        self._unindex(conn, team, cid)


class FileChunkStore(_Index):
    """Index in the database, bytes as files under one directory (the data directory + ``chunks``).

    Bytes may be written before the transaction, outside the single writer (``stage``); the
    transaction then only indexes them. A staged file is marked (path -> its bytes) until a
    ``put`` indexes it or ``unstage`` removes it, so a refused request leaves no file, and a
    file some other request indexed meanwhile is never removed.
    """

    def __init__(self, root: Path, quota: int, db_path: Path | None = None):
        super().__init__(quota)
        self.root = Path(root)
        #: The relay's SQLite database: ``unstage`` looks there, under its write lock, before removing a file.
        self.db_path = db_path
        self._staged: dict[Path, bytes] = {}
        self._mu = threading.Lock()

    def path(self, team: bytes, cid: bytes) -> Path:
        """Where the bytes of ``cid`` live (whether or not they are held)."""
        _check_id(cid)
        h = cid.hex()
        return self.root / team.hex() / h[:2] / h

    def put(self, conn: Txn, team: bytes, cid: bytes, data: bytes, now: int) -> bool:
        path = self.path(team, cid)
        with self._mu:
            staged = self._staged.pop(path, None)  # whoever indexes a path takes its mark
            if self._held(conn, team, cid):
                return False
            if staged is None or staged != data or not path.exists():
                write_file(path, data)  # not staged (bundles, admin), or staged other bytes
        return self._index(conn, team, cid, len(data), now, None)

    def get(self, conn: Txn, team: bytes, cid: bytes) -> bytes | None:
        if not self._held(conn, team, cid):
            return None
        try:
            return self.path(team, cid).read_bytes()
        except FileNotFoundError:  # lost with a disk, or a GC whose transaction then failed
            return None

    def delete(self, conn: Txn, team: bytes, cid: bytes) -> None:
        # Only the row: its file goes with the next ``sweep``, once this deletion has committed.
        # Unlinking here could leave a row without its bytes if the transaction then failed.
        self._unindex(conn, team, cid)

    def sweep(self, conn: Txn, team: bytes, before_ms: int) -> int:
        """Remove files no index row names, written before ``before_ms``; returns how many.

        They are chunks an earlier garbage collection unindexed (committed since), and what a
        crash leaves: bytes staged or written for a transaction that never committed (never
        served or counted), cut temporary files. Run by ``collect`` before it unindexes
        anything (rarely: it lists the team's directory); a staged file is always newer.
        """
        base = self.root / team.hex()
        if not base.is_dir():
            return 0
        gone = 0
        for sub in sorted(base.iterdir()):
            for f in sorted(sub.iterdir()) if sub.is_dir() else ():
                try:
                    if f.stat().st_mtime * 1000 >= before_ms:
                        continue
                    cid = bytes.fromhex(f.name) if not f.name.endswith(".tmp") else b""
                except (OSError, ValueError):
                    continue
                if len(cid) == ID_LEN and self._held(conn, team, cid):
                    continue
                with contextlib.suppress(OSError):
                    f.unlink()
                    gone += 1
        return gone

    def stage(self, team: bytes, cid: bytes, data: bytes) -> Path | None:
        """Write a chunk's bytes into place ahead of its transaction, outside the single writer.

        Returns the path to hand to ``unstage`` after the request, or None when nothing was
        written (a file is there already: held, or being staged by another request). A staged
        file without an index row is never served or counted.
        """
        path = self.path(team, cid)
        with self._mu:
            if path in self._staged or path.exists():
                return None
            self._staged[path] = data
        try:
            write_file(path, data)
        except BaseException:
            with self._mu:
                self._staged.pop(path, None)
            raise
        return path

    def unstage(self, paths: Iterable[Path]) -> None:
        """After the request: remove the staged files no ``put`` indexed (refused, or never reached).

        A mark only says what *this* process did. Under ``serve --workers N`` another process
        (or ``bundle ingest``) may have indexed the same id from this very file meanwhile (its
        ``put`` finds the file in place), so each file is removed only after a look at the index
        made while holding the database's write lock (``BEGIN IMMEDIATE``): then no writer is
        between writing a file and committing its row. Rare: only a refused ``chunk_put`` leaves marks.
        """
        with self._mu:
            left = [path for path in paths if self._staged.pop(path, None) is not None]
        if not left:
            return
        if self.db_path is None:
            for path in left:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            return
        from .storage.sqlite import under_write_lock

        def remove(conn: Txn) -> None:
            for path in left:
                try:
                    team, cid = bytes.fromhex(path.parent.parent.name), bytes.fromhex(path.name)
                except ValueError:
                    continue
                if not self._held(conn, team, cid):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()

        under_write_lock(self.db_path, remove)


def usage_key(team: bytes) -> str:
    """The ``meta`` key of a team's running total of chunk bytes."""
    return "chunk_bytes:" + team.hex()


def _check_id(cid: bytes) -> None:
    if len(cid) != ID_LEN:
        raise ValueError("a chunk id is 16 bytes")


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` at ``path`` whole or not at all: temp in the same directory, fsync, rename, fsync dir."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:  # a full disk: leave no partial file behind
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def for_backend(kind: str, data_dir: Path, quota: int) -> ChunkStore:
    """The chunk store of a relay whose database is ``kind`` ("sqlite" or "postgres")."""
    if kind == "postgres":
        return DbChunkStore(quota)
    from .storage.sqlite import DB_NAME

    return FileChunkStore(Path(data_dir) / "chunks", quota, Path(data_dir) / DB_NAME)


def _fsync_dir(path: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
