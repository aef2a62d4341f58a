"""Finding a member's deflater as its content streams by, the content spooled instead of held.

Why: the zip recipe needs the deflater that reproduces a changed member's compressed bytes
(codec 8 or 9). It used to inflate the member whole (56 MB for the sheet of a 150,000-row
.xlsx) and deflate it again with each candidate in turn, which kept ``doc update`` of that
sheet at 145 MB. Here every candidate deflates the inflated pieces as they come out, compares
its output with the stored compressed bytes as it goes and drops out at its first mismatch;
the content goes to a temporary file (``Spool``: zstd blocks, encrypted) for the SPLICE scan
and the patch frame, which read it back a range at a time. The compressed bytes themselves are
read from their ``ranged.Source`` a window at a time (``_Window``), never whole. A candidate
is fed exactly as ``deflate.deflate`` and ``blocks.deflate_blocks`` feed zlib, so the one found
is the one those functions (and every reader, ``rebuild.py``) reproduce: the same choice, in the
same order, as the one-shot search.
"""

from __future__ import annotations

import os
import tempfile
import zlib
from typing import IO

import zstandard
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from . import blocks, deflate
from .deflate import DEFLATE_PIECE, FEED, NotExact, inflate_pieces
from .ranged import Source
from .wire import Buf

#: Spooled bytes (compressed, encrypted) up to this size stay in memory (a small member is not worth a
#: file); above, on disk.
SPOOL_IN_MEMORY = 1 << 20
#: Content bytes per spool block: each is one zstd frame, so a range reads back only its blocks.
SPOOL_BLOCK = 1 << 20
#: zstd level of the spool's blocks: 1, the fastest; a sheet's XML still shrinks about tenfold.
SPOOL_LEVEL = 1


