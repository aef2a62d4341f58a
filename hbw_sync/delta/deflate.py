"""One raw deflate stream, rebuilt byte for byte with zlib (codec 8).

Most zip writers (Python's zipfile, Word for small parts, LibreOffice for parts it does not
split) deflate a member as one zlib stream; the writer finds the level, memLevel and
strategy that reproduce it, and the reader deflates the patched content with them.
PROTOCOL.md §18c.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Callable

from .ranged import Source
from .wire import Buf

DEFLATE_PIECE = 1 << 16
PIECE = 1 << 20  # inflated bytes per piece (inflate_pieces)
FEED = 1 << 16  # compressed bytes fed per step (inflate_pieces)

DEFLATE_TRIES: tuple[tuple[int, int, int], ...] = (
    (6, 8, 0),  # zlib default: Python's zipfile, LibreOffice, most tools
    (9, 8, 0),
    (1, 8, 0),
    (5, 8, 0),
    (4, 8, 0),
    (3, 8, 0),
    (2, 8, 0),
    (7, 8, 0),
    (8, 8, 0),
    (9, 9, 0),
    (6, 9, 0),
    (0, 8, 0),
)


def deflate(content: Buf, level: int, mem_level: int, strategy: int) -> bytes:
    view = memoryview(content)
    return deflate_read(lambda a, b: view[a:b], len(view), level, mem_level, strategy)


def deflate_read(read: Callable[[int, int], Buf], n: int, level: int, mem_level: int, strategy: int) -> bytes:
    """``deflate`` of content given as ``read(a, b)`` (a SPLICE member's parts, never joined)."""
    co = zlib.compressobj(level, zlib.DEFLATED, -15, mem_level, strategy)
    parts = [co.compress(read(i, min(n, i + DEFLATE_PIECE))) for i in range(0, n, DEFLATE_PIECE)]
    parts.append(co.flush())
    return b"".join(parts)


def find_deflate(content: Buf, target: Buf) -> tuple[int, int, int] | None:
    """The zlib parameters whose raw deflate of ``content`` is exactly ``target``, if any."""
    view = memoryview(content)
    for level, mem_level, strategy in DEFLATE_TRIES:
        co = zlib.compressobj(level, zlib.DEFLATED, -15, mem_level, strategy)
        pos = 0
        ok = True
        for i in range(0, len(view), DEFLATE_PIECE):
            chunk = co.compress(view[i : i + DEFLATE_PIECE])
            if target[pos : pos + len(chunk)] != chunk:
                ok = False
                break
            pos += len(chunk)
        if ok and target[pos:] == co.flush():
            return level, mem_level, strategy
    return None


class NotExact(ValueError):
    """The range is not one raw deflate stream ending at its end, or it inflates past its bound."""


def inflate_pieces(raw: Buf | Source, bound: int) -> Iterator[bytes]:
    """The inflated bytes of ``raw`` in pieces of at most ``PIECE``; raises ``NotExact`` (at the end, or as
    soon as more than ``bound`` bytes come out) unless ``raw`` is exactly one raw deflate stream.
    ``raw`` may be a ``ranged.Source``: it is read ``FEED`` bytes at a time, never whole."""
    src = raw if isinstance(raw, Source) else memoryview(raw)
    d = zlib.decompressobj(-15)
    pos = total = 0
    while not d.eof:
        try:
            if d.unconsumed_tail:
                out = d.decompress(d.unconsumed_tail, PIECE)
            elif pos < len(src):
                # Compressed input a small piece at a time: zlib copies what one call leaves
                # unconsumed, and 1 MiB of a sheet inflates to 7 MiB (eight calls, eight copies).
                out = d.decompress(src[pos : pos + FEED], PIECE)
                pos = min(len(src), pos + FEED)
            else:
                break
        except zlib.error as e:
            raise NotExact(str(e)) from None
        total += len(out)
        if total > bound:
            raise NotExact("inflates past its bound")
        if out:
            yield out
    if not d.eof or d.unused_data or d.unconsumed_tail or pos < len(src):
        raise NotExact("not one deflate stream ending at the end of its range")


def inflate_exact(data: Buf | Source, cap: int) -> bytearray | None:
    """Inflate a raw deflate stream that must end exactly at the end of ``data``; None if not.

    A piece at a time into one growing buffer: zlib's one-shot output is built in blocks and then
    joined, so a 56 MB sheet held 112 MB for a moment.
    """
    out = bytearray()
    try:
        for piece in inflate_pieces(data, cap):
            out += piece
    except NotExact:
        return None
    return out
