"""Document deltas: rebuild a new version of a file from the version the peer already has.

Documents are most of the bytes we send, and most document edits are small, so
a new version is sent as a *delta* against the base version whenever that is
smaller than the whole file compressed. Sans-IO: bytes in, bytes out.

``make_delta(base, new)`` returns a payload, or ``None`` when the payload would
not be smaller than plain zstd of ``new`` (the caller then sends the whole
version). ``apply_delta(base, payload, expected_sha256=..., max_size=...)``
rebuilds ``new`` and checks its SHA-256; every failure is a ``ProtocolError``
(malformed), ``LimitError`` (too big, refused from declared sizes before
anything large is allocated) or ``IntegrityError`` (the result is not the
expected file: wrong base, tampering, or a peer whose zlib deflates
differently).

Wire format
===========

Integers: ``u8`` is one byte. ``uvarint`` is unsigned LEB128 (7 bits per byte,
least significant group first, high bit set on every byte but the last), at
most 9 bytes, value < 2**63, and minimally encoded (no trailing ``0x80 0x00``
padding; a multi-byte encoding never ends in ``0x00``). All offsets and lengths
are byte counts; a *base range* ``(off, len)`` names ``base[off:off+len]`` and
must lie inside ``base``.

zstd frames ("patch frames"): exactly one zstd frame (RFC 8878), no trailing
bytes, no skippable frames, and the frame header must declare its content
size. A frame is decoded with a *raw-content dictionary* (RFC 8878 §5,
"raw content": no magic, no entropy tables, dictionary id 0), i.e. the
dictionary bytes are a prefix the frame's matches may reference, exactly what
``zstd --patch-from=DICT`` produces. A dictionary shorter than 8 bytes is not
used at all (the frame is encoded and decoded with no dictionary), matching
libzstd, which ignores dictionaries under 8 bytes. Frames carry no checksum
and no dictionary id. Writers should set the window log to at least
``bit_length(max(len(dict), len(content))) + 1`` so the frame is single-segment
(window = content size); readers bound the window by ``max_size``.

A payload is ``u8 method`` followed by the method's body::

    method 1  PATCH   body = patch frame; dictionary = the whole base.
                      Result = the frame's content.

    method 2  RECIPE  body =
                uvarint lit_dict_off, uvarint lit_dict_len   base range: the literal
                                                             stream's dictionary
                uvarint lit_frame_len                        0 = empty literal stream
                lit_frame_len bytes                          patch frame -> literal stream L
                uvarint op_count
                op_count ops, each starting with a u8 tag:

        0x00 LIT     uvarint n
                     append the next n bytes of L (L is consumed in order and
                     must be consumed exactly: sum of LIT n == len(L))
        0x01 COPY    uvarint off, uvarint n
                     append base[off:off+n]
        0x02 MEMBER  uvarint dict_off, uvarint dict_len      base range (len 0: no
                                                             dictionary; off must be 0)
                     u8 dict_codec                           0 = the range as is
                                                             8 = the range is a raw
                                                             deflate stream; inflate it
                     [dict_codec 8: uvarint dict_plain_len]  exact inflated size; the
                                                             stream must end exactly at
                                                             the end of the range
                     uvarint frame_len, frame_len bytes      patch frame -> content C
                     u8 out_codec                            0 = append C as is
                                                             8 = append raw deflate of C
                     [out_codec 8: u8 level (0-9),           zlib deflateInit2(level,
                                   u8 mem_level (1-9),       Z_DEFLATED, -15, mem_level,
                                   u8 strategy (0-4)]        strategy), C fed in 65536-
                                                             byte pieces with Z_NO_FLUSH,
                                                             then Z_FINISH
                     uvarint out_len                         bytes this op appends (for
                                                             codec 0: == len(C))

      The result is the concatenation of what the ops append. Any bytes left
      after the last op are an error. Unknown methods, tags and codecs are errors.

Limits the reader enforces before decoding anything: the sum of LIT n, COPY n and
MEMBER out_len must not exceed ``max_size`` (``LimitError``); the literal
frame's declared size must equal the sum of LIT n; method 1's declared size
must not exceed ``max_size``; each MEMBER's frame content and inflated dictionary
may be up to ``plain_cap(max_size) = min(16 * max_size, max(max_size, 256 MiB))``
bytes (a zip member can be much bigger uncompressed than the whole zip: an
xlsx sheet often deflates 10:1); over all MEMBER ops, the sum of dict_plain and
frame content sizes must not exceed that same cap, and the sum of dict_len must
not exceed ``len(base)`` (this bounds the work, not just the memory; all
``LimitError``). Writers must respect these with ``max_size = len(new)``.

How the writer uses it
======================

* Method 1 when the files share neither a prefix nor a suffix (otherwise the
  span recipe below is method 1 minus the shared ends), and for small files
  when it is smaller. The whole base is the prefix and long-distance matching
  is on, with the window sized to the base, so a 20 MB base still yields a
  ~2.4 KB delta for a small edit (zstd spends ~15 bytes on every 128 KiB block
  even when it is one long match). See ``_patch_frame`` for why this goes
  through ``ZSTD_CCtx_refPrefix`` and not python-zstandard's dictionary API.
* Method 2 as a *span* recipe: COPY the common prefix, one MEMBER with the whole
  base as dictionary for the changed middle, COPY the common suffix. Identical
  files cost a few bytes, large files skip the per-block cost.
* Method 2 as a *zip* recipe when both files are zip archives (docx, xlsx, pptx,
  odt, ods, odp...): each member whose whole record (local header, data, data
  descriptor, up to the next record) is byte-identical to the same-named base
  record is a COPY; a member whose compressed data equals any base member's is
  LIT(header) COPY(data) LIT(rest); a changed member is LIT(header), MEMBER,
  LIT(rest): its *uncompressed* content patched against the same-named base
  member's uncompressed content, recompressed by the reader with the zlib
  parameters the writer found to reproduce the member byte for byte. When no
  parameters reproduce it (a deflate implementation other than zlib, as some
  office suites use; bzip2/lzma; encryption), the member's compressed bytes are patched
  against the base member's compressed bytes instead. Central directory and
  changed local headers go through the literal stream, patched against the
  base's central directory.
* The writer builds every candidate that applies, decodes each with
  ``apply_delta`` itself and keeps the smallest one that reproduces ``new``
  exactly (hash), so a reader with the same zlib always succeeds. A reader whose
  zlib deflates differently gets an ``IntegrityError`` and must fetch the whole
  version.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Union

import zstandard

from .codec import zstd_frame_length
from .errors import IntegrityError, LimitError, ProtocolError

__all__ = ["make_delta", "apply_delta", "METHOD_PATCH", "METHOD_RECIPE"]

METHOD_PATCH = 1
METHOD_RECIPE = 2

OP_LIT = 0x00
OP_COPY = 0x01
OP_MEMBER = 0x02

CODEC_RAW = 0
CODEC_DEFLATE = 8

MIN_DICT = 8  # libzstd ignores dictionaries under 8 bytes; the format says so explicitly
PLAIN_FACTOR = 16  # a member's uncompressed content may be this many times max_size...
PLAIN_CEILING = 256 << 20  # ...but no more than this, unless max_size itself is larger
DEFLATE_PIECE = 1 << 16
PLAIN_LEVEL = 19  # what "plain zstd of new" means: codec.compress's level
_SMALL_TOTAL = 4 << 20  # base + new up to this: level 19 patch frames; above: level 9 + LDM
_MAX_VARINT = (1 << 63) - 1

Buf = Union[bytes, bytearray, memoryview]


# --------------------------------------------------------------------------- varints


def _uvarint(n: int) -> bytes:
    if n < 0 or n > _MAX_VARINT:
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


class _Reader:
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
                if value > _MAX_VARINT:
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


# --------------------------------------------------------------------------- zstd patch frames


def _window_log(dict_len: int, src_len: int) -> int:
    return min(30, max(10, max(dict_len, src_len, 1).bit_length() + 1))


def _cffi_lib() -> Any:
    try:
        from zstandard.backend_cffi import ffi, lib  # type: ignore[attr-defined]
    except Exception:  # cffi or the compiled _cffi module missing: use the fallback
        return None
    if not hasattr(lib, "ZSTD_CCtx_refPrefix"):
        return None
    return ffi, lib


_CFFI: Any = _cffi_lib()


def _patch_frame_prefix(dictionary: Buf, src: Buf, level: int, wlog: int) -> bytes:
    """``zstd --patch-from``: the dictionary is a *prefix* referenced in place, with LDM on."""
    ffi, lib = _CFFI
    cctx = lib.ZSTD_createCCtx()
    if cctx == ffi.NULL:
        raise MemoryError("ZSTD_createCCtx failed")
    try:
        for param, value in (
            (lib.ZSTD_c_compressionLevel, level),
            (lib.ZSTD_c_windowLog, wlog),
            (lib.ZSTD_c_enableLongDistanceMatching, 1),
            (lib.ZSTD_c_contentSizeFlag, 1),
            (lib.ZSTD_c_checksumFlag, 0),
            (lib.ZSTD_c_dictIDFlag, 0),
        ):
            rc = lib.ZSTD_CCtx_setParameter(cctx, param, value)
            if lib.ZSTD_isError(rc):
                raise zstandard.ZstdError(ffi.string(lib.ZSTD_getErrorName(rc)).decode())
        keep = ffi.from_buffer(dictionary) if len(dictionary) >= MIN_DICT else None
        if keep is not None:
            rc = lib.ZSTD_CCtx_refPrefix(cctx, keep, len(dictionary))
            if lib.ZSTD_isError(rc):
                raise zstandard.ZstdError(ffi.string(lib.ZSTD_getErrorName(rc)).decode())
        cap = lib.ZSTD_compressBound(len(src))
        out = ffi.new_allocator(should_clear_after_alloc=False)("char[]", cap)
        n = lib.ZSTD_compress2(cctx, out, cap, ffi.from_buffer(src), len(src))
        if lib.ZSTD_isError(n):
            raise zstandard.ZstdError(ffi.string(lib.ZSTD_getErrorName(n)).decode())
        return ffi.buffer(out, n)[:]
    finally:
        lib.ZSTD_freeCCtx(cctx)


def _patch_frame_dict(dictionary: Buf, src: Buf, level: int, wlog: int) -> bytes:
    """Fallback through python-zstandard's public dictionary API.

    That API loads the dictionary into a CDict, which libzstd never feeds to the
    long-distance matcher and only indexes as far as its hash tables reach, so
    for a large base the hash/chain logs must be sized to the base (and memory
    grows with them: about 2 x 5 x 2**hash_log bytes).
    """
    if len(dictionary) >= MIN_DICT and len(dictionary) + len(src) > _SMALL_TOTAL:
        hlog = min(23, max(17, len(dictionary).bit_length() - 1))
        params = zstandard.ZstdCompressionParameters(
            window_log=wlog, hash_log=hlog, chain_log=hlog, search_log=4, min_match=5,
            target_length=0, strategy=zstandard.STRATEGY_LAZY2,
            write_content_size=1, write_checksum=0, write_dict_id=0,
        )  # fmt: skip
    else:
        params = zstandard.ZstdCompressionParameters.from_level(
            level, source_size=len(src), dict_size=len(dictionary), window_log=wlog,
            write_content_size=1, write_checksum=0, write_dict_id=0,
        )  # fmt: skip
    zdict = None
    if len(dictionary) >= MIN_DICT:
        zdict = zstandard.ZstdCompressionDict(dictionary, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    return zstandard.ZstdCompressor(compression_params=params, dict_data=zdict).compress(src)


def _patch_frame(dictionary: Buf, src: Buf) -> bytes:
    """One zstd frame holding ``src``, with ``dictionary`` as raw-content prefix.

    Why ``ZSTD_CCtx_refPrefix`` (through python-zstandard's cffi backend): the
    public ``ZstdCompressionDict`` route goes through a CDict, which libzstd
    (1.5.x) never loads into the long-distance matcher, and whose tables hold
    only part of a multi-MB base unless sized to it. Measured on a 20 MB base
    with a 200-byte edit: dictionary API with default logs 10 MB (no delta),
    with LDM on still 8.5 MB, with hash/chain logs 22 13 KB and 23 2 KB at about
    +80 MB RSS; prefix + LDM at level 9: 2.2 KB, 0.15 s, about +18 MB RSS.
    The frames are standard; the reader decodes them with the public API.
    """
    total = len(dictionary) + len(src)
    level = PLAIN_LEVEL if total <= _SMALL_TOTAL else 9
    wlog = _window_log(len(dictionary), len(src))
    if _CFFI is not None:
        return _patch_frame_prefix(dictionary, src, level, wlog)
    return _patch_frame_dict(dictionary, src, level, wlog)


def _frame_content_size(frame: Buf, cap: int) -> int:
    """Validate a patch frame's shape and return its declared size (<= cap)."""
    frame = bytes(frame) if not isinstance(frame, bytes) else frame
    if zstd_frame_length(frame) != len(frame):
        raise ProtocolError("trailing bytes after a zstd frame in delta", code="protocol.trailing")
    try:
        size = zstandard.frame_content_size(frame)
    except zstandard.ZstdError:
        raise ProtocolError("corrupt zstd frame header in delta", code="protocol.zstd") from None
    if size < 0:
        raise ProtocolError("zstd frame in delta does not declare its size", code="protocol.zstd")
    if size > cap:
        raise LimitError(f"delta frame would inflate to {size} bytes, over the {cap}-byte cap", code="protocol.bomb")
    return size


def _unpatch(dictionary: Buf, frame: Buf, size: int, cap: int) -> bytes:
    """Decode a frame already checked by ``_frame_content_size`` (declared ``size``)."""
    frame = bytes(frame) if not isinstance(frame, bytes) else frame
    kwargs: dict[str, Any] = {"max_window_size": min(1 << 31, max(1 << 20, 1 << (max(cap, 1) - 1).bit_length()))}
    try:
        if len(dictionary) >= MIN_DICT:
            kwargs["dict_data"] = zstandard.ZstdCompressionDict(dictionary, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        dctx = zstandard.ZstdDecompressor(**kwargs)
        if size == 0:
            # The one-shot API returns b"" for a declared size of 0 without decoding.
            if dctx.stream_reader(frame).read(1):
                raise ProtocolError("zstd frame size does not match its header", code="protocol.zstd")
            return b""
        out = dctx.decompress(frame, max_output_size=size)
    except zstandard.ZstdError as e:
        raise ProtocolError(f"corrupt zstd data in delta: {e}", code="protocol.zstd") from None
    if len(out) != size:
        raise ProtocolError("zstd frame size does not match its header", code="protocol.zstd")
    return out


def _plain_at_least(data: bytes, limit: int) -> bool:
    """Is plain zstd (level 19, as the whole-version path sends) of ``data`` >= ``limit`` bytes?

    Streams and stops as soon as the output reaches ``limit``, so the usual case
    (a small delta) costs a block or two, not a full level-19 pass. Up to 4 MiB
    the parameters are level 19's own for that size (what ``codec.compress``
    uses); above, the tables are capped (window 2**22, chain 2**21, hash 2**20:
    about 16 MB instead of about 90 MB), which costs level 19 a little ratio, so
    the comparison is slightly generous to the delta for large files.
    """
    if limit <= 0:
        return True
    caps: dict[str, int] = {}
    if len(data) > _SMALL_TOTAL:
        p0 = zstandard.ZstdCompressionParameters.from_level(PLAIN_LEVEL, source_size=len(data))
        caps = {"window_log": min(p0.window_log, 22), "chain_log": min(p0.chain_log, 21), "hash_log": min(p0.hash_log, 20)}
    params = zstandard.ZstdCompressionParameters.from_level(
        PLAIN_LEVEL, source_size=len(data), write_content_size=1, write_checksum=0, **caps
    )
    cobj = zstandard.ZstdCompressor(compression_params=params).compressobj(size=len(data))
    view = memoryview(data)
    total = 0
    for i in range(0, len(data), 1 << 17):
        total += len(cobj.compress(view[i : i + (1 << 17)]))
        if total >= limit:
            return True
    total += len(cobj.flush())
    return total >= limit


# --------------------------------------------------------------------------- deflate


_DEFLATE_TRIES: tuple[tuple[int, int, int], ...] = (
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


def _deflate(content: Buf, level: int, mem_level: int, strategy: int) -> bytes:
    co = zlib.compressobj(level, zlib.DEFLATED, -15, mem_level, strategy)
    view = memoryview(content)
    parts = [co.compress(view[i : i + DEFLATE_PIECE]) for i in range(0, len(view), DEFLATE_PIECE)]
    parts.append(co.flush())
    return b"".join(parts)


def _find_deflate(content: bytes, target: bytes) -> tuple[int, int, int] | None:
    """The zlib parameters whose raw deflate of ``content`` is exactly ``target``, if any."""
    view = memoryview(content)
    for level, mem_level, strategy in _DEFLATE_TRIES:
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


def _inflate_exact(data: Buf, cap: int) -> bytes | None:
    """Inflate a raw deflate stream that must end exactly at the end of ``data``; None if not."""
    d = zlib.decompressobj(-15)
    try:
        out = d.decompress(data, cap + 1)
    except zlib.error:
        return None
    if len(out) > cap or not d.eof or d.unused_data or d.unconsumed_tail:
        return None
    return out


# --------------------------------------------------------------------------- apply


@dataclass
class _Op:
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
    deflate: tuple[int, int, int] = (0, 0, 0)


def _plain_cap(max_size: int) -> int:
    """How big a member's uncompressed content or inflated dictionary may be."""
    return min(PLAIN_FACTOR * max_size, max(max_size, PLAIN_CEILING))


def _base_range(base_len: int, off: int, n: int) -> None:
    if off > base_len or n > base_len - off:
        raise ProtocolError("delta refers to bytes beyond the end of the base", code="protocol.delta")


def _parse_recipe(r: _Reader, base_len: int, max_size: int) -> tuple[int, int, memoryview | None, int, list[_Op]]:
    plain_cap = _plain_cap(max_size)
    lit_off, lit_len = r.uvarint(), r.uvarint()
    _base_range(base_len, lit_off, lit_len)
    lit_frame_len = r.uvarint()
    lit_frame = r.take(lit_frame_len) if lit_frame_len else None
    op_count = r.uvarint()
    if op_count > len(r.data):  # every op takes at least two bytes
        raise ProtocolError("delta declares more ops than it can hold", code="protocol.delta")
    ops: list[_Op] = []
    total = 0
    lit_total = 0
    dict_total = 0  # bounds the work as well as the memory: see the format's limits
    plain_total = 0
    for _ in range(op_count):
        tag = r.u8()
        if tag == OP_LIT:
            op = _Op(OP_LIT, n=r.uvarint())
            lit_total += op.n
        elif tag == OP_COPY:
            op = _Op(OP_COPY)
            op.off, op.n = r.uvarint(), r.uvarint()
            _base_range(base_len, op.off, op.n)
        elif tag == OP_MEMBER:
            op = _Op(OP_MEMBER)
            op.dict_off, op.dict_len = r.uvarint(), r.uvarint()
            _base_range(base_len, op.dict_off, op.dict_len)
            op.dict_codec = r.u8()
            if op.dict_codec == CODEC_DEFLATE:
                op.dict_plain = r.uvarint()
                if op.dict_plain > plain_cap:
                    raise LimitError("delta dictionary would inflate past the cap", code="protocol.bomb")
            elif op.dict_codec != CODEC_RAW:
                raise ProtocolError(f"unknown dictionary codec {op.dict_codec} in delta", code="protocol.delta")
            if op.dict_len == 0 and (op.dict_off or op.dict_codec != CODEC_RAW):
                raise ProtocolError("empty dictionary range with an offset or codec", code="protocol.delta")
            op.frame = r.take(r.uvarint())
            op.frame_size = _frame_content_size(op.frame, plain_cap)
            dict_total += op.dict_len
            plain_total += op.dict_plain + op.frame_size
            if dict_total > base_len or plain_total > plain_cap:
                raise LimitError("delta members would decode more than the caps allow", code="protocol.limit")
            op.out_codec = r.u8()
            if op.out_codec == CODEC_DEFLATE:
                level, mem_level, strategy = r.u8(), r.u8(), r.u8()
                if level > 9 or not 1 <= mem_level <= 9 or strategy > 4:
                    raise ProtocolError("invalid deflate parameters in delta", code="protocol.delta")
                op.deflate = (level, mem_level, strategy)
            elif op.out_codec != CODEC_RAW:
                raise ProtocolError(f"unknown output codec {op.out_codec} in delta", code="protocol.delta")
            op.n = r.uvarint()
            if op.out_codec == CODEC_RAW and op.n != op.frame_size:
                raise ProtocolError("member size does not match its frame", code="protocol.delta")
        else:
            raise ProtocolError(f"unknown delta op {tag}", code="protocol.delta")
        total += op.n
        if total > max_size:
            raise LimitError(f"delta would rebuild more than {max_size} bytes", code="protocol.limit")
        ops.append(op)
    if not r.at_end():
        raise ProtocolError("trailing bytes after the delta ops", code="protocol.trailing")
    if lit_frame is None:
        if lit_total:
            raise ProtocolError("delta uses literals but carries none", code="protocol.delta")
    elif _frame_content_size(lit_frame, max_size) != lit_total:
        raise ProtocolError("literal stream size does not match the ops", code="protocol.delta")
    return lit_off, lit_len, lit_frame, total, ops


def _run_recipe(base: memoryview, parsed: tuple[int, int, memoryview | None, int, list[_Op]], max_size: int) -> bytes:
    lit_off, lit_len, lit_frame, total, ops = parsed
    plain_cap = _plain_cap(max_size)
    lits = b""
    if lit_frame is not None:
        lit_size = _frame_content_size(lit_frame, max_size)
        lits = _unpatch(base[lit_off : lit_off + lit_len], lit_frame, lit_size, max_size)
    lit_pos = 0
    parts: list[Buf] = []
    for op in ops:
        if op.tag == OP_LIT:
            parts.append(lits[lit_pos : lit_pos + op.n])
            lit_pos += op.n
        elif op.tag == OP_COPY:
            parts.append(base[op.off : op.off + op.n])
        else:
            dictionary: Buf = base[op.dict_off : op.dict_off + op.dict_len]
            if op.dict_codec == CODEC_DEFLATE:
                inflated = _inflate_exact(dictionary, op.dict_plain)
                if inflated is None or len(inflated) != op.dict_plain:
                    raise ProtocolError("delta dictionary is not the declared deflate stream", code="protocol.delta")
                dictionary = inflated
            assert op.frame is not None
            content = _unpatch(dictionary, op.frame, op.frame_size, plain_cap)
            del dictionary
            if op.out_codec == CODEC_DEFLATE:
                content = _deflate(content, *op.deflate)
                if len(content) != op.n:
                    raise IntegrityError(
                        "recompressed member differs from the sender's (different zlib?)",
                        code="integrity.delta",
                        hint="fetch the whole version",
                    )
            parts.append(content)
    out = b"".join(parts)
    if len(out) != total:  # cannot happen: every op's length was checked
        raise ProtocolError("rebuilt size does not match the delta", code="protocol.delta")
    return out


def apply_delta(base: bytes, delta: bytes, *, expected_sha256: bytes, max_size: int) -> bytes:
    """Rebuild the new version from ``base`` and a payload from ``make_delta``.

    Raises ``ProtocolError`` (malformed or unknown method), ``LimitError`` (the
    result or an intermediate would exceed ``max_size``; refused from declared
    sizes before allocating) or ``IntegrityError`` (SHA-256 of the result is not
    ``expected_sha256``), and nothing else.
    """
    if not isinstance(max_size, int) or isinstance(max_size, bool):
        raise ProtocolError("max_size must be an integer", code="protocol.delta")
    max_size = max(0, max_size)
    try:
        base_view = memoryview(base).cast("B")
        view = memoryview(delta).cast("B")
        expected = bytes(memoryview(expected_sha256).cast("B"))
    except (TypeError, ValueError):
        raise ProtocolError("delta, base and hash must be bytes", code="protocol.delta") from None
    if len(expected) != 32:
        raise ProtocolError("expected_sha256 must be 32 bytes", code="protocol.delta")
    try:
        r = _Reader(view)
        method = r.u8()
        if method == METHOD_PATCH:
            frame = r.take(len(view) - 1)
            size = _frame_content_size(frame, max_size)
            out = _unpatch(base_view, frame, size, max_size)
        elif method == METHOD_RECIPE:
            out = _run_recipe(base_view, _parse_recipe(r, len(base_view), max_size), max_size)
        else:
            raise ProtocolError(f"unknown delta method {method}", code="protocol.delta")
    except (ProtocolError, IntegrityError):
        raise
    except (ValueError, TypeError, IndexError, OverflowError, zlib.error, zstandard.ZstdError) as e:
        raise ProtocolError(f"malformed delta: {e}", code="protocol.delta") from None
    if hashlib.sha256(out).digest() != expected:
        raise IntegrityError(
            "document rebuilt from the delta does not match its hash",
            code="integrity.delta",
            hint="the base differs from the sender's, or the delta was damaged: fetch the whole version",
        )
    return out


# --------------------------------------------------------------------------- recipes (writer side)


class _RecipeWriter:
    """Collects ops; merges adjacent LITs and contiguous COPYs."""

    def __init__(self) -> None:
        self.lits = bytearray()
        self.ops: list[tuple] = []  # ("lit", n) | ("copy", off, n) | ("member", bytes)

    def lit(self, data: Buf) -> None:
        if not len(data):
            return
        self.lits += data
        if self.ops and self.ops[-1][0] == "lit":
            self.ops[-1] = ("lit", self.ops[-1][1] + len(data))
        else:
            self.ops.append(("lit", len(data)))

    def copy(self, off: int, n: int) -> None:
        if n == 0:
            return
        if self.ops and self.ops[-1][0] == "copy" and self.ops[-1][1] + self.ops[-1][2] == off:
            self.ops[-1] = ("copy", self.ops[-1][1], self.ops[-1][2] + n)
        else:
            self.ops.append(("copy", off, n))

    def member(
        self,
        dict_range: tuple[int, int, int, int],
        frame: bytes,
        out_len: int,
        deflate: tuple[int, int, int] | None,
    ) -> None:
        dict_off, dict_len, dict_codec, dict_plain = dict_range
        enc = bytearray([OP_MEMBER])
        enc += _uvarint(dict_off) + _uvarint(dict_len) + bytes([dict_codec])
        if dict_codec == CODEC_DEFLATE:
            enc += _uvarint(dict_plain)
        enc += _uvarint(len(frame)) + frame
        if deflate is None:
            enc.append(CODEC_RAW)
        else:
            enc.append(CODEC_DEFLATE)
            enc += bytes(deflate)
        enc += _uvarint(out_len)
        self.ops.append(("member", bytes(enc)))

    def encode(self, base: bytes, lit_dict: tuple[int, int]) -> bytes:
        lit_off, lit_len = lit_dict if self.lits else (0, 0)
        out = bytearray([METHOD_RECIPE])
        out += _uvarint(lit_off) + _uvarint(lit_len)
        if self.lits:
            frame = _patch_frame(memoryview(base)[lit_off : lit_off + lit_len], bytes(self.lits))
            out += _uvarint(len(frame)) + frame
        else:
            out += _uvarint(0)
        out += _uvarint(len(self.ops))
        for op in self.ops:
            if op[0] == "lit":
                out += bytes([OP_LIT]) + _uvarint(op[1])
            elif op[0] == "copy":
                out += bytes([OP_COPY]) + _uvarint(op[1]) + _uvarint(op[2])
            else:
                out += op[1]
        return bytes(out)


def _common_prefix(a: memoryview, b: memoryview) -> int:
    """Length of the common prefix, comparing in C-speed chunks."""
    n = min(len(a), len(b))
    lo = 0
    step = 1 << 16
    while lo < n:
        hi = min(n, lo + step)
        if a[lo:hi] == b[lo:hi]:
            lo = hi
            step = min(step * 2, 1 << 22)
            continue
        # the first difference is inside [lo, hi): bisect
        while hi - lo > 64:
            mid = (lo + hi) // 2
            if a[lo:mid] == b[lo:mid]:
                lo = mid
            else:
                hi = mid
        while lo < hi and a[lo] == b[lo]:
            lo += 1
        return lo
    return n


def _span_recipe(base: bytes, new: bytes) -> bytes | None:
    """COPY common prefix + MEMBER(changed middle, whole base as dictionary) + COPY common suffix.

    None when the files share neither a prefix nor a suffix: that would be
    method 1 plus a few bytes of recipe.
    """
    bv, nv = memoryview(base), memoryview(new)
    pre = _common_prefix(bv, nv)
    limit = min(len(base), len(new)) - pre
    suf = min(_common_prefix(bv[::-1], nv[::-1]), limit) if limit > 0 else 0
    if pre + suf == 0:
        return None
    w = _RecipeWriter()
    w.copy(0, pre)
    middle = nv[pre : len(new) - suf]
    if len(middle):
        frame = _patch_frame(bv, middle)
        dict_range = (0, len(base), CODEC_RAW, 0) if len(base) else (0, 0, CODEC_RAW, 0)
        w.member(dict_range, frame, len(middle), None)
    w.copy(len(base) - suf, suf)
    return w.encode(base, (0, 0))


@dataclass
class _Member:
    name: str
    method: int
    flags: int
    hoff: int  # local header offset
    ds: int  # data start
    de: int  # data end
    rec_end: int = 0  # start of the next record, or of the central directory


def _zip_layout(data: bytes) -> tuple[list[_Member], int] | None:
    """Members sorted by offset, and the central directory's offset; None if not a plain zip."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            start_dir = int(getattr(zf, "start_dir"))
    except Exception:  # any archive zipfile cannot read is simply not rebuilt member by member
        return None
    if not 0 <= start_dir <= len(data):
        return None
    members: list[_Member] = []
    for zi in infos:
        h = zi.header_offset
        if h < 0 or h + 30 > len(data) or data[h : h + 4] != b"PK\x03\x04":
            return None
        n, m = struct.unpack_from("<HH", data, h + 26)
        ds = h + 30 + n + m
        de = ds + zi.compress_size
        if de > start_dir:
            return None
        members.append(_Member(zi.filename, zi.compress_type, zi.flag_bits, h, ds, de))
    members.sort(key=lambda x: x.hoff)
    for i, mem in enumerate(members):
        nxt = members[i + 1].hoff if i + 1 < len(members) else start_dir
        if nxt < mem.de:
            return None  # overlapping members: not something to rebuild piecewise
        mem.rec_end = nxt
    return members, start_dir


def _zip_recipe(base: bytes, new: bytes) -> bytes | None:
    bl = _zip_layout(base)
    nl = _zip_layout(new)
    if bl is None or nl is None:
        return None
    base_members, base_cd = bl
    new_members, _ = nl
    plain_cap = _plain_cap(len(new))
    by_name: dict[str, _Member] = {}
    by_hash: dict[bytes, _Member] = {}
    for bm in base_members:
        by_name.setdefault(bm.name, bm)
        by_hash.setdefault(hashlib.sha256(base[bm.ds : bm.de]).digest(), bm)
    bv, nv = memoryview(base), memoryview(new)
    w = _RecipeWriter()
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
            _member_op(w, base, bm, nm, data, plain_cap)
        w.lit(nv[nm.de : nm.rec_end])
        pos = nm.rec_end
    w.lit(nv[pos:])
    return w.encode(base, (base_cd, len(base) - base_cd))


def _member_op(w: _RecipeWriter, base: bytes, bm: _Member | None, nm: _Member, data: bytes, plain_cap: int) -> None:
    encrypted = bool(nm.flags & 1)
    raw_dict: tuple[int, int, int, int] = (0, 0, CODEC_RAW, 0)
    raw_bytes: Buf = b""
    plain_dict, plain_bytes = raw_dict, raw_bytes
    if bm is not None:
        raw_dict = (bm.ds, bm.de - bm.ds, CODEC_RAW, 0) if bm.de > bm.ds else raw_dict
        raw_bytes = memoryview(base)[bm.ds : bm.de]
        plain_dict, plain_bytes = raw_dict, raw_bytes
        if bm.method == zipfile.ZIP_DEFLATED and not bm.flags & 1:
            inflated = _inflate_exact(raw_bytes, plain_cap)
            if inflated is not None:
                plain_dict = (bm.ds, bm.de - bm.ds, CODEC_DEFLATE, len(inflated)) if len(inflated) else (0, 0, CODEC_RAW, 0)
                plain_bytes = inflated
        elif bm.method != zipfile.ZIP_STORED or bm.flags & 1:
            plain_dict, plain_bytes = (0, 0, CODEC_RAW, 0), b""
    if not encrypted and nm.method == zipfile.ZIP_DEFLATED:
        content = _inflate_exact(data, plain_cap)
        params = _find_deflate(content, data) if content is not None else None
        if content is not None and params is not None:
            w.member(plain_dict, _patch_frame(plain_bytes, content), len(data), params)
            return
    elif not encrypted and nm.method == zipfile.ZIP_STORED:
        w.member(plain_dict, _patch_frame(plain_bytes, data), len(data), None)
        return
    # Not reproducible here: patch the compressed bytes against the base's compressed bytes.
    w.member(raw_dict, _patch_frame(raw_bytes, data), len(data), None)


def _looks_like_zip(data: bytes) -> bool:
    if len(data) < 22 or b"PK\x05\x06" not in data[-(65536 + 22) :]:
        return False
    try:
        return zipfile.is_zipfile(io.BytesIO(data))
    except (OSError, ValueError):
        return False


def make_delta(base: bytes, new: bytes, *, name: str = "") -> bytes | None:
    """A payload that rebuilds ``new`` from ``base``, or None if it would not beat plain zstd of ``new``.

    ``name`` (the document's file name) is only a hint: the zip container recipe is
    tried when both files *are* zip archives, whatever their names. Every candidate
    is verified by decoding it here; only one that reproduces ``new`` exactly is
    returned.
    """
    base, new = bytes(base), bytes(new)
    want = hashlib.sha256(new).digest()
    builders: list[Callable[[], bytes | None]] = []
    if _looks_like_zip(new) and _looks_like_zip(base):
        builders.append(lambda: _zip_recipe(base, new))

    spans: list[bytes | None] = []

    def span() -> bytes | None:
        spans.append(_span_recipe(base, new))
        return spans[0]

    def patch() -> bytes | None:
        # Without shared ends the span recipe is not built; for small files the
        # few bytes of recipe overhead can also make plain method 1 win.
        if spans and spans[0] is not None and len(base) + len(new) > _SMALL_TOTAL:
            return None
        return bytes([METHOD_PATCH]) + _patch_frame(base, new)

    builders += [span, patch]
    best: bytes | None = None
    for build in builders:
        try:
            payload = build()
        except Exception:  # a candidate that cannot be built is skipped (None if none is left)
            continue
        if payload is None or (best is not None and len(payload) >= len(best)):
            continue
        try:
            apply_delta(base, payload, expected_sha256=want, max_size=len(new))
        except (ProtocolError, IntegrityError):
            continue
        best = payload
    if best is None or not _plain_at_least(new, len(best) + 1):
        return None  # plain zstd of new is no bigger: send the whole version
    return best
