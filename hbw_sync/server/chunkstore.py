"""Where the relay keeps sealed document chunks: outside its SQLite rows, behind a small interface.

Why not rows: a team's documents are gigabytes where its batches are megabytes. Kept as
files, a chunk is written once and never rewritten, backups can copy them incrementally, and
the SQLite file (and its one writer) stays small. A PostgreSQL relay implements the same
``ChunkStore`` protocol (e.g. large objects, or the same files beside the database).

The relay never opens a chunk: it stores and serves sealed bytes under their 16-byte id
(``hbw_sync.chunks``, PROTOCOL.md §18d). Content-addressed per team:
``<root>/<team hex>/<first 2 hex of the id>/<id hex>``. A put writes a temporary file in the
same directory, fsyncs it, renames it into place and fsyncs the directory, so a crash leaves
either the whole chunk or none (a stray ``.tmp`` is removed by the next ``collect``). A chunk
that is already there is not written again: the first upload of an id wins (an id names one
content, so an honest second upload is the same bytes).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

from .. import clock
from ..chunks import ID_LEN


class ChunkStore(Protocol):
    """What the relay needs of a chunk store; every method takes the team id first."""

    def put(self, team: bytes, cid: bytes, data: bytes) -> bool:
        """Keep a sealed chunk; False if it was already there (nothing written)."""

    def has_many(self, team: bytes, ids: Iterable[bytes]) -> list[bool]:
        """For each id, whether the chunk is held."""

    def get(self, team: bytes, cid: bytes) -> bytes | None:
        """A held chunk's sealed bytes, or None."""

    def delete(self, team: bytes, cid: bytes) -> None:
        """Forget a chunk (no error if it is not held)."""

    def usage(self, team: bytes) -> int:
        """Bytes the team's chunks take (their sealed sizes)."""

    def listing(self, team: bytes) -> Iterator[tuple[bytes, int]]:
        """(id, stored at, ms) of every chunk held for a team: for garbage collection."""


class FileChunkStore:
    """Chunks as files under one directory (the relay's data directory + ``chunks``)."""

    def __init__(self, root: Path, quota: int):
        self.root = Path(root)
        #: Bytes of chunks one team may keep (``limits.CHUNK_QUOTA`` unless the relay was told another).
        self.quota = quota
        self._usage: dict[bytes, int] = {}  # team -> bytes, counted once per process, then kept current

    def _dir(self, team: bytes) -> Path:
        return self.root / team.hex()

    def _path(self, team: bytes, cid: bytes) -> Path:
        if len(cid) != ID_LEN:
            raise ValueError("a chunk id is 16 bytes")
        h = cid.hex()
        return self._dir(team) / h[:2] / h

    def put(self, team: bytes, cid: bytes, data: bytes) -> bool:
        path = self._path(team, cid)
        if path.exists():
            return False
        used = self.usage(team)  # counted before this chunk lands
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
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
        self._usage[team] = used + len(data)
        return True

    def has_many(self, team: bytes, ids: Iterable[bytes]) -> list[bool]:
        return [self._path(team, cid).exists() for cid in ids]

    def get(self, team: bytes, cid: bytes) -> bytes | None:
        try:
            return self._path(team, cid).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, team: bytes, cid: bytes) -> None:
        path = self._path(team, cid)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return
        if team in self._usage:
            self._usage[team] -= size

    def usage(self, team: bytes) -> int:
        if team not in self._usage:
            self._usage[team] = sum(size for _cid, _ms, size in self._scan(team))
        return self._usage[team]

    def listing(self, team: bytes) -> Iterator[tuple[bytes, int]]:
        for cid, ms, _size in self._scan(team):
            yield cid, ms

    def _scan(self, team: bytes) -> Iterator[tuple[bytes, int, int]]:
        base = self._dir(team)
        if not base.is_dir():
            return
        for sub in sorted(base.iterdir()):
            if not sub.is_dir():
                continue
            for f in sorted(sub.iterdir()):
                if f.name.endswith(".tmp"):  # a put cut by a crash: never renamed, never counted
                    if clock.now_ms() / 1000 - f.stat().st_mtime > 3600:
                        with contextlib.suppress(OSError):
                            f.unlink()
                    continue
                try:
                    cid = bytes.fromhex(f.name)
                    st = f.stat()
                except (ValueError, OSError):
                    continue
                if len(cid) == ID_LEN:
                    yield cid, int(st.st_mtime * 1000), st.st_size


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
