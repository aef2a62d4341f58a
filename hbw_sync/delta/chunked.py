"""Delta versions of chunked documents: a one-place edit of a chunked file travels as a few KB again.

Why: since documents of 1 MiB and more travel as content-defined chunks (``hbw_sync.chunks``),
an edit resends the one or two chunks it touched, 16-256 KiB each, where a patch-from or zip
recipe delta (``make_delta``) costs a few KB. A *delta version* (PROTOCOL.md §18c, §18e) is a
chunked version whose op carries, next to its manifest, a ``delta`` against an earlier version
(``base_sha256``). Its author uploads none of the chunks the delta rebuilds; a reader that holds
the base rebuilds them and checks every piece against its chunk id, so the chunks it keeps are
the very chunks the author made (and seal to the same bytes).

Two writers, two readers:

* **Chunk-aligned recipes** (``aligned_recipe`` / ``rebuild_needed``), any size, flat memory: COPY
  for each chunk the base has, one patched MEMBER per run of new chunks. The reader rebuilds only
  the chunks it lacks, reading base bytes through a callback a chunk at a time. Measured on a
  200 MB file (``scripts/bench_docs_memory.py``): 463 bytes on the wire, peak RSS as for ``doc add``.
* **Whole-file deltas** (``chunked_delta`` / ``rebuild_chunks``), both versions at most
  ``DELTA_MAX`` and in memory: ``make_delta``'s zip recipes, which rebuild office files member by
  member (the only way a one-cell edit of an .xlsx stays small), or, for other large files, one
  patch frame with the base referenced in place by libzstd (``refPrefix``: no copy into a
  dictionary object).

Sans-IO: bytes and read callbacks in, chunks out.
"""

from __future__ import annotations

import hashlib
import hmac
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import zstandard

from .. import chunks
from ..errors import IntegrityError, LimitError, ProtocolError
from . import make_delta
from .patch import CFFI, SMALL_TOTAL, frame_content_size, max_window, patch_frame, unpatch
from .rebuild import apply_delta, parse_recipe, run_recipe
from .wire import (CODEC_RAW, METHOD_PATCH, METHOD_RECIPE, MIN_DICT, OP_COPY, OP_LIT, OP_SPLICE, Buf, Reader,
                   plain_cap)
from .writer import RecipeWriter

#: Largest base and new version (bytes) a delta version may have: 32 MiB, the inline limit (§18c).
DELTA_MAX = 32 * 1024 * 1024


def streams_in_place(base: Buf, new: Buf) -> bool:
    """Does this pair take the low-memory method-1 path (large, not both zip containers, libzstd's prefix
    API at hand)? A choice of the writer's only: the reader decodes whatever method comes."""
    return CFFI is not None and len(base) + len(new) > SMALL_TOTAL and not (_zipish(base) and _zipish(new))


def _zipish(data: Buf) -> bool:
    """Starts like a zip and has an end-of-central-directory record near its end (no copy of the whole)."""
    return bytes(data[:4]) == b"PK\x03\x04" and b"PK\x05\x06" in bytes(data[-(65536 + 22):])


def chunked_delta(base: Buf, new: Buf, *, name: str = "", worth: int) -> bytes | None:
    """A payload rebuilding ``new`` from ``base`` if it is smaller than ``worth`` bytes (what the
    chunks it spares would cost); None when a delta does not pay or the files are too large.

    On the low-memory path (``streams_in_place``) the payload is *not verified here*: the caller
    drops ``new`` and checks it with ``check`` (against the manifest's SHA-256). ``make_delta``'s
    payloads are verified by ``make_delta`` itself.
    """
    if len(base) > DELTA_MAX or len(new) > DELTA_MAX or worth <= 0:
        return None
    d: bytes | None
    if streams_in_place(base, new):
        d = bytes([METHOD_PATCH]) + patch_frame(base, new)
    else:
        d = make_delta(base, new, name=name)  # read in place: no bytes copy of either version
    return d if d is not None and len(d) < worth else None


