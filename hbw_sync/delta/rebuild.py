"""Reading a delta: parse a payload, check every declared size against the caps, rebuild, verify.

Everything that arrives is bounded before it is trusted: ranges must lie inside the base,
and every size a frame or op declares is checked against ``max_size``, ``plain_cap`` (what
is held) and ``stream_cap`` (what a SPLICE over a deflated dictionary streams) before anything
that grows with it is allocated. PROTOCOL.md §18c holds the byte layout
and the limits; this module enforces them.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import zstandard

from ..errors import IntegrityError, LimitError, ProtocolError
from .blocks import MAX_BLOCK, MAX_WINDOW, MIN_BLOCK, deflate_blocks_read
from .deflate import deflate_read, inflate_exact
from .patch import frame_content_size, unpatch
from .ranged import Readable, Source
from .splice import Spliced
from .stream import BlockSink, Emit, NotExact, RawSink, ZlibSink, inflate_pieces
from .transcript import MAX_DEFLATED, PER_BYTE, SLACK, encode as transcript_encode, parse as transcript_parse
from .wire import (CODEC_BLOCKS, CODEC_DEFLATE, CODEC_RAW, CODEC_TRANSCRIPT, METHOD_PATCH, METHOD_RECIPE, OP_COPY,
                   OP_LIT, OP_MEMBER, OP_SPLICE, Buf, Op, Reader, plain_cap, stream_cap)


def _base_range(base_len: int, off: int, n: int) -> None:
    if off > base_len or n > base_len - off:
        raise ProtocolError("delta refers to bytes beyond the end of the base", code="protocol.delta")


def parse_recipe(r: Reader, base_len: int, max_size: int) -> tuple[int, int, memoryview | None, int, list[Op]]:
    """Read a method-2 body and check every range and declared size before anything is decoded."""
    cap = plain_cap(max_size)
    scap = stream_cap(max_size)  # a SPLICE over a deflated dictionary: streamed, not held (wire.py)
    lit_off, lit_len = r.uvarint(), r.uvarint()
    _base_range(base_len, lit_off, lit_len)
    lit_frame_len = r.uvarint()
    lit_frame = r.take(lit_frame_len) if lit_frame_len else None
    op_count = r.uvarint()
    if op_count > len(r.data):  # every op takes at least two bytes
        raise ProtocolError("delta declares more ops than it can hold", code="protocol.delta")
    ops: list[Op] = []
    total = 0
    lit_total = 0
    dict_total = 0  # bounds the work as well as the memory: see the format's limits
    plain_total = 0  # what the reader holds whole
    stream_total = 0  # what streamed SPLICE ops inflate and rebuild a piece at a time
    for _ in range(op_count):
        tag = r.u8()
        if tag == OP_LIT:
            op = Op(OP_LIT, n=r.uvarint())
            lit_total += op.n
        elif tag == OP_COPY:
            op = Op(OP_COPY)
            op.off, op.n = r.uvarint(), r.uvarint()
            _base_range(base_len, op.off, op.n)
        elif tag in (OP_MEMBER, OP_SPLICE):
            op = Op(tag)
            op.dict_off, op.dict_len = r.uvarint(), r.uvarint()
            _base_range(base_len, op.dict_off, op.dict_len)
            op.dict_codec = r.u8()
            streamed = tag == OP_SPLICE and op.dict_codec == CODEC_DEFLATE  # as _splice_streamed rebuilds it
            if op.dict_codec in (CODEC_DEFLATE, CODEC_TRANSCRIPT):
                op.dict_plain = r.uvarint()
                if op.dict_plain > (scap if streamed else cap):
                    raise LimitError("delta dictionary would inflate past the cap", code="protocol.bomb")
                if op.dict_codec == CODEC_TRANSCRIPT and op.dict_len > MAX_DEFLATED:
                    raise LimitError("delta dictionary too large to transcribe", code="protocol.limit")
            elif op.dict_codec != CODEC_RAW:
                raise ProtocolError(f"unknown dictionary codec {op.dict_codec} in delta", code="protocol.delta")
            if op.dict_len == 0 and (op.dict_off or op.dict_codec != CODEC_RAW):
                raise ProtocolError("empty dictionary range with an offset or codec", code="protocol.delta")
            content = 0  # SPLICE: the kept head and tail, beside the frame's content
            if tag == OP_SPLICE:
                op.head, op.tail = r.uvarint(), r.uvarint()
                have = op.dict_len if op.dict_codec == CODEC_RAW else op.dict_plain
                if op.head > have or op.tail > have - op.head:
                    raise ProtocolError("splice keeps more than its dictionary holds", code="protocol.delta")
                content = op.head + op.tail
            op.frame = r.take(r.uvarint())
            op.frame_size = frame_content_size(op.frame, cap)
            content += op.frame_size
            if content > (scap if streamed else cap):
                raise LimitError("spliced member would be larger than the cap", code="protocol.bomb")
            dict_total += op.dict_len
            if streamed:  # held: the old middle (the frame's dictionary) and the new one
                plain_total += op.dict_plain - op.head - op.tail + op.frame_size
                stream_total += op.dict_plain + content
            else:
                plain_total += op.dict_plain + content
            if dict_total > base_len or plain_total > cap or stream_total > scap:
                raise LimitError("delta members would decode more than the caps allow", code="protocol.limit")
            op.out_codec = r.u8()
            if op.out_codec == CODEC_DEFLATE:
                level, mem_level, strategy = r.u8(), r.u8(), r.u8()
                if level > 9 or not 1 <= mem_level <= 9 or strategy > 4:
                    raise ProtocolError("invalid deflate parameters in delta", code="protocol.delta")
                op.deflate = (level, mem_level, strategy)
            elif op.out_codec == CODEC_BLOCKS:
                level, mem_level, strategy = r.u8(), r.u8(), r.u8()
                block_size, window = r.uvarint(), r.uvarint()
                if (level > 9 or not 1 <= mem_level <= 9 or strategy > 4
                        or not MIN_BLOCK <= block_size <= MAX_BLOCK or window > MAX_WINDOW):
                    raise ProtocolError("invalid block deflate parameters in delta", code="protocol.delta")
                op.deflate = (level, mem_level, strategy)
                op.blocks = (block_size, window)
            elif op.out_codec not in (CODEC_RAW, CODEC_TRANSCRIPT):
                raise ProtocolError(f"unknown output codec {op.out_codec} in delta", code="protocol.delta")
            if streamed and op.out_codec == CODEC_TRANSCRIPT:  # a streamed SPLICE is not held, so never transcribed
                raise ProtocolError("a SPLICE over a deflated dictionary cannot be transcribed", code="protocol.delta")
            op.n = r.uvarint()
            if op.out_codec == CODEC_TRANSCRIPT and op.n > MAX_DEFLATED:
                raise LimitError("transcribed member too large", code="protocol.limit")
            if op.out_codec == CODEC_TRANSCRIPT and content > PER_BYTE * op.n + SLACK:
                raise ProtocolError("transcript longer than any stream of its length", code="protocol.delta")
            if op.out_codec == CODEC_RAW and op.n != content:
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
    elif frame_content_size(lit_frame, max_size) != lit_total:
        raise ProtocolError("literal stream size does not match the ops", code="protocol.delta")
    return lit_off, lit_len, lit_frame, total, ops


def run_recipe(base: memoryview | Source, parsed: tuple[int, int, memoryview | None, int, list[Op]], max_size: int,
               emit: Emit | None = None) -> bytes:
    """Rebuild from a recipe ``parse_recipe`` accepted; a recompressed member of the wrong length is integrity.delta.

    With ``emit`` the rebuilt bytes go to it in order as they are made and b"" is returned: the
    writer's own check (``check_delta``) hashes them without holding the file or a whole member.
    ``base`` may be a ``ranged.Source`` (a version in the chunk store): a COPY is then read and
    passed on a piece at a time, and a member's dictionary is read as that member is rebuilt.
    """
    lit_off, lit_len, lit_frame, total, ops = parsed
    cap = plain_cap(max_size)
    lits = b""
    if lit_frame is not None:
        lit_size = frame_content_size(lit_frame, max_size)
        lits = unpatch(base[lit_off : lit_off + lit_len], lit_frame, lit_size, max_size)
    lit_pos = 0
    parts: list[Buf] = []
    put: Emit = parts.append if emit is None else emit
    made = 0
    for op in ops:
        if op.tag == OP_LIT:
            put(lits[lit_pos : lit_pos + op.n])
            lit_pos += op.n
            made += op.n
        elif op.tag == OP_COPY:
            if isinstance(base, Source):
                for piece in base.pieces(op.off, op.off + op.n):
                    put(piece)
            else:
                put(base[op.off : op.off + op.n])
            made += op.n
        else:
            made += _member(base, op, cap, emit, parts)
    if made != total:  # cannot happen: every op's length was checked
        raise ProtocolError("rebuilt size does not match the delta", code="protocol.delta")
    return b"".join(parts)


def _member(base: memoryview | Source, op: Op, cap: int, emit: Emit | None, parts: list[Buf]) -> int:
    """Append what one MEMBER or SPLICE op rebuilds (to ``parts``, or to ``emit`` as it is made) and return
    its length; its inflated dictionary and content die on return.

    A SPLICE's content is read by ranges (``Spliced``), never joined before it is deflated, so a
    large sheet is held once (its inflated dictionary) plus the recompressed member.
    """
    if op.tag == OP_SPLICE and op.dict_codec == CODEC_DEFLATE:  # never a transcript's (parse_recipe)
        # Over a Source the old member is inflated from its range as it is read, never whole.
        raw: Readable = (base.sub(op.dict_off, op.dict_len) if isinstance(base, Source)
                         else base[op.dict_off : op.dict_off + op.dict_len])
        return _splice_streamed(raw, op, cap, emit, parts)
    dictionary: Buf = base[op.dict_off : op.dict_off + op.dict_len]
    if op.dict_codec == CODEC_TRANSCRIPT:  # the base member's transcript (codec 10, transcript.py)
        try:
            transcribed: bytes | None = transcript_parse(dictionary, cap)
        except ProtocolError:  # LimitError too: the writer's base member was transcribed within them
            transcribed = None
        if transcribed is None or len(transcribed) != op.dict_plain:
            raise ProtocolError("delta dictionary is not the declared deflate stream", code="protocol.delta")
        dictionary = transcribed
    elif op.dict_codec == CODEC_DEFLATE:
        inflated = inflate_exact(dictionary, op.dict_plain)
        if inflated is None or len(inflated) != op.dict_plain:
            raise ProtocolError("delta dictionary is not the declared deflate stream", code="protocol.delta")
        dictionary = inflated
    assert op.frame is not None
    read: Callable[[int, int], Buf]
    if op.tag == OP_SPLICE:
        view = memoryview(dictionary)
        middle = unpatch(view[op.head : len(view) - op.tail], op.frame, op.frame_size, cap)
        spliced = Spliced(view, op.head, middle, op.tail)
        read, n = spliced.read, len(spliced)
    else:
        plain = memoryview(unpatch(dictionary, op.frame, op.frame_size, cap))
        read, n = (lambda a, b: plain[a:b]), len(plain)
    out: Buf
    if op.out_codec == CODEC_RAW:
        out = read(0, n)
    else:
        if op.out_codec == CODEC_DEFLATE:
            out = deflate_read(read, n, *op.deflate)
        elif op.out_codec == CODEC_TRANSCRIPT:
            out = transcript_encode(read(0, n), op.n)
        else:
            out = deflate_blocks_read(read, n, *op.deflate, *op.blocks)
        if len(out) != op.n:
            raise IntegrityError(
                "recompressed member differs from the sender's (different zlib?)",
                code="integrity.delta",
                hint="fetch the whole version",
            )
    if emit is None:
        parts.append(out)
    else:
        emit(out)
    return len(out)


def _sink(op: Op, emit: Emit | None) -> RawSink | ZlibSink | BlockSink:
    if op.out_codec == CODEC_DEFLATE:
        return ZlibSink(*op.deflate, emit=emit)
    if op.out_codec == CODEC_BLOCKS:
        return BlockSink(*op.deflate, *op.blocks, emit=emit)
    return RawSink(emit)


def _splice_streamed(raw: Readable, op: Op, cap: int, emit: Emit | None, parts: list[Buf]) -> int:
    """A SPLICE over a deflated dictionary, inflated once a piece at a time, never held whole.

    The head goes to the deflater as it is inflated, the old middle is kept (the frame's
    dictionary), the patched middle follows it, then the tail as it is inflated: the member is
    rebuilt holding one piece, the old middle, the new middle and what the deflater wrote.
    """
    sink = _sink(op, emit)
    mid_end = op.dict_plain - op.tail
    old_middle = bytearray()
    done = False  # the patched middle was written

    def middle() -> None:
        nonlocal done
        assert op.frame is not None
        sink.write(unpatch(old_middle, op.frame, op.frame_size, cap))
        done = True

    pos = 0
    try:
        for piece in inflate_pieces(raw, op.dict_plain):
            end = pos + len(piece)
            if pos < op.head:
                sink.write(piece[: min(end, op.head) - pos])
            a, b = max(pos, op.head), min(end, mid_end)
            if a < b:
                old_middle += piece[a - pos : b - pos]
            if end > mid_end:
                if not done:
                    middle()
                sink.write(piece[max(pos, mid_end) - pos :])
            pos = end
    except NotExact:
        raise ProtocolError("delta dictionary is not the declared deflate stream", code="protocol.delta") from None
    if pos != op.dict_plain:
        raise ProtocolError("delta dictionary is not the declared deflate stream", code="protocol.delta")
    if not done:
        middle()
    out = sink.finish()
    if sink.written != op.n:
        raise IntegrityError("recompressed member differs from the sender's (different zlib?)",
                             code="integrity.delta", hint="fetch the whole version")
    if emit is None:
        parts.append(out)
    return sink.written


def apply_delta(base: Readable, delta: bytes, *, expected_sha256: bytes, max_size: int) -> bytes:
    """Rebuild the new version from ``base`` and a payload from ``make_delta``.

    Raises ``ProtocolError`` (malformed or unknown method), ``LimitError`` (the
    result or an intermediate would exceed ``max_size``; refused from declared
    sizes before allocating) or ``IntegrityError`` (SHA-256 of the result is not
    ``expected_sha256``), and nothing else.
    """
    return _rebuild(base, delta, expected_sha256, max_size, None)


def check_delta(base: Readable, delta: bytes, *, expected_sha256: bytes, max_size: int) -> None:
    """``apply_delta``'s checks and errors, the rebuilt file hashed as it is made and never held.

    Why: ``make_delta`` verifies every payload it returns; rebuilding the file to hash it added
    the file and its largest recompressed member to the writer's peak (12 MB for the 150,000-row
    sheet). A method-1 payload (one patch frame) is still decoded whole.
    """
    _rebuild(base, delta, expected_sha256, max_size, hashlib.sha256())


@dataclass
class _Tee:
    """A hash that also passes every piece on: ``apply_delta_to``'s output, hashed as it is written."""

    emit: Emit
    h: Any = field(default_factory=hashlib.sha256)

    def update(self, data: Buf) -> None:
        self.h.update(data)
        self.emit(data)

    def digest(self) -> bytes:
        return bytes(self.h.digest())


