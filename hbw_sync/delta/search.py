"""Finding a member's deflater as its content streams by, the content spooled instead of held.

Why: the zip recipe needs the deflater that reproduces a changed member's compressed bytes
(codec 8 or 9). It used to inflate the member whole (56 MB for the sheet of a 150,000-row
.xlsx) and deflate it again with each candidate in turn, which kept ``doc update`` of that
sheet at 145 MB. Here every candidate deflates the inflated pieces as they come out, compares
its output with the stored compressed bytes as it goes and drops out at its first mismatch;
the content goes to a temporary file (``Spool``) for the SPLICE scan and the patch frame,
which read it back a range at a time. A candidate is fed exactly as ``deflate.deflate`` and
``blocks.deflate_blocks`` feed zlib, so the one found is the one those functions (and every
reader, ``rebuild.py``) reproduce: the same choice, in the same order, as the one-shot search.
"""

from __future__ import annotations

import os
import tempfile
import zlib
from typing import IO

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from . import blocks, deflate
from .deflate import DEFLATE_PIECE, NotExact, inflate_pieces
from .wire import Buf

#: Content up to this size stays in memory (a small member is not worth a file); above, on disk.
SPOOL_IN_MEMORY = 1 << 20


class Spool:
    """Bytes written once, in order, then read by ranges: in memory up to ``SPOOL_IN_MEMORY``, else a temp
    file; either way encrypted (ChaCha20) under a key only this object holds.

    Why encrypted: the spool holds a document's inflated content (a sheet's cells, a report's
    text), and the temp file lies on the shared computer's disk (/tmp, or wherever TMPDIR
    points), where an unlinked file's blocks stay readable after it is closed. Content is never
    on disk readable without the user (the README's promise); the key dies with the object, so
    the blocks left behind are noise. ChaCha20's block counter lets a range be read from its
    64-byte block, so reading back a piece costs what it reads. No authentication: whatever is
    read back is checked by the delta's own hashes (``check_delta``), and nothing else writes
    the file.
    """

    def __init__(self) -> None:
        self.file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        self.size = 0
        self._key, self._nonce = os.urandom(32), os.urandom(12)
        self._enc = self._cipher(0).encryptor()

    def _cipher(self, block: int) -> Cipher[None]:
        return Cipher(algorithms.ChaCha20(self._key, block.to_bytes(4, "little") + self._nonce), mode=None)

    def write(self, data: Buf) -> None:
        self.file.write(self._enc.update(data))
        self.size += len(data)

    def __len__(self) -> int:
        return self.size

    def read(self, a: int, b: int) -> bytes:
        """Bytes [a, b), clipped to what was written."""
        a, b = max(0, a), min(b, self.size)
        if a >= b:
            return b""
        start = a - a % 64
        self.file.seek(start)
        plain = self._cipher(start // 64).decryptor().update(self.file.read(b - start))
        return plain[a - start :]

    def join(self) -> bytes:
        """The whole content: only where a frame must see all of it (a whole-content MEMBER)."""
        return self.read(0, self.size)

    def close(self) -> None:
        self.file.close()


class _Probe:
    """One candidate deflater, compared with the target as its output comes."""

    def __init__(self, target: memoryview) -> None:
        self.target = target
        self.pos = 0
        self.alive = True

    def _out(self, chunk: bytes) -> None:
        if not chunk or not self.alive:
            return
        end = self.pos + len(chunk)
        if end > len(self.target) or self.target[self.pos : end] != chunk:
            self.alive = False
            return
        self.pos = end


class ZlibProbe(_Probe):
    """Codec 8: one zlib stream fed ``DEFLATE_PIECE`` pieces, as ``deflate.deflate`` feeds it."""

    def __init__(self, target: memoryview, params: tuple[int, int, int]) -> None:
        super().__init__(target)
        self.params = params
        level, mem_level, strategy = params
        self.co = zlib.compressobj(level, zlib.DEFLATED, -15, mem_level, strategy)
        self.pending = bytearray()

    def write(self, data: Buf) -> None:
        """Compress ``DEFLATE_PIECE`` pieces straight from ``data``; only a piece's remainder is copied."""
        view = memoryview(data)
        i = 0
        if self.pending:
            i = min(len(view), DEFLATE_PIECE - len(self.pending))
            self.pending += view[:i]
            if len(self.pending) < DEFLATE_PIECE:
                return
            self._out(self.co.compress(bytes(self.pending)))
            self.pending = bytearray()
        while self.alive and len(view) - i >= DEFLATE_PIECE:
            self._out(self.co.compress(view[i : i + DEFLATE_PIECE]))
            i += DEFLATE_PIECE
        if self.alive:
            self.pending += view[i:]

    def finish(self, n: int) -> bool:
        if self.alive and self.pending:
            self._out(self.co.compress(bytes(self.pending)))
        if self.alive:
            self._out(self.co.flush())
        return self.alive and self.pos == len(self.target)


class BlockProbe(_Probe):
    """Codec 9: independent blocks with a preset window, as ``blocks.deflate_blocks`` writes them."""

    def __init__(self, target: memoryview, params: tuple[int, int, int, int, int]) -> None:
        super().__init__(target)
        self.params = params
        self.block_size, self.window = params[3], params[4]
        self.pending = bytearray()
        self.history = b""
        self.started = False

    def _block(self, block: bytes, last: bool) -> None:
        level, mem_level, strategy = self.params[:3]
        if self.started and self.window:
            co = zlib.compressobj(level, zlib.DEFLATED, -15, mem_level, strategy, zdict=self.history)
        else:
            co = zlib.compressobj(level, zlib.DEFLATED, -15, mem_level, strategy)
        self._out(co.compress(block) + co.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH))
        self.started = True
        if self.window:
            self.history = (self.history + block)[-self.window :]

    def write(self, data: Buf) -> None:
        self.pending += data
        done = 0
        while self.alive and len(self.pending) - done > self.block_size:  # the last block ends with Z_FINISH
            self._block(bytes(self.pending[done : done + self.block_size]), last=False)
            done += self.block_size
        if done or not self.alive:
            self.pending = self.pending[done:] if self.alive else bytearray()  # (as ZlibProbe)

    def finish(self, n: int) -> bool:
        if n <= self.block_size:
            return False  # one block is one plain zlib stream: a ZlibProbe already tried it (as find_blocks)
        if self.alive:
            self._block(bytes(self.pending), last=True)
        return self.alive and self.pos == len(self.target)