class Spool:
    """Bytes written once, in order, then read by ranges: compressed a block at a time (zstd level 1),
    in memory up to ``SPOOL_IN_MEMORY``, else in a temp file; either way encrypted (ChaCha20) under a
    key only this object holds.

    Why compressed: the content of an 800,000-row sheet is 302 MB inflated, all of which went to
    TMPDIR; on a laptop with a small disk or a RAM-backed /tmp that is a lot. Its XML compresses
    about tenfold at zstd's fastest level, which costs less time than writing and encrypting the
    bytes it saves. Each ``SPOOL_BLOCK`` of content is one zstd frame; ``_ends`` indexes where each
    frame ends in the file, so ``read(a, b)`` decrypts and decompresses only the blocks [a, b)
    touches (the last one read is kept, as readers go forward a piece at a time).

    Why encrypted: the spool holds a document's content (a sheet's cells, a report's text), and
    the temp file lies on the shared computer's disk (/tmp, or wherever TMPDIR points), where an
    unlinked file's blocks stay readable after it is closed. Content is never on disk readable
    without the user (the README's promise); the key dies with the object, so the blocks left
    behind are noise. ChaCha20's block counter lets a frame be decrypted from its 64-byte block.
    No authentication: whatever is read back is checked by the delta's own hashes
    (``check_delta``), and nothing else writes the file.

    A temp file that cannot be made or written (ENOSPC, a TMPDIR that is gone or read-only) raises
    ``OSError`` from ``write``: the zip recipe is then given up (``zipdoc.zip_recipe``), not the update.
    """

    def __init__(self) -> None:
        self.file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        self.size = 0
        self._key, self._nonce = os.urandom(32), os.urandom(12)
        self._enc = self._cipher(0).encryptor()
        self._zc = zstandard.ZstdCompressor(level=SPOOL_LEVEL)
        self._zd = zstandard.ZstdDecompressor()
        self._pending = bytearray()  # the block being filled (content)
        self._ends = [0]  # where each written block's frame ends in the file (the first starts at 0)
        self._last: tuple[int, bytes] = (-1, b"")  # the block read last, decompressed

    def _cipher(self, block: int) -> Cipher[None]:
        return Cipher(algorithms.ChaCha20(self._key, block.to_bytes(4, "little") + self._nonce), mode=None)

    @property
    def stored(self) -> int:
        """Bytes written to the file (compressed frames): what TMPDIR holds once the spool is on disk."""
        return self._ends[-1]

    def write(self, data: Buf) -> None:
        self._pending += data
        self.size += len(data)
        if len(self._pending) >= SPOOL_BLOCK:
            with memoryview(self._pending) as view:
                cut = len(view) - len(view) % SPOOL_BLOCK
                for i in range(0, cut, SPOOL_BLOCK):
                    self._put(view[i : i + SPOOL_BLOCK])
            del self._pending[:cut]

    def _put(self, block: Buf) -> None:
        frame = self._zc.compress(block)
        self.file.write(self._enc.update(frame))
        self._ends.append(self._ends[-1] + len(frame))

    def __len__(self) -> int:
        return self.size

    def _block(self, i: int) -> Buf:
        """Content block ``i``: the one still being filled is in memory; the others are read back."""
        if i == len(self._ends) - 1:
            return self._pending
        if self._last[0] != i:
            start, end = self._ends[i], self._ends[i + 1]
            skip = start % 64
            self.file.seek(start - skip)
            frame = self._cipher(start // 64).decryptor().update(self.file.read(end - start + skip))
            self._last = (i, self._zd.decompress(memoryview(frame)[skip:], max_output_size=SPOOL_BLOCK))
        return self._last[1]

    def read(self, a: int, b: int) -> Buf:
        """Bytes [a, b), clipped to what was written."""
        a, b = max(0, a), min(b, self.size)
        if a >= b:
            return b""
        first, last = a // SPOOL_BLOCK, (b - 1) // SPOOL_BLOCK
        if first == last:
            return bytes(self._block(first)[a - first * SPOOL_BLOCK : b - first * SPOOL_BLOCK])
        out = bytearray()
        for i in range(first, last + 1):
            at = i * SPOOL_BLOCK
            out += memoryview(self._block(i))[max(a, at) - at : min(b, at + SPOOL_BLOCK) - at]
        return out

    def join(self) -> Buf:
        """The whole content: only where a frame must see all of it (a whole-content MEMBER)."""
        return self.read(0, self.size)

    def close(self) -> None:
        self.file.close()


class _Window:
    """A member's compressed bytes read from their ``Source`` a piece at a time, shared by the inflater and
    every candidate: what is kept runs from the slowest live candidate's position to the inflater's.

    Why: the search used to take the member whole (29 MB for the sheet of an 800,000-row .xlsx, the
    largest part of ``doc update``'s 94 MB). The inflater reads ahead of every candidate that still
    matches (a deflater's output lags its input), so each byte is read once and about 100 KiB are
    held (measured: 105 KiB for a codec 8 sheet, 76 KiB for LibreOffice's codec 9 blocks).
    """

    def __init__(self, src: Source) -> None:
        self.src = src
        self.start = 0  # offset of buf[0]
        self.buf = bytearray()
        self.fed = 0  # where the inflater has read to

    def __len__(self) -> int:
        return self.src.size

    def _upto(self, end: int) -> None:
        have = self.start + len(self.buf)
        if end > have:
            self.buf += self.src.read(have, max(end - have, FEED))

    def feed(self, off: int, n: int) -> Buf:
        """The inflater's read (it goes forward, ``FEED`` bytes at a time)."""
        self.fed = max(self.fed, off + n)
        if off < self.start:
            return self.src.read(off, n)  # behind the window: cannot happen, the inflater leads
        self._upto(off + n)
        return bytes(self.buf[off - self.start : off - self.start + n])

    def matches(self, off: int, chunk: Buf) -> bool:
        """Is ``chunk`` the bytes at ``off``? (False past the end.)"""
        end = off + len(chunk)
        if end > self.src.size:
            return False
        if off < self.start:
            return self.src.read(off, len(chunk)) == chunk
        self._upto(end)
        with memoryview(self.buf) as view:
            return view[off - self.start : end - self.start] == chunk

    def drop(self, before: int) -> None:
        """Forget the bytes before ``before`` (no candidate and not the inflater needs them again)."""
        cut = min(before, self.fed) - self.start
        if cut > 0:
            del self.buf[:cut]
            self.start += cut


class _Probe:
    """One candidate deflater, compared with the target as its output comes."""

    def __init__(self, target: _Window) -> None:
        self.target = target
        self.pos = 0
        self.alive = True

    def _out(self, chunk: bytes) -> None:
        if not chunk or not self.alive:
            return
        if not self.target.matches(self.pos, chunk):
            self.alive = False
            return
        self.pos += len(chunk)


class ZlibProbe(_Probe):
    """Codec 8: one zlib stream fed ``DEFLATE_PIECE`` pieces, as ``deflate.deflate`` feeds it."""

    def __init__(self, target: _Window, params: tuple[int, int, int]) -> None:
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

    def __init__(self, target: _Window, params: tuple[int, int, int, int, int]) -> None:
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


def find_deflater(raw: Buf | Source, bound: int, spool: Spool | None = None) -> Found | None:
    """The deflater that rebuilds ``raw`` from its own inflated content: ((level, mem_level, strategy),
    (block_size, window) for codec 9 or None for codec 8), or None if none does or ``raw`` is not
    exactly one raw deflate stream inflating to at most ``bound`` bytes.

    The content goes to ``spool`` as it is inflated. Gives up (None, the spool left partial) as
    soon as every candidate has dropped out: the caller then patches the compressed bytes and
    never needs the content. Same answer as ``deflate.find_deflate`` then ``blocks.find_blocks``.
    ``raw`` may be a ``ranged.Source`` (a member's range in a version read by ranges): it is read a
    piece at a time, once, through a window (``_Window``), never whole.
    """
    target = _Window(Source.of(raw))
    zp = [ZlibProbe(target, p) for p in deflate.DEFLATE_TRIES]  # read here: a test may narrow them
    bp = [BlockProbe(target, p) for p in blocks.BLOCK_TRIES]
    probes: list[ZlibProbe | BlockProbe] = [*zp, *bp]
    n = 0
    try:
        for piece in inflate_pieces(Source(target.feed, len(target)), bound):
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
            target.drop(min(p.pos for p in probes if p.alive))
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
