"""zstd patch frames: one frame whose matches may reference a dictionary (the base, or part of it).

Method 1 is one such frame against the whole base; the recipe's literal stream and every
MEMBER op carry one too. This is ``zstd --patch-from``: the dictionary is raw content, so a
small edit of a large file costs a few bytes per 128 KiB block. Frame shape and limits:
PROTOCOL.md §18c.
"""

from __future__ import annotations

from typing import Any

import zstandard

import xxhash

from ..codec import BATCH_LEVEL, WINDOW_FLOOR, check_frame
from ..errors import IntegrityError, ProtocolError
from .ranged import Source
from .wire import MIN_DICT, Buf

PLAIN_LEVEL = BATCH_LEVEL  # what "plain zstd of new" means: codec.compress's level
SMALL_TOTAL = 4 << 20  # base + new up to this: level 19 patch frames; above: level 9 + LDM

def window_log(dict_len: int, src_len: int) -> int:
    return min(30, max(10, max(dict_len, src_len, 1).bit_length() + 1))


def _cffi_lib() -> Any:
    try:
        from zstandard.backend_cffi import ffi, lib  # type: ignore[attr-defined]
    except Exception:  # cffi or the compiled _cffi module missing: use the fallback
        return None
    if not hasattr(lib, "ZSTD_CCtx_refPrefix"):
        return None
    return ffi, lib


CFFI: Any = _cffi_lib()


