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

import logging
import struct
import zipfile
from dataclasses import dataclass
from typing import Any, cast

from .deflate import inflate_exact
from .patch import patch_frame
from .ranged import Readable, Source, same, whole
from .search import Spool, find_deflater
from .splice import ranges, scan_deflated, splice_cost, spliced_frame, surely_enough
from .transcript import MAX_DEFLATED, transcribe
from .wire import CODEC_DEFLATE, CODEC_RAW, CODEC_TRANSCRIPT, Buf, plain_cap, stream_cap
from .writer import RecipeWriter

_log = logging.getLogger("hbw_sync.delta")


@dataclass
class Member:
    name: str
    method: int
    flags: int
    hoff: int  # local header offset
    ds: int  # data start
    de: int  # data end
    rec_end: int = 0  # start of the next record, or of the central directory


def zip_layout(data: Readable) -> tuple[list[Member], int] | None:
    """Members sorted by offset, and the central directory's offset; None if not a plain zip.

    ``data`` may be a ``ranged.Source``: the directory and each local header are read, nothing else.
    """
    try:
        with zipfile.ZipFile(Source.of(data).file()) as zf:
            infos = zf.infolist()
            start_dir = int(getattr(zf, "start_dir"))
    except Exception:  # any archive zipfile cannot read is simply not rebuilt member by member
        return None
    if not 0 <= start_dir <= len(data):
        return None
    members: list[Member] = []
    for zi in infos:
        h = zi.header_offset
        if h < 0 or h + 30 > len(data):
            return None
        header = bytes(data[h : h + 30])
        if header[:4] != b"PK\x03\x04":
            return None
        n, m = struct.unpack_from("<HH", header, 26)
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


#: With ``member_max`` set (``make_delta`` over two large ``ranged.Source``), a changed member whose
#: frame would need a range over this many bytes whole (a member no known deflater reproduces, a
#: stored one, an inflated one whose SPLICE is not surely kept) ends the zip recipe: None.
MEMBER_WHOLE = 4 << 20


class TooLarge(Exception):
    """A changed member that would be held whole, over ``member_max`` (the recipe is given up)."""


def _fits(member_max: int | None, *sizes: int) -> None:
    if member_max is not None and max(sizes, default=0) > member_max:
        raise TooLarge


def zip_recipe(base: Readable, new: Readable, *, member_max: int | None = None) -> bytes | None:
    """The zip recipe of ``new`` against ``base``; None when either is not a plain zip.

    Either may be a ``ranged.Source`` (a version read from the chunk store a chunk at a time):
    members are then hashed and compared a piece at a time, a changed member's compressed bytes
    are read a piece at a time by the deflater search (``search.find_deflater``) and read whole
    only where a frame needs them whole: the patch of compressed bytes of a member no known
    deflater reproduces and a stored member's content (bounded by ``member_max``, except a stored
    member against a deflated one, read whole for its SPLICE scan as before); the base's member is
    inflated from its range as it is read.
    Over buffers, the same reads are views: the payload is the same byte for byte. With
    ``member_max`` a changed member that would have to be held whole over that size gives None
    (flat memory over payload size: the caller then sends the changed chunks). So does a temp
    spool that cannot be written (ENOSPC, TMPDIR gone or read-only): the update goes as its changed
    chunks, larger but whole, and the log says why.
    """
    try:
        return _zip_recipe(base, new, member_max)
    except TooLarge:
        return None
    except OSError as e:  # search.Spool's temp file (or a read): the disk, not the document
        _log.warning("zip recipe given up, the changed chunks go instead (temporary spool or read failed: %s)", e)
        return None


