"""SPLICE (op 0x03): a changed member whose content keeps its old head and tail, only the middle patched.

Why: a one-cell edit of a large sheet shifts everything after the cell, and a MEMBER frame over
the whole inflated sheet (56 MB for 150,000 rows) pays zstd's few bytes per 128 KiB block even
where nothing changed: 6.7 KB for one cell. SPLICE says "keep ``head`` bytes of the dictionary's
content, then the frame's bytes, then its last ``tail`` bytes", so the frame covers only what
changed: content = D[:head] + patch(D[head:len(D)-tail], middle) + D[len(D)-tail:].

The writer picks SPLICE only when it is smaller than the MEMBER frame, or when it is a few
hundred bytes of a large member (``surely_enough``). It usually knows without building that frame: any zstd frame of n bytes has at least ceil(n / 128 KiB) blocks of 3 header
bytes each (``frame_floor``), so a spliced frame under that floor always wins, and the costly
whole-content patch (a 56 MB prefix indexed by zstd) is skipped. Byte layout and limits:
PROTOCOL.md §18c.
"""

from __future__ import annotations

from typing import Callable

from .patch import patch_frame
from .search import Spool
from .span import common_prefix
from .stream import NotExact, inflate_pieces
from .wire import Buf, uvarint

ZSTD_BLOCK = 1 << 17  # zstd's largest block: a frame of n bytes has at least ceil(n / ZSTD_BLOCK) blocks


def common_suffix(a: Buf, b: Buf, limit: int) -> int:
    """Length of the common suffix, at most ``limit``; forward slices from the ends (no reversed copy)."""
    a, b = memoryview(a), memoryview(b)
    la, lb = len(a), len(b)
    n = max(0, min(la, lb, limit))
    lo, step = 0, 1 << 16  # lo: a suffix of this length is known to match
    while lo < n:
        hi = min(n, lo + step)
        if a[la - hi : la - lo] == b[lb - hi : lb - lo]:
            lo, step = hi, min(step * 2, 1 << 22)
            continue
        while hi - lo > 64:  # the difference nearest the end is inside (lo, hi]: bisect
            mid = (lo + hi) // 2
            if a[la - mid : la - lo] == b[lb - mid : lb - lo]:
                lo = mid
            else:
                hi = mid
        while lo < hi and a[la - lo - 1] == b[lb - lo - 1]:
            lo += 1
        return lo
    return n


def common_ends(old: Buf, new: Buf) -> tuple[int, int]:
    """(head, tail): shared prefix and suffix that do not overlap in either buffer."""
    head = common_prefix(old, new)
    return head, common_suffix(old, new, min(len(old), len(new)) - head)