def rebuild(base: Buf, payload: bytes, *, expected_sha256: bytes, size: int) -> Any:
    """The file a delta rebuilds from ``base`` (bytes, or a buffer of exactly ``size`` bytes), checked.

    Method 1 decodes through libzstd with the base referenced in place and the result written
    into one buffer of the declared size; other payloads go through ``apply_delta``. Raises as
    ``apply_delta``: ``ProtocolError``/``LimitError`` from the payload's declared shape,
    ``IntegrityError`` ``integrity.delta`` when the result is not ``expected_sha256``.
    """
    if payload and payload[0] == METHOD_RECIPE:
        return _rebuild_recipe(base, payload, expected_sha256, size)
    if not payload or payload[0] != METHOD_PATCH or CFFI is None:
        # (apply_delta reads any buffer in place: a bytes copy of the base added its whole size to the peak)
        return apply_delta(base, payload, expected_sha256=expected_sha256, max_size=size)
    frame = memoryview(payload)[1:]
    declared = frame_content_size(frame, size)
    out = _unpatch_in_place(base, frame, declared)
    if len(out) != size or hashlib.sha256(out).digest() != expected_sha256:
        raise IntegrityError("document rebuilt from the delta does not match its hash", code="integrity.delta",
                             hint="the base differs from the sender's, or the delta was damaged: fetch the whole version")
    return out


def _rebuild_recipe(base: Buf, payload: bytes, expected_sha256: bytes, size: int) -> bytearray:
    """A method-2 payload rebuilt as ``apply_delta`` does, but straight into one buffer of its declared size.

    Why: ``apply_delta`` gathers what the ops make and joins it, and joins a recompressed member once
    more first, so the receiver of a one-cell edit of a 400,000-row sheet (15 MB, its sheet member
    14 MB) held the file about three times beside the base: 113 MB. Here every byte is written once,
    where it belongs, and hashed as it is written; a member that makes more than the declared size
    is refused at the first byte over it.
    """
    fail = IntegrityError("recompressed member differs from the sender's (different zlib?)",
                          code="integrity.delta", hint="fetch the whole version")
    view = memoryview(base).cast("B")
    h = hashlib.sha256()
    try:
        r = Reader(memoryview(payload).cast("B"))
        r.u8()
        parsed = parse_recipe(r, len(view), size)  # every size bounded before anything is allocated
        out = bytearray(parsed[3])  # the declared result size, at most ``size``
        pos = 0

        def fill(data: Buf) -> None:
            nonlocal pos
            n = len(data)
            if n > len(out) - pos:
                raise fail
            out[pos:pos + n] = data
            h.update(data)
            pos += n

        run_recipe(view, parsed, size, fill)
    except (ProtocolError, IntegrityError):
        raise
    except (ValueError, TypeError, IndexError, OverflowError, zlib.error, zstandard.ZstdError) as e:
        raise ProtocolError(f"malformed delta: {e}", code="protocol.delta") from None
    if pos != len(out) or h.digest() != expected_sha256:
        raise IntegrityError("document rebuilt from the delta does not match its hash", code="integrity.delta",
                             hint="the base differs from the sender's, or the delta was damaged: fetch the whole version")
    return out


def _unpatch_in_place(base: Buf, frame: memoryview, size: int) -> Any:
    """Decode one patch frame (already checked by ``frame_content_size``: §7 steps 1-8) with ``base`` as
    a referenced prefix (no copy), into a fresh buffer. libzstd checks the content checksum itself;
    any failure of decoding is ``integrity.delta``, as in ``patch.unpatch`` (§18c)."""
    ffi, lib = CFFI
    dctx = lib.ZSTD_createDCtx()
    if dctx == ffi.NULL:
        raise MemoryError("ZSTD_createDCtx failed")
    try:
        lib.ZSTD_DCtx_setParameter(dctx, lib.ZSTD_d_windowLogMax, max_window(size).bit_length() - 1)
        ok = True
        if len(base) >= MIN_DICT:
            ok = not lib.ZSTD_isError(lib.ZSTD_DCtx_refPrefix(dctx, ffi.from_buffer(base), len(base)))
        out = ffi.new_allocator(should_clear_after_alloc=False)("char[]", max(size, 1))
        if ok:
            src = ffi.from_buffer(frame)
            n = lib.ZSTD_decompressDCtx(dctx, out, size, src, len(frame))
            ok = not lib.ZSTD_isError(n) and n == size
        if not ok:
            raise IntegrityError("a delta frame does not decode to its writer's bytes (a different base, or damage)",
                                 code="integrity.delta",
                                 hint="the base differs from the sender's, or the delta was damaged: fetch the whole version")
        return ffi.buffer(out, size)
    finally:
        lib.ZSTD_freeDCtx(dctx)