def _zip_recipe(base: Readable, new: Readable, member_max: int | None) -> bytes | None:
    bl = zip_layout(base)
    nl = zip_layout(new)
    if bl is None or nl is None:
        return None
    base_members, base_cd = bl
    new_members, _new_cd = nl
    cap, scap = plain_cap(len(new)), stream_cap(len(new))
    bs, ns = Source.of(base), Source.of(new)
    by_name: dict[str, Member] = {}
    by_hash: dict[bytes, Member] = {}
    bm: Member | None  # a base member here; below, the one a new member matches, if any
    for bm in base_members:
        by_name.setdefault(bm.name, bm)
        by_hash.setdefault(bs.sub(bm.ds, bm.de - bm.ds).sha256(), bm)
    w = RecipeWriter()
    pos = 0
    for nm in new_members:
        w.lit(ns.read(pos, nm.hoff - pos))
        bm = by_name.get(nm.name)
        if bm is not None and bm.rec_end - bm.hoff == nm.rec_end - nm.hoff \
                and same(bs, bm.hoff, ns, nm.hoff, nm.rec_end - nm.hoff):
            w.copy(bm.hoff, nm.rec_end - nm.hoff)
            pos = nm.rec_end
            continue
        w.lit(ns.read(nm.hoff, nm.ds - nm.hoff))
        size = nm.de - nm.ds
        same_as = by_hash.get(ns.sub(nm.ds, size).sha256())
        if same_as is not None and same_as.de - same_as.ds == size and same(bs, same_as.ds, ns, nm.ds, size):
            w.copy(same_as.ds, size)
        else:
            # A changed member: its compressed bytes as a range, read a piece at a time (views over a buffer).
            _member_op(w, base, bm, nm, ns.sub(nm.ds, size), cap, scap, member_max)
        w.lit(ns.read(nm.de, nm.rec_end - nm.de))
        pos = nm.rec_end
    w.lit(ns.read(pos, len(ns) - pos))
    return w.encode(base, (base_cd, len(base) - base_cd))


def _member_op(w: RecipeWriter, base: Readable, bm: Member | None, nm: Member, data: Source, cap: int, scap: int,
               member_max: int | None = None) -> None:
    """The ops for changed member ``nm``: ``data`` is its compressed bytes, a range read as needed."""
    encrypted = bool(nm.flags & 1)
    raw_dict: tuple[int, int, int, int] = (0, 0, CODEC_RAW, 0)
    raw_bytes: Readable = b""
    old_deflated = bm is not None and bm.method == zipfile.ZIP_DEFLATED and not bm.flags & 1
    old_plain = bm is None or (bm.method == zipfile.ZIP_STORED and not bm.flags & 1)  # its bytes are its content
    if bm is not None:
        raw_dict = (bm.ds, bm.de - bm.ds, CODEC_RAW, 0) if bm.de > bm.ds else raw_dict
        # Over a Source the old member is a range, inflated as it is read (never whole); over a buffer, a view.
        raw_bytes = base.sub(bm.ds, bm.de - bm.ds) if isinstance(base, Source) else memoryview(base)[bm.ds : bm.de]

    def content_frame(content: Source | Spool) -> tuple[tuple[int, int, int, int], bytes,
                                                         tuple[int, int] | None] | None:
        """The dictionary, frame and splice for a member whose new *content* is rebuilt by the reader, or
        None if no reader may rebuild it (its content is over what a reader holds and no SPLICE fits)."""
        if old_deflated:
            # A stored member's content is read whole for the SPLICE scan (which reads buffers and spools),
            # as before; a deflated one's is its spool.
            return _against_deflated(raw_dict, raw_bytes, content if isinstance(content, Spool) else whole(content),
                                     cap, scap, member_max)
        if len(content) > cap:
            return None  # only a SPLICE over a deflated member streams more than a reader holds
        _fits(member_max, len(raw_bytes), len(content))
        whole_content = content.join() if isinstance(content, Spool) else whole(content)
        if old_plain:
            return (raw_dict, *spliced_frame(whole(raw_bytes), whole_content))
        return ((0, 0, CODEC_RAW, 0), *spliced_frame(b"", whole_content))  # encrypted or another method: no dictionary

    if not encrypted and nm.method == zipfile.ZIP_DEFLATED:
        # The deflater is searched while the member inflates, its content spooled, never held (search.py).
        spool = Spool()
        try:
            # Spooled to disk, so bounded by the streamed cap, but only where a streamed SPLICE can follow.
            found = find_deflater(data, scap if old_deflated else cap, spool)
            made = None if found is None else content_frame(spool)
            if found is not None and made is not None:
                params, blocks = found
                dict_range, frame, splice = made
                w.member(dict_range, frame, len(data), params, blocks, splice=splice)
                return
        finally:
            spool.close()
    elif not encrypted and nm.method == zipfile.ZIP_STORED:
        made = content_frame(data)
        if made is not None:
            dict_range, frame, splice = made
            w.member(dict_range, frame, len(data), None, splice=splice)
            return
    # Not reproducible here: patch the compressed bytes against the base's compressed bytes,
    # or the member's deflate transcript against the base member's, whichever is smaller. Both
    # frames need the compressed bytes whole: bounded by member_max first.
    _fits(member_max, len(raw_bytes), len(data))
    old, compressed = whole(raw_bytes), whole(data)
    frame, splice = spliced_frame(old, compressed)
    if (not encrypted and nm.method == zipfile.ZIP_DEFLATED and old_deflated
            and 0 < len(old) <= MAX_DEFLATED and len(data) <= MAX_DEFLATED):
        new_t = transcribe(compressed, cap)
        old_t = transcribe(old, cap) if new_t is not None else None
        if new_t is not None and old_t is not None:
            t_frame, t_splice = spliced_frame(old_t, new_t)
            if len(t_frame) < len(frame):
                w.member((raw_dict[0], raw_dict[1], CODEC_TRANSCRIPT, len(old_t)), t_frame, len(data), None,
                         splice=t_splice, transcript=True)
                return
    w.member(raw_dict, frame, len(data), None, splice=splice)


