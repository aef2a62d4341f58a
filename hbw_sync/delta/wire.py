"""The delta payload's building blocks: method, op and codec numbers, limits, varints, a reader.

Shared by the reader (``rebuild.py``) and the writers (``writer.py``, ``span.py``,
``zipdoc.py``). The byte layout is normative in PROTOCOL.md §18c; this module only names
its numbers and holds the two primitives every method uses. It imports no sibling, so the
method modules can all import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ..errors import ProtocolError

METHOD_PATCH = 1
METHOD_RECIPE = 2

OP_LIT = 0x00
OP_COPY = 0x01
OP_MEMBER = 0x02
OP_SPLICE = 0x03  # a MEMBER whose content keeps the dictionary's head and tail (splice.py)

CODEC_RAW = 0
CODEC_DEFLATE = 8  # one raw deflate stream, zlib parameters (deflate.py)
CODEC_BLOCKS = 9  # independent deflate blocks with a preset window, as LibreOffice writes (blocks.py)
CODEC_TRANSCRIPT = 10  # any raw deflate stream, as its deflate transcript (transcript.py)

MIN_DICT = 8  # libzstd ignores dictionaries under 8 bytes; the format says so explicitly
# A zip member's uncompressed content may be this many times max_size (an .xlsx sheet
# deflates 10-30:1, so its content is much bigger than the whole file)...
PLAIN_FACTOR = 64
PLAIN_CEILING = 256 << 20  # ...but no more than this, unless max_size itself is larger
# A SPLICE over a deflated dictionary (OP_SPLICE, dict codec 8) is rebuilt streaming: the reader
# holds its old and new middles, never its dictionary's or its content's head and tail
# (rebuild.py ``_splice_streamed``). Those streamed bytes bound the reader's work, not its memory,
# so they get their own cap: the dictionary and the content of every such op together may be
# this many times max_size (64 each)...
STREAM_FACTOR = 128
STREAM_CEILING = 2 << 30  # ...but no more than this, unless max_size itself is larger
MAX_VARINT = (1 << 63) - 1

Buf = Union[bytes, bytearray, memoryview]


def uvarint(n: int) -> bytes:
    """Unsigned LEB128, minimal, at most 9 bytes."""
    if n < 0 or n > MAX_VARINT:
        raise ValueError(f"uvarint out of range: {n}")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


class Reader:
    """Bounds-checked cursor over a payload; every failure is a ProtocolError."""

    __slots__ = ("data", "pos")

    def __init__(self, data: memoryview, pos: int = 0):
        self.data = data
        self.pos = pos

    def u8(self) -> int:
        if self.pos >= len(self.data):
            raise ProtocolError("delta is truncated", code="protocol.truncated")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def uvarint(self) -> int:
        value = 0
        for i in range(9):
            b = self.u8()
            value |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                if b == 0 and i > 0:
                    raise ProtocolError("non-minimal varint in delta", code="protocol.delta")
                if value > MAX_VARINT:
                    raise ProtocolError("varint out of range in delta", code="protocol.delta")
                return value
        raise ProtocolError("varint too long in delta", code="protocol.delta")

    def take(self, n: int) -> memoryview:
        if n > len(self.data) - self.pos:
            raise ProtocolError("delta is truncated", code="protocol.truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def at_end(self) -> bool:
        return self.pos == len(self.data)


def plain_cap(max_size: int) -> int:
    """How big a member's uncompressed content or inflated dictionary may be."""
    return min(PLAIN_FACTOR * max_size, max(max_size, PLAIN_CEILING))


def stream_cap(max_size: int) -> int:
    """How many bytes the streamed SPLICE ops of one payload may inflate and rebuild together.

    Why a second cap: a one-cell edit of a 400,000-row sheet is a SPLICE whose dictionary and
    content are 150 MB each; counted against ``plain_cap`` as if held, they passed it, and the
    writer's own check dropped the 352-byte recipe for a 4.7 MB one. The reader holds none of
    those bytes (one inflated piece, one block and its window at a time), so only the work needs a
    bound; what it holds (the two middles) still counts against ``plain_cap``.
    """
    return min(STREAM_FACTOR * max_size, max(max_size, STREAM_CEILING))


@dataclass
class Op:
    """One parsed recipe op (LIT, COPY, MEMBER or SPLICE)."""

    tag: int
    n: int = 0  # LIT/COPY length, MEMBER out_len
    off: int = 0  # COPY offset
    dict_off: int = 0
    dict_len: int = 0
    dict_codec: int = CODEC_RAW
    dict_plain: int = 0
    frame: memoryview | None = None
    frame_size: int = 0
    out_codec: int = CODEC_RAW
    deflate: tuple[int, int, int] = (0, 0, 0)  # level, mem_level, strategy (codecs 8 and 9)
    blocks: tuple[int, int] = (0, 0)  # block_size, window (codec 9)
    head: int = 0  # SPLICE: bytes of the dictionary's content kept before the patched middle
    tail: int = 0  # SPLICE: and after it
