"""A device's document chunks: kept sealed in the store, written out one at a time, fetched by policy.

A chunked document version (PROTOCOL.md §18d-e) is a manifest in the version op; its bytes
are sealed chunks in the ``doc_chunks`` table, under the team's chunk keys (so they are
encrypted at rest by the team key, and the same bytes the relay holds). ``sent`` says the
relay has the chunk (uploaded by this device, confirmed by ``chunk_missing``, or downloaded
from it). Why a table rather than files: one store file to back up and move, and every
change to it is one transaction with the op that refers to it.

Memory: a file is split while it is read (``chunks.Splitter``), each chunk sealed and
inserted before the next is read; a version is written out one opened chunk at a time
(``chunks.Joiner``). Peak memory is a few chunks (256 KiB each) whatever the file's size.

The fetch policy says which documents a device downloads after a sync: ``mine`` (the
default: attached to tasks this member holds, or added by this member), ``all`` (the office
desk machine), ``none`` (only what ``doc get`` asks for).
"""

from __future__ import annotations

import bisect
import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .. import chunks, crypto
from ..errors import UsageError
from ..i18n import _
from .store import Store

POLICIES = ("mine", "all", "none")
DEFAULT_POLICY = "mine"
#: ids per ``IN (...)`` query (SQLite's default variable limit is 32,766; stay far under it).
_GROUP = 500


def _groups(ids: list[bytes], n: int = _GROUP) -> Iterator[list[bytes]]:
    for i in range(0, len(ids), n):
        yield ids[i:i + n]