def _against_deflated(raw_dict: tuple[int, int, int, int], raw: Readable, content: Buf | Spool, cap: int,
                      scap: int, member_max: int | None = None) -> tuple[tuple[int, int, int, int], bytes,
                                                                         tuple[int, int] | None] | None:
    """``content`` against a base member deflated as one stream: its inflated content is the dictionary.

    The shared head and tail are found while inflating the old member a piece at a time
    (``scan_deflated``), the new content read back from its spool a piece at a time; only when
    the spliced frame is not surely kept (``splice.surely_enough``) are both contents
    materialised whole, to build the MEMBER frame too.

    Contents over ``cap`` (a sheet of 800,000 rows is 302 MB inflated) are never materialised:
    they go as a SPLICE, which a reader rebuilds streaming within ``scap`` (PROTOCOL.md §18c), when
    their middles fit under ``cap``; otherwise None (the caller patches the compressed bytes).
    """
    n = len(content)
    # (scan_deflated only passes ``raw`` to inflate_pieces, which reads a Source a piece at a time)
    scanned = scan_deflated(cast(Buf, raw), content, scap, keep=cap)
    if scanned is None:  # not one exact stream (or a middle too long to hold): its compressed bytes are the dictionary
        if n > cap:
            return None
        _fits(member_max, len(raw), n)
        return (raw_dict, *spliced_frame(whole(raw), _whole(content)))
    old_len, head, tail, old_middle = scanned
    held = old_len <= cap and n <= cap  # the whole-content MEMBER is an option only then
    dict_range = (raw_dict[0], raw_dict[1], CODEC_DEFLATE, old_len) if old_len else (0, 0, CODEC_RAW, 0)
    if head + tail and n - head - tail <= cap and old_len + n <= scap:
        mid = patch_frame(old_middle, ranges(content)(head, n - tail))
        if not held or surely_enough(splice_cost(mid, head, tail), old_len, n):
            return dict_range, mid, (head, tail)
    if not held:
        return None
    _fits(member_max, old_len, n)
    inflated = inflate_exact(raw, cap)
    if inflated is None:  # cannot happen: the scan inflated it exactly
        return (raw_dict, *spliced_frame(whole(raw), _whole(content)))
    return (dict_range, *spliced_frame(inflated, _whole(content)))


def _whole(content: Buf | Spool) -> Buf:
    return content.join() if isinstance(content, Spool) else content


def looks_like_zip(data: Readable) -> bool:
    if len(data) < 22 or b"PK\x05\x06" not in bytes(data[max(0, len(data) - (65536 + 22)) :]):
        return False
    try:
        return zipfile.is_zipfile(Source.of(data).file())
    except (OSError, ValueError):
        return False