def _patch_frame_prefix(dictionary: Buf, src: Buf, level: int, wlog: int) -> bytes:
    """``zstd --patch-from``: the dictionary is a *prefix* referenced in place, with LDM on."""
    ffi, lib = CFFI
    cctx = lib.ZSTD_createCCtx()
    if cctx == ffi.NULL:
        raise MemoryError("ZSTD_createCCtx failed")
    try:
        for param, value in (
            (lib.ZSTD_c_compressionLevel, level),
            (lib.ZSTD_c_windowLog, wlog),
            (lib.ZSTD_c_enableLongDistanceMatching, 1),
            (lib.ZSTD_c_contentSizeFlag, 1),
            (lib.ZSTD_c_checksumFlag, 1),  # §7: every frame carries it, patch frames too
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
        frame: bytes = ffi.buffer(out, n)[:]  # zstandard's cffi backend has no type hints
        return frame
    finally:
        lib.ZSTD_freeCCtx(cctx)


def _patch_frame_dict(dictionary: Buf, src: Buf, level: int, wlog: int) -> bytes:
    """Fallback through python-zstandard's public dictionary API.

    That API loads the dictionary into a CDict, which libzstd never feeds to the
    long-distance matcher and only indexes as far as its hash tables reach, so
    for a large base the hash/chain logs must be sized to the base (and memory
    grows with them: about 2 x 5 x 2**hash_log bytes).
    """
    if len(dictionary) >= MIN_DICT and len(dictionary) + len(src) > SMALL_TOTAL:
        hlog = min(23, max(17, len(dictionary).bit_length() - 1))
        params = zstandard.ZstdCompressionParameters(
            window_log=wlog, hash_log=hlog, chain_log=hlog, search_log=4, min_match=5,
            target_length=0, strategy=zstandard.STRATEGY_LAZY2,
            write_content_size=1, write_checksum=1, write_dict_id=0,
        )  # fmt: skip
    else:
        params = zstandard.ZstdCompressionParameters.from_level(
            level, source_size=len(src), dict_size=len(dictionary), window_log=wlog,
            write_content_size=1, write_checksum=1, write_dict_id=0,
        )  # fmt: skip
    zdict = None
    if len(dictionary) >= MIN_DICT:
        zdict = zstandard.ZstdCompressionDict(dictionary, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    return zstandard.ZstdCompressor(compression_params=params, dict_data=zdict).compress(src)


def patch_frame(dictionary: Buf, src: Buf) -> bytes:
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
    level = PLAIN_LEVEL if total <= SMALL_TOTAL else 9
    wlog = window_log(len(dictionary), len(src))
    if CFFI is not None:
        return _patch_frame_prefix(dictionary, src, level, wlog)
    return _patch_frame_dict(dictionary, src, level, wlog)


def max_window(cap: int) -> int:
    """The window a reader allows a patch frame whose output is at most ``cap`` bytes (§18c)."""
    return min(1 << 31, max(1 << 20, 1 << (max(cap, 1) - 1).bit_length()))


def frame_content_size(frame: Buf, cap: int) -> int:
    """Check a patch frame under §7's rule (steps 1-8) and return its declared size (<= cap).

    The one difference from §7: the window may reach back over the dictionary, so it is
    bounded by ``max_window(cap)`` (what ``unpatch`` lets libzstd use) instead of twice the
    content. A frame without a content checksum is refused here, before decoding.
    """
    frame = bytes(frame) if not isinstance(frame, bytes) else frame
    return check_frame(frame, cap=cap, window_max=max(WINDOW_FLOOR, max_window(cap))).content_size


def unpatch(dictionary: Buf, frame: Buf, size: int, cap: int) -> bytes:
    """Decode a frame already checked by ``frame_content_size`` (declared ``size``).

    Steps 9-11 of §7, with the raw-content dictionary. libzstd gets the frame with its checksum
    flag cleared and the 4 checksum bytes cut off, so that it only inflates; the output's length
    and XXH64 are checked here. Any failure of these steps is ``integrity.delta`` (§18c), not
    ``protocol.zstd``: the dictionary lies outside the frame, so a receiver whose base differs
    from the writer's meets a well-formed frame that decodes to other bytes, and on a damaged
    frame one decoder stops at step 9 where another reaches step 11 (seen: fzstd against
    libzstd on one-bit flips of delta.json). One code keeps every reader's answer the same.
    """
    frame = bytes(frame) if not isinstance(frame, bytes) else frame
    want = int.from_bytes(frame[-4:], "little")
    bare = frame[:4] + bytes([frame[4] & ~0x04]) + frame[5:-4]
    kwargs: dict[str, Any] = {"max_window_size": max_window(cap)}
    try:
        if len(dictionary) >= MIN_DICT:
            kwargs["dict_data"] = zstandard.ZstdCompressionDict(dictionary, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        dctx = zstandard.ZstdDecompressor(**kwargs)
        if size == 0:
            # The one-shot API returns b"" for a declared size of 0 without decoding.
            out = b"" if not dctx.stream_reader(bare).read(1) else None
        else:
            out = dctx.decompress(bare, max_output_size=size)
    except zstandard.ZstdError:
        out = None
    if out is None or len(out) != size or xxhash.xxh64_intdigest(out) & 0xFFFFFFFF != want:
        raise IntegrityError(
            "a delta frame does not decode to its writer's bytes (a different base, or damage)",
            code="integrity.delta",
            hint="the base differs from the sender's, or the delta was damaged: fetch the whole version",
        )
    return out


def plain_at_least(data: Buf | Source, limit: int) -> bool:
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
    if len(data) > SMALL_TOTAL:
        p0 = zstandard.ZstdCompressionParameters.from_level(PLAIN_LEVEL, source_size=len(data))
        caps = {"window_log": min(p0.window_log, 22), "chain_log": min(p0.chain_log, 21), "hash_log": min(p0.hash_log, 20)}
    params = zstandard.ZstdCompressionParameters.from_level(
        PLAIN_LEVEL, source_size=len(data), write_content_size=1, write_checksum=1, **caps
    )
    cobj = zstandard.ZstdCompressor(compression_params=params).compressobj(size=len(data))
    view = data if isinstance(data, Source) else memoryview(data)  # a Source is read a block at a time
    total = 0
    for i in range(0, len(data), 1 << 17):
        total += len(cobj.compress(view[i : i + (1 << 17)]))
        if total >= limit:
            return True
    total += len(cobj.flush())
    return total >= limit