class LocalChunks:
    """The ``doc_chunks`` table of one store."""

    def __init__(self, store: Store):
        self.store = store
        store.execute("CREATE TABLE IF NOT EXISTS doc_chunks (cid BLOB PRIMARY KEY, epoch INTEGER NOT NULL,"
                      " sealed BLOB NOT NULL, sent INTEGER NOT NULL DEFAULT 0)")

    # -- writing -------------------------------------------------------------------------------

    def split_file(self, keys: chunks.ChunkKeys, stream: BinaryIO, max_size: int) -> chunks.Manifest:
        """Cut, seal and keep a file's chunks (inside the caller's transaction); its manifest."""
        splitter = chunks.Splitter(keys, max_size=max_size)
        for cid, view in splitter.chunks(stream):
            if self.store.execute("SELECT 1 FROM doc_chunks WHERE cid = ?", (cid,)).fetchone():
                continue  # an unchanged part of an earlier version: kept once
            sealed_id, sealed = chunks.seal_chunk(keys, view)
            assert sealed_id == cid
            self.store.execute("INSERT INTO doc_chunks (cid, epoch, sealed, sent) VALUES (?, ?, ?, 0)",
                               (cid, keys.epoch, sealed))
        return splitter.manifest()

    def keep_fetched(self, keys_by_epoch: dict[int, chunks.ChunkKeys], epoch: int,
                     got: Iterable[tuple[bytes, bytes]]) -> int:
        """Keep chunks downloaded from the relay after checking each against its id; returns how many."""
        keys = keys_by_epoch[epoch]
        n = 0
        for cid, sealed in got:
            chunks.open_chunk(keys, cid, sealed)  # IntegrityError: junk stored under this id
            self.store.execute("INSERT OR IGNORE INTO doc_chunks (cid, epoch, sealed, sent) VALUES (?, ?, ?, 1)",
                               (cid, epoch, sealed))
            n += 1
        return n

    def keep_rebuilt(self, keys: chunks.ChunkKeys, cid: bytes, plain: bytes | memoryview) -> None:
        """Keep a chunk rebuilt from a delta version (already checked against its id by the caller).

        Marked sent: this device never uploads it for that version (its author did not either);
        a later version naming it in its routing gets it checked with the relay again (``docsync.push``).
        """
        if self.store.execute("SELECT 1 FROM doc_chunks WHERE cid = ?", (cid,)).fetchone():
            return
        sealed_id, sealed = chunks.seal_chunk(keys, plain)
        assert sealed_id == cid
        self.store.execute("INSERT INTO doc_chunks (cid, epoch, sealed, sent) VALUES (?, ?, ?, 1)",
                           (cid, keys.epoch, sealed))

    # -- reading -------------------------------------------------------------------------------

    def is_unsent(self, cid: bytes) -> bool:
        row = self.store.execute("SELECT sent FROM doc_chunks WHERE cid = ?", (cid,)).fetchone()
        return row is not None and row[0] == 0

    def sealed_size(self, cid: bytes) -> int:
        row = self.store.execute("SELECT length(sealed) FROM doc_chunks WHERE cid = ?", (cid,)).fetchone()
        return 0 if row is None else int(row[0])

    def missing(self, ids: Iterable[bytes]) -> list[bytes]:
        """Those of ``ids`` not held here, in order, each once."""
        ids = list(dict.fromkeys(ids))
        have: set[bytes] = set()
        for group in _groups(ids):
            marks = ",".join("?" * len(group))
            have.update(r[0] for r in self.store.execute(f"SELECT cid FROM doc_chunks WHERE cid IN ({marks})", group))
        return [cid for cid in ids if cid not in have]

    def sealed(self, cid: bytes) -> bytes | None:
        row = self.store.execute("SELECT sealed FROM doc_chunks WHERE cid = ?", (cid,)).fetchone()
        return None if row is None else row[0]

    def write(self, keys: chunks.ChunkKeys, manifest: chunks.Manifest, out: Path) -> int:
        """Rebuild a version into ``out`` (via a ``.hbw-part`` file, renamed once whole and checked); bytes written."""
        tmp = out.with_name(out.name + ".hbw-part")
        joiner = chunks.Joiner(keys, manifest)
        try:
            with open(tmp, "wb") as f:
                for cid in manifest.ids:
                    sealed = self.sealed(cid)
                    if sealed is None:
                        raise UsageError("a part of this document is not on this device",
                                         code="usage.doc_not_local", params={})
                    f.write(joiner.open(cid, sealed))
                joiner.finish()
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, out)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return manifest.size

    def iter_plain(self, keys: chunks.ChunkKeys, manifest: chunks.Manifest) -> Iterator[bytes]:
        """A version's plain bytes one opened chunk at a time (the app streams a download with it).

        Raises ``usage.doc_not_local`` at a missing part and ``IntegrityError`` after the last chunk
        if the whole does not hash to the manifest's SHA-256: a caller that already passed bytes on
        must abort what it sent (a download cut short, never a wrong file taken for whole).
        """
        joiner = chunks.Joiner(keys, manifest)
        for cid in manifest.ids:
            sealed = self.sealed(cid)
            if sealed is None:
                raise UsageError("a part of this document is not on this device", code="usage.doc_not_local",
                                 hint="sync, or run 'doc get' when online")
            yield joiner.open(cid, sealed)
        joiner.finish()

    def range_reader(self, keys: chunks.ChunkKeys, manifest: chunks.Manifest) -> Callable[[int, int], bytes]:
        """``read(off, n)``: bytes of a version held here, opening only the chunks that range covers (the
        last one is kept open: a delta reads forward). Raises ``usage.doc_not_local`` at a missing part."""
        starts = [off for _cid, off, _n in manifest.offsets()]
        last: list[Any] = [None, b""]  # index, plain bytes

        def chunk(i: int) -> bytes:
            if last[0] != i:
                cid = manifest.ids[i]
                sealed = self.sealed(cid)
                if sealed is None:
                    raise UsageError("a part of this document is not on this device", code="usage.doc_not_local",
                                     hint="sync, or run 'doc get' when online")
                last[0], last[1] = i, chunks.open_chunk(keys, cid, sealed, manifest.sizes[i])
            return last[1]

        def read(off: int, n: int) -> bytes:
            i = max(0, bisect.bisect_right(starts, off) - 1)
            if i < len(starts) and off + n <= starts[i] + manifest.sizes[i]:
                return chunk(i)[off - starts[i]:off - starts[i] + n]  # within one chunk: one slice
            out = bytearray()
            while len(out) < n and i < len(starts):
                data = chunk(i)
                a = off + len(out) - starts[i]
                out += data[a:a + n - len(out)]
                i += 1
            # Not copied to bytes: a zip recipe reads a changed member whole (29 MB for an 800,000-row
            # sheet), and a second copy of it was most of ``doc update``'s peak over 100 MB. A bytearray:
            # every caller only reads it.
            return out  # type: ignore[return-value]

        return read

    def read_into(self, keys: chunks.ChunkKeys, manifest: chunks.Manifest) -> bytearray | None:
        """A whole version in one buffer of its size (no second copy while it is assembled); None if a
        part is missing. For the delta path (``docdelta``), where the version must be whole in memory."""
        joiner = chunks.Joiner(keys, manifest)
        out = bytearray(manifest.size)
        for cid, off, n in manifest.offsets():
            sealed = self.sealed(cid)
            if sealed is None:
                return None
            out[off:off + n] = joiner.open(cid, sealed)
        joiner.finish()
        return out

    def read_all(self, keys: chunks.ChunkKeys, manifest: chunks.Manifest) -> bytes | None:
        """A whole version in memory (for callers that want bytes, e.g. small documents); None if a part is missing."""
        joiner = chunks.Joiner(keys, manifest)
        parts = []
        for cid in manifest.ids:
            sealed = self.sealed(cid)
            if sealed is None:
                return None
            parts.append(joiner.open(cid, sealed))
        joiner.finish()
        return b"".join(parts)

    # -- with the relay ------------------------------------------------------------------------

    def unsent(self, limit: int) -> list[bytes]:
        return [r[0] for r in self.store.execute("SELECT cid FROM doc_chunks WHERE sent = 0 LIMIT ?", (limit,))]

    def mark_sent(self, ids: Iterable[bytes]) -> None:
        ids = list(ids)
        for group in _groups(ids):
            marks = ",".join("?" * len(group))
            self.store.execute(f"UPDATE doc_chunks SET sent = 1 WHERE cid IN ({marks})", group)

    def mark_unsent(self, ids: Iterable[bytes]) -> None:
        """Check these with the relay again at the next push (only chunks held here)."""
        ids = list(ids)
        for group in _groups(ids):
            marks = ",".join("?" * len(group))
            self.store.execute(f"UPDATE doc_chunks SET sent = 0 WHERE cid IN ({marks})", group)

    def unsent_bytes(self) -> int:
        return int(self.store.execute("SELECT COALESCE(SUM(length(sealed)), 0) FROM doc_chunks WHERE sent = 0")
                   .fetchone()[0])


def keys_by_epoch(team_keys: dict[int, crypto.TeamKey]) -> dict[int, chunks.ChunkKeys]:
    return {e: chunks.ChunkKeys.of(k) for e, k in team_keys.items()}


def check_policy(value: str) -> str:
    v = value.strip().lower()
    if v not in POLICIES:
        raise UsageError(_("unknown document policy {value!r}").format(value=value), hint=_("one of: mine, all, none"))
    return v
