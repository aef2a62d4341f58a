"""The zip recipe: office documents (docx, xlsx, pptx, odt, ods...) rebuilt member by member.

A member whose record did not change is copied from the base; a changed member is sent as
a patch of its *uncompressed* content and recompressed by the reader with the deflater
that reproduces the sender's bytes exactly: one zlib stream (``deflate.py``) or
LibreOffice's blocks (``blocks.py``). A member that no known deflater reproduces (Word,
zopfli, libdeflate...) goes as a patch of its deflate transcript (codec 10, ``transcript.py``)
when that is smaller than patching its compressed bytes; PROTOCOL.md §18c says why and what
each costs.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
from dataclasses import dataclass
from typing import IO, Any

from .deflate import inflate_exact
from .patch import patch_frame
from .search import Spool, find_deflater
from .splice import ranges, scan_deflated, splice_cost, spliced_frame, surely_enough
from .transcript import MAX_DEFLATED, transcribe
from .wire import CODEC_DEFLATE, CODEC_RAW, CODEC_TRANSCRIPT, Buf, plain_cap
from .writer import RecipeWriter


@dataclass
class Member:
    name: str
    method: int
    flags: int
    hoff: int  # local header offset
    ds: int  # data start
    de: int  # data end
    rec_end: int = 0  # start of the next record, or of the central directory


class ViewFile(io.RawIOBase):
    """A read-only file over a buffer, so that zipfile reads a bytearray where it lies.

    Why: ``io.BytesIO`` shares a ``bytes`` object but copies any other buffer, and the writer
    gets the versions as the chunk store assembles them (bytearrays, 5.8 MB each for the
    150,000-row sheet); copying them to bytes for ``make_delta`` cost the sender 11 MB of peak.
    """

    def __init__(self, data: Buf) -> None:
        super().__init__()
        self.view = memoryview(data).cast("B")
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        start = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: len(self.view)}[whence]
        self.pos = max(0, start + offset)
        return self.pos

    def readinto(self, b: Any) -> int:
        n = max(0, min(len(b), len(self.view) - self.pos))
        b[:n] = self.view[self.pos : self.pos + n]
        self.pos += n
        return n


def as_file(data: Buf) -> IO[bytes]:
    """``data`` as a file for zipfile, without a copy."""
    return io.BytesIO(data) if isinstance(data, bytes) else ViewFile(data)  # type: ignore[return-value]


def zip_layout(data: Buf) -> tuple[list[Member], int] | None:
    """Members sorted by offset, and the central directory's offset; None if not a plain zip."""
    try:
        with zipfile.ZipFile(as_file(data)) as zf:
            infos = zf.infolist()
            start_dir = int(getattr(zf, "start_dir"))
    except Exception:  # any archive zipfile cannot read is simply not rebuilt member by member
        return None
    if not 0 <= start_dir <= len(data):
        return None
    members: list[Member] = []
    for zi in infos:
        h = zi.header_offset
        if h < 0 or h + 30 > len(data) or data[h : h + 4] != b"PK\x03\x04":
            return None
        n, m = struct.unpack_from("<HH", data, h + 26)
        ds = h + 30 + n + m
        de = ds + zi.compress_size
        if de > start_dir:
            return None
        members.append(Member(zi.filename, zi.compress_type, zi.flag_bits, h, ds, de))
    members.sort(key=lambda x: x.hoff)
    for i, mem in enumerate(members):
        nxt = members[i + 1].hoff if i + 1 < len(members) else start_dir
        if nxt < mem.de:
            return None  # overlapping members: not something to rebuild piecewise
        mem.rec_end = nxt
    return members, start_dir


def zip_recipe(base: Buf, new: Buf) -> bytes | None:
    bl = zip_layout(base)
    nl = zip_layout(new)
    if bl is None or nl is None:
        return None
    base_members, base_cd = bl
    new_members, _new_cd = nl
    cap = plain_cap(len(new))
    by_name: dict[str, Member] = {}
    by_hash: dict[bytes, Member] = {}
    bm: Member | None  # a base member here; below, the one a new member matches, if any
    bv, nv = memoryview(base), memoryview(new)
    for bm in base_members:
        by_name.setdefault(bm.name, bm)
        by_hash.setdefault(hashlib.sha256(bv[bm.ds : bm.de]).digest(), bm)
    w = RecipeWriter()
    pos = 0
    for nm in new_members:
        w.lit(nv[pos : nm.hoff])
        bm = by_name.get(nm.name)
        record = nv[nm.hoff : nm.rec_end]
        if bm is not None and bv[bm.hoff : bm.rec_end] == record:
            w.copy(bm.hoff, len(record))
            pos = nm.rec_end
            continue
        w.lit(nv[nm.hoff : nm.ds])
        data = nv[nm.ds : nm.de]  # a view: the compressed member is not copied
        same = by_hash.get(hashlib.sha256(data).digest())
        if same is not None and bv[same.ds : same.de] == data:
            w.copy(same.ds, len(data))
        else:
            _member_op(w, base, bm, nm, data, cap)
        w.lit(nv[nm.de : nm.rec_end])
        pos = nm.rec_end
    w.lit(nv[pos:])
    return w.encode(base, (base_cd, len(base) - base_cd))