def apply_delta_to(base: Readable, delta: bytes, emit: Emit, *, expected_sha256: bytes, max_size: int) -> None:
    """``apply_delta``, the rebuilt file handed to ``emit`` in order as it is made and hashed as it goes.

    Why: the receiver and ``doc get`` rebuilt a near-32 MiB office file whole beside its base
    (130 MB); with ``base`` a ``ranged.Source`` over the chunk store and ``emit`` cutting chunks,
    a zip recipe is rebuilt holding one member at a time. Same errors as ``apply_delta``; the
    hash is checked after the last byte, so what ``emit`` took is only trusted once this returns
    (a chunk store keeps only pieces that match their ids, inside one transaction).
    """
    _rebuild(base, delta, expected_sha256, max_size, _Tee(emit))


def _rebuild(base: Readable, delta: bytes, expected_sha256: bytes, max_size: int, hasher: Any) -> bytes:
    """``apply_delta`` (``hasher`` None), or ``check_delta`` (the bytes go to ``hasher``; b"" is returned)."""
    if not isinstance(max_size, int) or isinstance(max_size, bool):
        raise ProtocolError("max_size must be an integer", code="protocol.delta")
    max_size = max(0, max_size)
    try:
        base_view = base if isinstance(base, Source) else memoryview(base).cast("B")
        view = memoryview(delta).cast("B")
        expected = bytes(memoryview(expected_sha256).cast("B"))
    except (TypeError, ValueError):
        raise ProtocolError("delta, base and hash must be bytes", code="protocol.delta") from None
    if len(expected) != 32:
        raise ProtocolError("expected_sha256 must be 32 bytes", code="protocol.delta")
    try:
        r = Reader(view)
        method = r.u8()
        if method == METHOD_PATCH:
            frame = r.take(len(view) - 1)
            size = frame_content_size(frame, max_size)
            out = unpatch(base_view.whole() if isinstance(base_view, Source) else base_view, frame, size, max_size)
            if hasher is not None:
                hasher.update(out)
        elif method == METHOD_RECIPE:
            out = run_recipe(base_view, parse_recipe(r, len(base_view), max_size), max_size,
                             None if hasher is None else hasher.update)
        else:
            raise ProtocolError(f"unknown delta method {method}", code="protocol.delta")
    except (ProtocolError, IntegrityError):
        raise
    except (ValueError, TypeError, IndexError, OverflowError, zlib.error, zstandard.ZstdError) as e:
        raise ProtocolError(f"malformed delta: {e}", code="protocol.delta") from None
    digest = hashlib.sha256(out).digest() if hasher is None else hasher.digest()
    if digest != expected:
        raise IntegrityError(
            "document rebuilt from the delta does not match its hash",
            code="integrity.delta",
            hint="the base differs from the sender's, or the delta was damaged: fetch the whole version",
        )
    return out if hasher is None else b""