def frame_floor(n: int) -> int:
    """The fewest bytes any checksummed zstd frame holding ``n`` bytes can take.

    Magic (4), frame header descriptor (1), at least one byte of window or size (1), a 3-byte
    header per block (a block holds at most 128 KiB; empty content is one block) and the
    checksum (4). Our patch frames always carry the checksum (§18c).
    """
    return 4 + 1 + 1 + 3 * max(1, -(-n // ZSTD_BLOCK)) + 4


#: A SPLICE at most this size is kept without building the whole-content frame (``surely_enough``)...
SPLICE_ENOUGH = 512
#: ...when the two contents together pass this: where a level-19 frame's tables reach tens of MB.
LEVEL19_BIG = 1 << 20


def surely_enough(cost: int, old_len: int, new_len: int) -> bool:
    """Keep a SPLICE of ``cost`` bytes without building the whole-content frame to compare?

    Always when it is under ``frame_floor``: no whole frame can be smaller. Also when it is at
    most ``SPLICE_ENOUGH`` bytes and the contents are large (together over ``LEVEL19_BIG``):
    the whole frame could save at most those few hundred bytes, and building it costs a
    level-19 pass whose tables grow with the content (about 50 MB for the 1.3 MB body of a
    2,000-paragraph .docx: what kept ``doc update`` of that file at 148 MB).
    """
    if cost < frame_floor(new_len):
        return True
    return cost <= SPLICE_ENOUGH and old_len + new_len > LEVEL19_BIG


def splice_cost(frame: bytes, head: int, tail: int) -> int:
    """What a SPLICE carries beyond a MEMBER with the same fields: its frame and the two lengths."""
    return len(frame) + len(uvarint(head)) + len(uvarint(tail))


def spliced_frame(old: Buf, new: Buf) -> tuple[bytes, tuple[int, int] | None]:
    """The smaller of a MEMBER frame of ``new`` against ``old`` and a SPLICE of it: (frame, (head, tail) or None).

    Builds the whole-content frame only when the spliced one is not surely kept already
    (``surely_enough``), so a small edit of a large member never pays for patching the whole member.
    """
    old, new = memoryview(old), memoryview(new)
    head, tail = common_ends(old, new)
    if head + tail == 0:
        return patch_frame(old, new), None
    mid = patch_frame(old[head : len(old) - tail], new[head : len(new) - tail])
    cost = splice_cost(mid, head, tail)
    if surely_enough(cost, len(old), len(new)):
        return mid, (head, tail)
    whole = patch_frame(old, new)
    return (mid, (head, tail)) if cost < len(whole) else (whole, None)


def ranges(content: Buf | Spool) -> Callable[[int, int], Buf]:
    """``read(a, b)`` -> bytes [a, b) of a buffer (a view, no copy) or of a ``Spool`` (read back)."""
    if isinstance(content, Spool):
        return content.read
    view = memoryview(content)
    return lambda a, b: view[max(0, a) : max(0, b)]


def scan_deflated(old_raw: Buf, new: Buf | Spool, bound: int,
                  keep: int | None = None) -> tuple[int, int, int, bytes] | None:
    """``common_ends`` of the content a raw deflate stream holds and ``new``, inflating it twice a piece at a
    time instead of holding it: (old length, head, tail, old middle), or None if it is not exactly one
    stream of at most ``bound`` bytes, or if its middle is longer than ``keep`` (the middle is held).

    Why: holding the old content beside the new one doubled the writer's peak (both inflated
    sheets, 112 MB for 150,000 rows). The old middle, usually a few bytes, is the only part kept.
    ``new`` may be a ``Spool`` (the writer's new content, on disk): it is read a piece at a time.
    """
    read = ranges(new)
    new_len = len(new)
    try:
        head = old_len = 0
        differs = False
        for piece in inflate_pieces(old_raw, bound):
            if not differs:
                same = common_prefix(piece, read(old_len, old_len + len(piece)))
                head += same
                differs = same < len(piece)
            old_len += len(piece)
        # The tail, comparing old[old_len - m + i] with new[len(new) - m + i] as the old content streams by.
        m = min(old_len, new_len) - head
        start = old_len - m
        shift = new_len - old_len
        last_diff = -1  # offset in the old content of the last byte that differs, inside the compared range
        pos = 0
        for piece in inflate_pieces(old_raw, bound):
            a, b = max(pos, start), pos + len(piece)
            if a < b:
                mine, theirs = memoryview(piece)[a - pos : b - pos], read(a + shift, b + shift)
                if mine != theirs:
                    last_diff = b - 1 - common_suffix(mine, theirs, b - a)
            pos = b
        tail = m if last_diff < 0 else old_len - 1 - last_diff
        if keep is not None and old_len - head - tail > keep:
            return None
        middle = bytearray()
        pos = 0
        for piece in inflate_pieces(old_raw, bound):
            a, b = max(pos, head), min(pos + len(piece), old_len - tail)
            if a < b:
                middle += piece[a - pos : b - pos]
            pos += len(piece)
            if pos >= old_len - tail:
                break
    except NotExact:
        return None
    return old_len, head, tail, bytes(middle)


class Spliced:
    """A SPLICE op's content, D[:head] + middle + D[len(D)-tail:], read by ranges without joining it.

    The reader deflates the content a block at a time from here, so a 56 MB sheet is never held
    twice (the inflated dictionary and the joined content) while it is recompressed.
    """

    __slots__ = ("parts", "starts", "size")

    def __init__(self, dictionary: Buf, head: int, middle: Buf, tail: int):
        d = memoryview(dictionary)
        self.parts = [p for p in (d[:head], memoryview(middle), d[len(d) - tail :]) if len(p)]
        self.starts: list[int] = []
        pos = 0
        for p in self.parts:
            self.starts.append(pos)
            pos += len(p)
        self.size = pos

    def __len__(self) -> int:
        return self.size

    def read(self, a: int, b: int) -> Buf:
        """Bytes [a, b): a view when they lie in one part, else a joined copy (at most one block)."""
        b = min(b, self.size)
        if a >= b:
            return b""
        out: list[Buf] = []
        for start, p in zip(self.starts, self.parts):
            end = start + len(p)
            if end <= a or start >= b:
                continue
            out.append(p[max(a, start) - start : min(b, end) - start])
        return out[0] if len(out) == 1 else b"".join(out)

    def join(self) -> bytes:
        return b"".join(self.parts)