def _member_op(w: RecipeWriter, base: Buf, bm: Member | None, nm: Member, data: Buf, cap: int) -> None:
    encrypted = bool(nm.flags & 1)
    raw_dict: tuple[int, int, int, int] = (0, 0, CODEC_RAW, 0)
    raw_bytes: Buf = b""
    old_deflated = bm is not None and bm.method == zipfile.ZIP_DEFLATED and not bm.flags & 1
    old_plain = bm is None or (bm.method == zipfile.ZIP_STORED and not bm.flags & 1)  # its bytes are its content
    if bm is not None:
        raw_dict = (bm.ds, bm.de - bm.ds, CODEC_RAW, 0) if bm.de > bm.ds else raw_dict
        raw_bytes = memoryview(base)[bm.ds : bm.de]

    def content_frame(content: Buf | Spool) -> tuple[tuple[int, int, int, int], bytes, tuple[int, int] | None]:
        """The dictionary, frame and splice for a member whose new *content* is rebuilt by the reader."""
        if old_deflated:
            return _against_deflated(raw_dict, raw_bytes, content, cap)
        whole = _whole(content)
        if old_plain:
            return (raw_dict, *spliced_frame(raw_bytes, whole))
        return ((0, 0, CODEC_RAW, 0), *spliced_frame(b"", whole))  # encrypted or another method: no dictionary

    if not encrypted and nm.method == zipfile.ZIP_DEFLATED:
        # The deflater is searched while the member inflates, its content spooled, never held (search.py).
        spool = Spool()
        try:
            found = find_deflater(data, cap, spool)
            if found is not None:
                params, blocks = found
                dict_range, frame, splice = content_frame(spool)
                w.member(dict_range, frame, len(data), params, blocks, splice=splice)
                return
        finally:
            spool.close()
    elif not encrypted and nm.method == zipfile.ZIP_STORED:
        dict_range, frame, splice = content_frame(data)
        w.member(dict_range, frame, len(data), None, splice=splice)
        return
    # Not reproducible here: patch the compressed bytes against the base's compressed bytes,
    # or the member's deflate transcript against the base member's, whichever is smaller.
    frame, splice = spliced_frame(raw_bytes, data)
    if (not encrypted and nm.method == zipfile.ZIP_DEFLATED and old_deflated
            and 0 < len(raw_bytes) <= MAX_DEFLATED and len(data) <= MAX_DEFLATED):
        new_t = transcribe(data, cap)
        old_t = transcribe(raw_bytes, cap) if new_t is not None else None
        if new_t is not None and old_t is not None:
            t_frame, t_splice = spliced_frame(old_t, new_t)
            if len(t_frame) < len(frame):
                w.member((raw_dict[0], raw_dict[1], CODEC_TRANSCRIPT, len(old_t)), t_frame, len(data), None,
                         splice=t_splice, transcript=True)
                return
    w.member(raw_dict, frame, len(data), None, splice=splice)


def _against_deflated(raw_dict: tuple[int, int, int, int], raw: Buf, content: Buf | Spool,
                      cap: int) -> tuple[tuple[int, int, int, int], bytes, tuple[int, int] | None]:
    """``content`` against a base member deflated as one stream: its inflated content is the dictionary.

    The shared head and tail are found while inflating the old member a piece at a time
    (``scan_deflated``), the new content read back from its spool a piece at a time; only when
    the spliced frame is not surely kept (``splice.surely_enough``) are both contents
    materialised whole, to build the MEMBER frame too.
    """
    scanned = scan_deflated(raw, content, cap)
    if scanned is None:  # not one exact stream: its compressed bytes are the dictionary
        return (raw_dict, *spliced_frame(raw, _whole(content)))
    old_len, head, tail, old_middle = scanned
    dict_range = (raw_dict[0], raw_dict[1], CODEC_DEFLATE, old_len) if old_len else (0, 0, CODEC_RAW, 0)
    if head + tail:
        n = len(content)
        mid = patch_frame(old_middle, ranges(content)(head, n - tail))
        if surely_enough(splice_cost(mid, head, tail), old_len, n):
            return dict_range, mid, (head, tail)
    inflated = inflate_exact(raw, cap)
    if inflated is None:  # cannot happen: the scan inflated it exactly
        return (raw_dict, *spliced_frame(raw, _whole(content)))
    return (dict_range, *spliced_frame(inflated, _whole(content)))


def _whole(content: Buf | Spool) -> Buf:
    return content.join() if isinstance(content, Spool) else content


def looks_like_zip(data: Buf) -> bool:
    if len(data) < 22 or b"PK\x05\x06" not in bytes(memoryview(data)[-(65536 + 22) :]):
        return False
    try:
        return zipfile.is_zipfile(as_file(data))
    except (OSError, ValueError):
        return False

