"""Members a piece at a time: inflate in bounded pieces, and deflate (codecs 0, 8, 9) as bytes arrive.

Why: a SPLICE of a large sheet keeps most of the old content as it is, so neither its writer nor
its reader needs the whole inflated sheet at once. The writer scans the old member for the shared
head and tail while inflating it (``splice.scan_deflated``); the reader inflates the old member
once and passes the head, the patched middle and the tail straight to the deflater
(``rebuild.py``). The sinks write exactly the bytes ``deflate.deflate`` and
``blocks.deflate_blocks`` write for the same content, however it is fed (PROTOCOL.md §18c: codec
8 feeds zlib 65,536-byte pieces; codec 9 cuts blocks of ``block_size``).
"""

from __future__ import annotations

import zlib

from typing import Callable

from .deflate import DEFLATE_PIECE, NotExact, inflate_pieces
from .wire import Buf

Emit = Callable[[Buf], object]  # where rebuilt bytes go as they are made (list.append, a hash's update)

__all__ = ["NotExact", "inflate_pieces", "RawSink", "ZlibSink", "BlockSink"]


class _Out:
    """Where a sink's bytes go: kept for ``finish`` to join, or handed to ``emit`` as they come (then
    ``finish`` returns b"": the writer's check hashes a rebuilt member without holding it)."""

    def __init__(self, emit: Emit | None = None) -> None:
        self.parts: list[Buf] = []
        self.emit: Emit = self.parts.append if emit is None else emit
        self.written = 0

    def put(self, data: bytes) -> None:
        if data:
            self.emit(data)
            self.written += len(data)


class RawSink(_Out):
    """Codec 0: the content as it is."""

    def write(self, data: Buf) -> None:
        self.put(bytes(data))

    def finish(self) -> bytes:
        return b"".join(self.parts)


class ZlibSink(_Out):
    """Codec 8: one raw zlib stream, fed in ``DEFLATE_PIECE`` pieces exactly as ``deflate.deflate`` feeds it."""

    def __init__(self, level: int, mem_level: int, strategy: int, emit: Emit | None = None) -> None:
        super().__init__(emit)
        self.co = zlib.compressobj(level, zlib.DEFLATED, -15, mem_level, strategy)
        self.pending = bytearray()

    def write(self, data: Buf) -> None:
        self.pending += data
        if len(self.pending) >= DEFLATE_PIECE:
            cut = len(self.pending) - len(self.pending) % DEFLATE_PIECE
            for i in range(0, cut, DEFLATE_PIECE):
                self.put(self.co.compress(bytes(self.pending[i : i + DEFLATE_PIECE])))
            del self.pending[:cut]

    def finish(self) -> bytes:
        if self.pending:
            self.put(self.co.compress(bytes(self.pending)))
        self.put(self.co.flush())
        return b"".join(self.parts)


class BlockSink(_Out):
    """Codec 9: ``blocks.deflate_blocks`` as bytes arrive, holding one block and the window before it."""

    def __init__(self, level: int, mem_level: int, strategy: int, block_size: int, window: int,
                 emit: Emit | None = None) -> None:
        super().__init__(emit)
        self.params = (level, mem_level, strategy)
        self.block_size, self.window = block_size, window
        self.pending = bytearray()  # the block being filled
        self.history = b""  # the last ``window`` bytes before it
        self.started = False  # a block was written already (the next gets a preset dictionary)

    def _block(self, block: Buf, last: bool) -> None:
        level, mem_level, strategy = self.params
        if self.started and self.window:
            co = zlib.compressobj(level, zlib.DEFLATED, -15, mem_level, strategy, zdict=self.history)
        else:
            co = zlib.compressobj(level, zlib.DEFLATED, -15, mem_level, strategy)
        self.put(co.compress(block))
        self.put(co.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH))
        self.started = True
        if self.window:
            self.history = (self.history + bytes(block))[-self.window :]

    def write(self, data: Buf) -> None:
        self.pending += data
        # A block is written only once a byte after it is known: the last block ends with Z_FINISH.
        while len(self.pending) > self.block_size:
            self._block(bytes(self.pending[: self.block_size]), last=False)
            del self.pending[: self.block_size]

    def finish(self) -> bytes:
        self._block(bytes(self.pending), last=True)
        return b"".join(self.parts)