Found = tuple[tuple[int, int, int], tuple[int, int] | None]


def find_deflater(raw: Buf, bound: int, spool: Spool | None = None) -> Found | None:
    """The deflater that rebuilds ``raw`` from its own inflated content: ((level, mem_level, strategy),
    (block_size, window) for codec 9 or None for codec 8), or None if none does or ``raw`` is not
    exactly one raw deflate stream inflating to at most ``bound`` bytes.

    The content goes to ``spool`` as it is inflated. Gives up (None, the spool left partial) as
    soon as every candidate has dropped out: the caller then patches the compressed bytes and
    never needs the content. Same answer as ``deflate.find_deflate`` then ``blocks.find_blocks``.
    """
    target = memoryview(raw)
    zp = [ZlibProbe(target, p) for p in deflate.DEFLATE_TRIES]  # read here: a test may narrow them
    bp = [BlockProbe(target, p) for p in blocks.BLOCK_TRIES]
    probes: list[ZlibProbe | BlockProbe] = [*zp, *bp]
    n = 0
    try:
        for piece in inflate_pieces(raw, bound):
            n += len(piece)
            if spool is not None:
                spool.write(piece)
            live = False
            for p in probes:
                if p.alive:
                    p.write(piece)
                    live = live or p.alive
            if not live:
                return None
    except NotExact:
        return None
    for z in zp:
        if z.finish(n):
            return z.params, None
    for b in bp:
        if b.finish(n):
            level, mem_level, strategy, block_size, window = b.params
            return (level, mem_level, strategy), (block_size, window)
    return None
