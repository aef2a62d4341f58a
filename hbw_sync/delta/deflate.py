"""One raw deflate stream, rebuilt byte for byte with zlib (codec 8).

Most zip writers (Python's zipfile, Word for small parts, LibreOffice for parts it does not
split) deflate a member as one zlib stream; the writer finds the level, memLevel and
strategy that reproduce it, and the reader deflates the patched content with them.
PROTOCOL.md §18c.
"""

from __future__ import annotations

import zlib
from typing import Callable

from .wire import Buf

DEFLATE_PIECE = 1 << 16

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


def find_deflate(content: bytes, target: bytes) -> tuple[int, int, int] | None:
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


def inflate_exact(data: Buf, cap: int) -> bytes | None:
    """Inflate a raw deflate stream that must end exactly at the end of ``data``; None if not."""
    d = zlib.decompressobj(-15)
    try:
        out = d.decompress(data, cap + 1)
    except zlib.error:
        return None
    if len(out) > cap or not d.eof or d.unused_data or d.unconsumed_tail:
        return None
    return out
