"""The zip recipe: office documents (docx, xlsx, pptx, odt, ods...) rebuilt member by member.

A member whose record did not change is copied from the base; a changed member is sent as
a patch of its *uncompressed* content and recompressed by the reader with the deflater
that reproduces the sender's bytes exactly: one zlib stream (``deflate.py``) or
LibreOffice's blocks (``blocks.py``). A member that no known deflater reproduces (Word,
other suites) has its compressed bytes patched instead; PROTOCOL.md §18c says why and what
that costs.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
from dataclasses import dataclass

from .blocks import find_blocks
from .deflate import find_deflate, inflate_exact
from .patch import patch_frame
from .splice import frame_floor, scan_deflated, splice_cost, spliced_frame
from .wire import CODEC_DEFLATE, CODEC_RAW, Buf, plain_cap
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


def zip_layout(data: bytes) -> tuple[list[Member], int] | None:
    """Members sorted by offset, and the central directory's offset; None if not a plain zip."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
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


def zip_recipe(base: bytes, new: bytes) -> bytes | None:
    bl = zip_layout(base)
    nl = zip_layout(new)
    if bl is None or nl is None:
        return None
    base_members, base_cd = bl
    new_members, _ = nl
    cap = plain_cap(len(new))
    by_name: dict[str, Member] = {}
    by_hash: dict[bytes, Member] = {}
    bm: Member | None  # a base member here; below, the one a new member matches, if any
    for bm in base_members:
        by_name.setdefault(bm.name, bm)
        by_hash.setdefault(hashlib.sha256(base[bm.ds : bm.de]).digest(), bm)
    bv, nv = memoryview(base), memoryview(new)
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
        data = new[nm.ds : nm.de]
        same = by_hash.get(hashlib.sha256(data).digest())
        if same is not None and bv[same.ds : same.de] == data:
            w.copy(same.ds, len(data))
        else:
            _member_op(w, base, bm, nm, data, cap)
        w.lit(nv[nm.de : nm.rec_end])
        pos = nm.rec_end
    w.lit(nv[pos:])
    return w.encode(base, (base_cd, len(base) - base_cd))


def _member_op(w: RecipeWriter, base: bytes, bm: Member | None, nm: Member, data: bytes, cap: int) -> None:
    encrypted = bool(nm.flags & 1)
    raw_dict: tuple[int, int, int, int] = (0, 0, CODEC_RAW, 0)
    raw_bytes: Buf = b""
    old_deflated = bm is not None and bm.method == zipfile.ZIP_DEFLATED and not bm.flags & 1
    old_plain = bm is None or (bm.method == zipfile.ZIP_STORED and not bm.flags & 1)  # its bytes are its content
    if bm is not None:
        raw_dict = (bm.ds, bm.de - bm.ds, CODEC_RAW, 0) if bm.de > bm.ds else raw_dict
        raw_bytes = memoryview(base)[bm.ds : bm.de]

    def content_frame(content: Buf) -> tuple[tuple[int, int, int, int], bytes, tuple[int, int] | None]:
        """The dictionary, frame and splice for a member whose new *content* is rebuilt by the reader."""
        if old_deflated:
            return _against_deflated(raw_dict, raw_bytes, content, cap)
        if old_plain:
            return (raw_dict, *spliced_frame(raw_bytes, content))
        return ((0, 0, CODEC_RAW, 0), *spliced_frame(b"", content))  # encrypted or another method: no dictionary

    if not encrypted and nm.method == zipfile.ZIP_DEFLATED:
        content = inflate_exact(data, cap)
        if content is not None:
            params = find_deflate(content, data)
            if params is not None:
                dict_range, frame, splice = content_frame(content)
                w.member(dict_range, frame, len(data), params, splice=splice)
                return
            found = find_blocks(content, data)
            if found is not None:
                dict_range, frame, splice = content_frame(content)
                w.member(dict_range, frame, len(data), found[:3], found[3:], splice=splice)
                return
    elif not encrypted and nm.method == zipfile.ZIP_STORED:
        dict_range, frame, splice = content_frame(data)
        w.member(dict_range, frame, len(data), None, splice=splice)
        return
    # Not reproducible here: patch the compressed bytes against the base's compressed bytes.
    frame, splice = spliced_frame(raw_bytes, data)
    w.member(raw_dict, frame, len(data), None, splice=splice)


def _against_deflated(raw_dict: tuple[int, int, int, int], raw: Buf, content: Buf,
                      cap: int) -> tuple[tuple[int, int, int, int], bytes, tuple[int, int] | None]:
    """``content`` against a base member deflated as one stream: its inflated content is the dictionary.

    The shared head and tail are found while inflating the old member a piece at a time
    (``scan_deflated``); only when the spliced frame is not surely the smaller one is the old
    content inflated whole, to build the MEMBER frame too.
    """
    scanned = scan_deflated(raw, content, cap)
    if scanned is None:  # not one exact stream: its compressed bytes are the dictionary
        return (raw_dict, *spliced_frame(raw, content))
    old_len, head, tail, old_middle = scanned
    dict_range = (raw_dict[0], raw_dict[1], CODEC_DEFLATE, old_len) if old_len else (0, 0, CODEC_RAW, 0)
    if head + tail:
        view = memoryview(content)
        mid = patch_frame(old_middle, view[head : len(view) - tail])
        if splice_cost(mid, head, tail) < frame_floor(len(view)):
            return dict_range, mid, (head, tail)
    inflated = inflate_exact(raw, cap)
    if inflated is None:  # cannot happen: the scan inflated it exactly
        return (raw_dict, *spliced_frame(raw, content))
    return (dict_range, *spliced_frame(inflated, content))


def looks_like_zip(data: bytes) -> bool:
    if len(data) < 22 or b"PK\x05\x06" not in data[-(65536 + 22) :]:
        return False
    try:
        return zipfile.is_zipfile(io.BytesIO(data))
    except (OSError, ValueError):
        return False