def check(base: Buf, payload: bytes, *, expected_sha256: bytes, size: int) -> bool:
    """Does ``payload`` rebuild the version (the writer's own check, once it let the new bytes go)?"""
    try:
        rebuild(base, payload, expected_sha256=expected_sha256, size=size)
    except (ProtocolError, IntegrityError, LimitError):
        return False
    return True


def rebuild_chunks(keys: chunks.ChunkKeys, manifest: chunks.Manifest, base: Buf,
                   payload: bytes) -> Iterator[tuple[bytes, memoryview]]:
    """(id, plain bytes) of each chunk of a delta version, rebuilt from ``base`` and checked.

    Raises (before yielding anything): ``LimitError`` ``protocol.limit`` (a version over
    ``DELTA_MAX``), what ``rebuild`` raises (``IntegrityError`` ``integrity.delta`` when the
    result is not the manifest's SHA-256); while yielding: ``IntegrityError`` ``integrity.chunk``
    when a piece cut at the manifest's sizes is not the chunk its id names (a dishonest manifest).
    """
    if manifest.size > DELTA_MAX or len(base) > DELTA_MAX:
        raise LimitError(f"a delta version of {manifest.size} bytes over a base of {len(base)} is over the "
                         f"{DELTA_MAX}-byte limit", code="protocol.limit")
    data = rebuild(base, payload, expected_sha256=manifest.sha256, size=manifest.size)
    view = memoryview(data)
    for cid, off, n in manifest.offsets():
        piece = view[off:off + n]
        if not hmac.compare_digest(keys.chunk_id(piece), cid):
            raise IntegrityError("a chunk rebuilt from a delta does not match its id", code="integrity.chunk")
        yield cid, piece


# -- chunk-aligned recipes: any size, flat memory ---------------------------------------------------
#
# For files that are not zip containers the writer can do better than a whole-file delta: it
# knows both versions' chunk lists, so it writes a method-2 recipe of COPY ops for the chunks
# the base already has and one MEMBER per run of new chunks, patched against the base bytes
# between the matched chunks around it. A reader that holds the base rebuilds only the chunks it
# lacks (``rebuild_needed``), reading base bytes a chunk at a time: memory is a run, not a file,
# whatever the file's size. It is an ordinary §18c payload: ``apply_delta`` reads it too.

#: Largest run of new chunks (and its base dictionary) one MEMBER may cover: 8 MiB.
RUN_MAX = 8 << 20

ReadRange = Callable[[int, int], bytes]


class NotStreamable(Exception):
    """A payload ``rebuild_needed`` does not rebuild piece by piece (deflate members, large literals)."""


def aligned_recipe(base_m: chunks.Manifest, new_m: chunks.Manifest, base_range: ReadRange,
                   new_range: ReadRange) -> bytes | None:
    """A chunk-aligned recipe rebuilding ``new_m``'s file from ``base_m``'s, or None (a run over ``RUN_MAX``)."""
    base_at: dict[bytes, int] = {}
    for cid, off, _n in base_m.offsets():
        base_at.setdefault(cid, off)
    w = RecipeWriter()
    items = list(new_m.offsets())
    i, prev_end = 0, 0
    while i < len(items):
        cid, off, n = items[i]
        if cid in base_at:
            w.copy(base_at[cid], n)
            prev_end = base_at[cid] + n
            i += 1
            continue
        j = i
        while j < len(items) and items[j][0] not in base_at:
            j += 1
        run_off, run_len = off, sum(x[2] for x in items[i:j])
        nxt = base_at[items[j][0]] if j < len(items) else base_m.size
        lo, hi = (prev_end, nxt) if nxt >= prev_end else (prev_end, min(base_m.size, prev_end + run_len))
        if run_len > RUN_MAX or hi - lo > RUN_MAX:
            return None
        dictionary = base_range(lo, hi - lo) if hi > lo else b""
        frame = patch_frame(dictionary, new_range(run_off, run_len))
        w.member((lo if hi > lo else 0, hi - lo, CODEC_RAW, 0), frame, run_len, None)
        i = j
    return w.encode(b"", (0, 0))


