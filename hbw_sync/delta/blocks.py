"""Deflate in independent blocks with a preset window, as LibreOffice writes large members (codec 9).

LibreOffice (7.x) deflates the big parts of a document (an .xlsx sheet, a long .docx body)
with its own parallel deflater: the content is cut into 128 KiB blocks, each block is
deflated by a fresh zlib stream (level 6, raw, memLevel 8) whose preset dictionary is the
32 KiB of content just before the block, and each block ends with Z_SYNC_FLUSH, the last
with Z_FINISH. The blocks concatenate into one valid deflate stream that no single zlib
call produces, so the plain zlib rebuild (``deflate.py``) never matches it and, before this
codec, the member's *compressed* bytes were patched: about 207 KB for a one-cell edit of a
5,000-row sheet instead of about 0.4 KB. Checked byte for byte against files LibreOffice
7.4 saved (tests/test_office_docs.py). Byte layout and bounds: PROTOCOL.md §18c.
"""

from __future__ import annotations

import zlib
from typing import Callable

from .wire import Buf

MIN_BLOCK = 1 << 12  # bounds the work: at most len(content) / 4096 deflater set-ups
MAX_BLOCK = 1 << 24
MAX_WINDOW = 1 << 15  # zlib's largest window: a longer preset dictionary would not be used

# (level, mem_level, strategy, block_size, window): LibreOffice's ThreadedDeflater first.
BLOCK_TRIES: tuple[tuple[int, int, int, int, int], ...] = ((6, 8, 0, 128 << 10, 32 << 10),)


def deflate_blocks(content: Buf, level: int, mem_level: int, strategy: int, block_size: int, window: int) -> bytes:
    """``content`` as independent deflate blocks, each primed with the ``window`` bytes before it.

    Empty content is one empty block (a single Z_FINISH), as for a single zlib stream.
    """
    view = memoryview(content)
    return deflate_blocks_read(lambda a, b: view[a:b], len(view), level, mem_level, strategy, block_size, window)


def deflate_blocks_read(read: Callable[[int, int], Buf], n: int, level: int, mem_level: int, strategy: int,
                        block_size: int, window: int) -> bytes:
    """``deflate_blocks`` of content given as ``read(a, b)`` -> bytes [a, b) of its ``n`` bytes.

    Why: a SPLICE member's content is never joined (``splice.Spliced``); each block and its
    window are read from its parts.
    """
    parts: list[bytes] = []
    start = 0
    while True:
        end = min(n, start + block_size)
        if start and window:
            co = zlib.compressobj(level, zlib.DEFLATED, -15, mem_level, strategy,
                                  zdict=read(max(0, start - window), start))  # fmt: skip
        else:
            co = zlib.compressobj(level, zlib.DEFLATED, -15, mem_level, strategy)
        parts.append(co.compress(read(start, end)))
        last = end >= n
        parts.append(co.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH))
        if last:
            return b"".join(parts)
        start = end


def find_blocks(content: Buf, target: Buf) -> tuple[int, int, int, int, int] | None:
    """The block parameters that rebuild ``target`` from ``content`` exactly, if any.

    Compares block by block and gives up at the first block that differs, so a member
    written by another deflater costs one block's work per candidate.
    """
    target = memoryview(target)
    view = memoryview(content)
    n = len(view)
    for level, mem_level, strategy, block_size, window in BLOCK_TRIES:
        if n <= block_size:
            continue  # one block is one plain zlib stream: deflate.py already tried it
        pos = 0
        start = 0
        ok = True
        while ok:
            end = min(n, start + block_size)
            co = zlib.compressobj(level, zlib.DEFLATED, -15, mem_level, strategy,
                                  **({"zdict": view[max(0, start - window) : start]} if start and window else {}))  # fmt: skip
            last = end >= n
            chunk = co.compress(view[start:end]) + co.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)
            if target[pos : pos + len(chunk)] != chunk:
                ok = False
                break
            pos += len(chunk)
            if last:
                break
            start = end
        if ok and pos == len(target):
            return level, mem_level, strategy, block_size, window
    return None