def rebuild_needed(payload: bytes, base_size: int, base_range: ReadRange, manifest: chunks.Manifest,
                   keys: chunks.ChunkKeys, needed: set[bytes]) -> Iterator[tuple[bytes, bytes]]:
    """(id, plain bytes) of the chunks in ``needed`` of a delta version, rebuilt piece by piece and each
    checked against its id; base bytes are read through ``base_range(off, n)`` as they are needed.

    Raises ``NotStreamable`` (before yielding anything) for a payload that is not a recipe of COPY, LIT
    and raw MEMBER ops (no SPLICE) with bounded dictionaries and literals (the caller rebuilds it whole instead);
    what ``parse_recipe`` raises for a malformed one; ``IntegrityError`` ``integrity.chunk`` for a
    piece that is not the chunk its id names.
    """
    view = memoryview(payload)
    r = Reader(view)
    if not len(view) or r.u8() != METHOD_RECIPE:
        raise NotStreamable
    lit_off, lit_len, lit_frame, total, ops = parse_recipe(r, base_size, manifest.size)
    if total != manifest.size:
        raise IntegrityError("a delta rebuilds another size than its manifest's", code="integrity.delta")
    if any(op.tag == OP_SPLICE or op.tag not in (OP_LIT, OP_COPY) and (op.out_codec != CODEC_RAW or op.dict_codec != CODEC_RAW
                                                or op.dict_len > RUN_MAX or op.frame_size > RUN_MAX)
           for op in ops) or lit_len > RUN_MAX:
        raise NotStreamable
    lits = b""
    if lit_frame is not None:
        if frame_content_size(lit_frame, manifest.size) > RUN_MAX:
            raise NotStreamable
        lits = unpatch(base_range(lit_off, lit_len) if lit_len else b"", lit_frame,
                       frame_content_size(lit_frame, manifest.size), manifest.size)
    spans = [(cid, off, n) for cid, off, n in manifest.offsets() if cid in needed]
    k = 0  # the next needed chunk
    buf = bytearray()
    pos = lit_pos = 0
    cap = plain_cap(manifest.size)
    for op in ops:
        end = pos + op.n
        # the part of [pos, end) that needed chunks cover, or nothing
        if k < len(spans) and spans[k][1] < end:
            if op.tag == OP_LIT:
                data: Buf = lits[lit_pos:lit_pos + op.n]
            elif op.tag == OP_COPY:
                data = b""
            else:
                dictionary = base_range(op.dict_off, op.dict_len) if op.dict_len else b""
                assert op.frame is not None
                data = unpatch(dictionary, op.frame, op.frame_size, cap)
            while k < len(spans) and spans[k][1] < end:
                cid, off, n = spans[k]
                a, b = max(off + len(buf), pos), min(off + n, end)  # the next byte it needs, and where this op ends
                piece = base_range(op.off + a - pos, b - a) if op.tag == OP_COPY else bytes(data[a - pos:b - pos])
                buf += piece
                if len(buf) < n:
                    break  # the chunk goes on in the next op
                if not hmac.compare_digest(keys.chunk_id(buf), cid):
                    raise IntegrityError("a chunk rebuilt from a delta does not match its id", code="integrity.chunk")
                yield cid, bytes(buf)
                buf = bytearray()
                k += 1
        if op.tag == OP_LIT:
            lit_pos += op.n
        pos = end
    if k != len(spans):
        raise IntegrityError("a delta did not rebuild every chunk of its manifest", code="integrity.delta")
