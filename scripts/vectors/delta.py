"""protocol/vectors/delta.json: document delta payloads (PROTOCOL.md §18c), good and bad.

Good vectors: one per method and codec (method 1 patch, span recipe, zip recipe as the
writer makes it, and hand-assembled MEMBER ops with codecs 8, 9 and 10 so a reader can
check each rebuild on a few kilobytes). Codec 10's deflate streams are zlib's output spliced
by hand (a dynamic block, a fixed-Huffman block, stored blocks, sync and full flushes: a stream no
single deflater call writes), so the vectors need no deflater but zlib. A reader MUST rebuild ``result`` from ``base`` and
``payload`` under ``max_size`` and check ``result_sha256`` (and ``result``, where given). Bad
vectors each change one thing from a good one, use the base of the good vector named in
``base_of``, and name the error class and stable code a reader must fail with. ``flips``: the
outcome of every one-bit flip of every good payload (``flip_letters``), so that a second
reader is checked on damaged patch frames, recipes and deflate parameters too.

The payloads hold zstd frames, so their bytes are reproducible only with the zstd release in
``meta``; decoding them is not version-dependent, and the tests decode them with any.
"""

from __future__ import annotations

import hashlib
import io
import random
import struct
import zipfile
import zlib
from typing import Any, Callable

import zstandard

from hbw_sync import delta
from hbw_sync.delta import blocks, patch, splice, transcript, wire
from hbw_sync.errors import HbwError

MAX = 1 << 20  # max_size of every vector unless it names its own


def _text(n: int, seed: int) -> bytes:
    rng = random.Random(seed)
    words = "ward ledger permit budget clinic road water audit tender receipt quarter office".split()
    out = []
    while sum(map(len, out)) < n:
        out.append(" ".join(rng.choice(words) for _ in range(rng.randint(6, 14))).capitalize() + ".\n")
    return "".join(out).encode()[:n]


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 12, 1, 9, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()


def _member_payload(base: bytes, content: bytes, out_codec: int, params: tuple[int, ...]) -> tuple[bytes, bytes]:
    """A recipe with one MEMBER op: ``content`` patched against the whole base, recompressed by ``out_codec``."""
    frame = patch.patch_frame(base, content)
    if out_codec == wire.CODEC_DEFLATE:
        out = delta.deflate.deflate(content, *params)
        tail = bytes(params)
    else:
        out = blocks.deflate_blocks(content, *params)
        tail = bytes(params[:3]) + wire.uvarint(params[3]) + wire.uvarint(params[4])
    body = bytearray([wire.METHOD_RECIPE]) + wire.uvarint(0) + wire.uvarint(0) + wire.uvarint(0) + wire.uvarint(1)
    body += bytes([wire.OP_MEMBER]) + wire.uvarint(0) + wire.uvarint(len(base)) + bytes([wire.CODEC_RAW])
    body += wire.uvarint(len(frame)) + frame + bytes([out_codec]) + tail + wire.uvarint(len(out))
    return bytes(body), out


def _splice_payload(base: bytes, old: bytes, content: bytes, out_codec: int, params: tuple[int, ...],
                    dict_plain: int | None = None) -> tuple[bytes, bytes]:
    """A recipe with one SPLICE op: ``content`` as ``old``'s shared head and tail and a patched middle.

    ``old`` is the dictionary's content: the whole base, or (``dict_plain`` given) the base
    inflated as one raw deflate stream (dict codec 8).
    """
    head, tail = splice.common_ends(old, content)
    frame = patch.patch_frame(old[head : len(old) - tail], content[head : len(content) - tail])
    if out_codec == wire.CODEC_BLOCKS:
        out = blocks.deflate_blocks(content, *params)
        codec_tail = bytes(params[:3]) + wire.uvarint(params[3]) + wire.uvarint(params[4])
    else:
        out, codec_tail = content, b""
    body = bytearray([wire.METHOD_RECIPE]) + wire.uvarint(0) + wire.uvarint(0) + wire.uvarint(0) + wire.uvarint(1)
    body += bytes([wire.OP_SPLICE]) + wire.uvarint(0) + wire.uvarint(len(base))
    if dict_plain is None:
        body.append(wire.CODEC_RAW)
    else:
        body += bytes([wire.CODEC_DEFLATE]) + wire.uvarint(dict_plain)
    body += wire.uvarint(head) + wire.uvarint(tail)
    body += wire.uvarint(len(frame)) + frame + bytes([out_codec]) + codec_tail + wire.uvarint(len(out))
    return bytes(body), out


def _mixed_deflate(content: bytes) -> bytes:
    """``content`` as one raw deflate stream no zlib call writes: three zlib streams spliced by hand.

    The first 40 % as dynamic blocks ended by Z_SYNC_FLUSH (an empty stored block), the next 40 % as
    fixed-Huffman blocks primed with what came before and ended by Z_FULL_FLUSH, the rest stored
    (level 0) and final. Each part ends on a byte boundary, so the parts concatenate into a valid
    stream whose matches may reach back into earlier parts.
    """
    a, b = len(content) * 2 // 5, len(content) * 4 // 5
    co = zlib.compressobj(6, zlib.DEFLATED, -15)
    one = co.compress(content[:a]) + co.flush(zlib.Z_SYNC_FLUSH)
    co = zlib.compressobj(6, zlib.DEFLATED, -15, 8, zlib.Z_FIXED, zdict=content[:a]) if a else \
        zlib.compressobj(6, zlib.DEFLATED, -15, 8, zlib.Z_FIXED)
    two = co.compress(content[a:b]) + co.flush(zlib.Z_FULL_FLUSH)
    co = zlib.compressobj(0, zlib.DEFLATED, -15)
    return one + two + co.compress(content[b:]) + co.flush()


def _transcript_payload(base: bytes, t_new: bytes, out_len: int, dict_plain: int | None = None,
                        dict_len: int | None = None) -> bytes:
    """A recipe with one MEMBER op, dict codec 10 (the whole base, a raw deflate stream) and output codec 10:
    the frame holds the transcript ``t_new`` patched against the base's transcript."""
    t_old = transcript.parse(base, wire.plain_cap(MAX))
    frame = patch.patch_frame(t_old, t_new)
    body = bytearray([wire.METHOD_RECIPE]) + wire.uvarint(0) + wire.uvarint(0) + wire.uvarint(0) + wire.uvarint(1)
    body += bytes([wire.OP_MEMBER]) + wire.uvarint(0) + wire.uvarint(len(base) if dict_len is None else dict_len)
    body += bytes([wire.CODEC_TRANSCRIPT]) + wire.uvarint(len(t_old) if dict_plain is None else dict_plain)
    body += wire.uvarint(len(frame)) + frame + bytes([wire.CODEC_TRANSCRIPT]) + wire.uvarint(out_len)
    return bytes(body)


def _t(plain: int, b: bytes, c: bytes, lits: bytes) -> bytes:
    """A transcript from its streams (PROTOCOL.md §18c, codec 10)."""
    return wire.uvarint(plain) + wire.uvarint(len(b)) + wire.uvarint(len(c)) + b + c + lits


def _good() -> list[dict[str, Any]]:
    text = _text(6000, 1)
    text2 = text[:3000] + b"The council approved the revised clinic schedule. " + text[3050:]
    other = _text(3000, 2)
    doc1 = _zip({"[Content_Types].xml": b"<Types/>", "word/document.xml": _text(20000, 3)})
    doc2 = _zip({"[Content_Types].xml": b"<Types/>",
                 "word/document.xml": _text(20000, 3).replace(b"Ward", b"Wards", 1)})
    sheet = _text(12000, 4)
    sheet2 = sheet[:9000] + b"<c><v>7.5</v></c>" + sheet[9000:]
    codec8, out8 = _member_payload(sheet, sheet2, wire.CODEC_DEFLATE, (6, 8, 0))
    codec9, out9 = _member_payload(sheet, sheet2, wire.CODEC_BLOCKS, (6, 8, 0, 4096, 1024))
    lo_like, out_lo = _member_payload(sheet, sheet2 * 12, wire.CODEC_BLOCKS, (6, 8, 0, 128 << 10, 32 << 10))
    mid = sheet * 3  # nine 4,096-byte blocks; the edit lands in the fifth
    mid2 = mid[:18000] + b"<c><v>7.5</v></c>" + mid[18017:]
    splice9, out_s9 = _splice_payload(mid, mid, mid2, wire.CODEC_BLOCKS, (6, 8, 0, 4096, 1024))
    big = sheet * 24  # a sheet member of three LibreOffice blocks (128 KiB); the edit lands in the second
    big2 = big[:200000] + b"<c><v>7.5</v></c>" + big[200017:]
    co = zlib.compressobj(6, zlib.DEFLATED, -15)
    deflated = co.compress(text) + co.flush()
    splice8, out_s8 = _splice_payload(deflated, text, text2, wire.CODEC_RAW, (), dict_plain=len(text))
    wzip1 = _zip({"[Content_Types].xml": b"<Types/>", "xl/worksheets/sheet1.xml": big})
    wzip2 = _zip({"[Content_Types].xml": b"<Types/>", "xl/worksheets/sheet1.xml": big2})
    report = _text(7000, 5)
    report2 = report[:3500] + b"The clinic opens on Saturdays from March. " + report[3520:]
    t_base, t_out = _mixed_deflate(report), _mixed_deflate(report2)
    codec10 = _transcript_payload(t_base, transcript.parse(t_out, wire.plain_cap(MAX)), len(t_out))
    xzip1 = _zip_raw({"[Content_Types].xml": b"<Types/>", "word/document.xml": report * 3})
    xzip2 = _zip_raw({"[Content_Types].xml": b"<Types/>", "word/document.xml": report2 * 3})
    cases = [
        ("patch", "Method 1: one zstd frame with the whole base as raw-content prefix.",
         other, text2, bytes([wire.METHOD_PATCH]) + patch.patch_frame(other, text2)),
        ("span", "Method 2 as a span recipe: COPY the shared ends, one MEMBER for the changed middle.",
         text, text2, delta.span.span_recipe(text, text2)),
        ("span_identical", "Method 2, identical files: one COPY of the whole base, no literals.",
         text, text, delta.span.span_recipe(text, text)),
        ("zip", "Method 2 as a zip recipe (the writer's): unchanged members copied, the changed member "
         "patched as content and recompressed with codec 8.", doc1, doc2, delta.zipdoc.zip_recipe(doc1, doc2)),
        ("member_codec8", "One MEMBER op, codec 8: zlib level 6, memLevel 8, strategy 0.", sheet, out8, codec8),
        ("member_codec9", "One MEMBER op, codec 9: 4,096-byte blocks, each primed with the 1,024 bytes "
         "before it.", sheet, out9, codec9),
        ("member_codec9_libreoffice", "One MEMBER op, codec 9 with LibreOffice's parameters: level 6, "
         "128 KiB blocks, 32 KiB window (three blocks).", sheet, out_lo, lo_like),
        ("splice_codec9", "One SPLICE op: the whole base is the dictionary's content D; the result keeps "
         "D's shared head and tail, the frame holds only the changed middle (against D's middle), "
         "and the content is deflated with codec 9 (4,096-byte blocks, 1,024-byte window).", mid, out_s9, splice9),
        ("splice_inflated_dict", "One SPLICE op whose dictionary is a raw deflate stream (dict codec 8): "
         "D is the inflated base, head and tail count D's bytes, output codec 0.", deflated, out_s8, splice8),
        ("zip_splice", "Method 2 as a zip recipe (the writer's) of a large sheet: the changed member goes as "
         "a SPLICE of its inflated content, recompressed with codec 8.", wzip1, wzip2,
         delta.zipdoc.zip_recipe(wzip1, wzip2)),
        ("member_codec10", "One MEMBER op, dict codec 10 and output codec 10 (the deflate transcript): the "
         "base is a raw deflate stream (dynamic, fixed and stored blocks, no single deflater call writes it), "
         "the frame holds the new stream's transcript patched against the base's transcript.",
         t_base, t_out, codec10),
        ("zip_codec10", "Method 2 as a zip recipe (the writer's) of a document whose changed member no zlib "
         "parameters reproduce: it goes as its deflate transcript against the base member's (codec 10).",
         xzip1, xzip2, delta.zipdoc.zip_recipe(xzip1, xzip2)),
    ]
    out = []
    for name, desc, base, result, payload in cases:
        assert payload is not None
        got = delta.apply_delta(base, payload, expected_sha256=hashlib.sha256(result).digest(), max_size=MAX)
        assert got == result, name
        vec = {"name": name, "description": desc, "base": base.hex(), "payload": payload.hex(), "max_size": MAX,
               "result_size": len(result), "result_sha256": hashlib.sha256(result).hexdigest()}
        if len(result) <= 16384:  # larger results are checked by their hash alone
            vec["result"] = result.hex()
        out.append(vec)
    return out


def _zip_raw(members: dict[str, bytes]) -> bytes:
    """``_zip``, with each member deflated by ``_mixed_deflate`` (the local headers and central directory
    as zipfile writes them for the same names, dates and sizes)."""
    plain = _zip({name: data for name, data in members.items()})
    out = bytearray()
    central = bytearray()
    with zipfile.ZipFile(io.BytesIO(plain)) as zf:
        infos = zf.infolist()
        for info in infos:
            data = members[info.filename]
            raw = _mixed_deflate(data)
            name = info.filename.encode()
            dostime = (info.date_time[3] << 11) | (info.date_time[4] << 5) | (info.date_time[5] // 2)
            dosdate = ((info.date_time[0] - 1980) << 9) | (info.date_time[1] << 5) | info.date_time[2]
            crc = zlib.crc32(data)
            offset = len(out)
            out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, dostime, dosdate, crc, len(raw), len(data),
                               len(name), 0) + name + raw
            central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, dostime, dosdate, crc, len(raw),
                                   len(data), len(name), 0, 0, 0, 0, 0, offset) + name
    cd = len(out)
    out += central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(infos), len(infos), len(central), cd, 0)
    return bytes(out)


def _expected(payload: bytes, base: bytes, want: bytes, max_size: int) -> tuple[str, str]:
    try:
        delta.apply_delta(base, payload, expected_sha256=want, max_size=max_size)
    except HbwError as e:
        return type(e).__name__, str(e.code)
    raise AssertionError(f"a bad delta vector was accepted: {payload[:16].hex()}")


def _splice_fields(payload: bytes) -> tuple[int, int]:
    """(head, tail) of the one SPLICE op of a raw-dictionary vector built by ``_splice_payload``."""
    r = wire.Reader(memoryview(payload))
    r.u8()
    for _ in range(4):
        r.uvarint()
    assert r.u8() == wire.OP_SPLICE
    r.uvarint(), r.uvarint()
    assert r.u8() == wire.CODEC_RAW
    return r.uvarint(), r.uvarint()


def _head_of(payload: bytes) -> int:
    return _splice_fields(payload)[0]


def _tail_of(payload: bytes) -> int:
    return _splice_fields(payload)[1]


def _bad(good: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {g["name"]: g for g in good}

    def of(name: str) -> tuple[bytes, bytes, bytes]:
        g = by[name]
        return bytes.fromhex(g["base"]), bytes.fromhex(g["payload"]), bytes.fromhex(g["result_sha256"])

    def codec9_with(block_size: int, window: int, codec: int = wire.CODEC_BLOCKS) -> bytes:
        base, payload, _ = of("member_codec9")
        old_tail = wire.uvarint(4096) + wire.uvarint(1024)
        i = payload.rindex(bytes([wire.CODEC_BLOCKS, 6, 8, 0]) + old_tail)
        return payload[:i] + bytes([codec, 6, 8, 0]) + wire.uvarint(block_size) + wire.uvarint(window) + payload[i + 4 + len(old_tail):]

    def sizeless_frame() -> bytes:
        """A valid zstd frame (with its checksum) whose header does not declare its content size."""
        cobj = zstandard.ZstdCompressor(write_checksum=True).compressobj()
        return cobj.compress(b"\x00" * 1000) + cobj.flush()

    def unchecked_frame(base: bytes, good: dict[str, Any]) -> bytes:
        """The good vector's content as a patch frame without a content checksum (pre-1.0 writers)."""
        params = zstandard.ZstdCompressionParameters.from_level(
            19, write_content_size=1, write_checksum=0, write_dict_id=0)
        zdict = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        return zstandard.ZstdCompressor(compression_params=params, dict_data=zdict).compress(bytes.fromhex(good["result"]))

    def splice_with(name: str, head: int | None = None, tail: int | None = None, cut_after_head: bool = False,
                    dict_plain: int | None = None, out_codec: int | None = None) -> bytes:
        """The SPLICE vector ``name`` with its head, tail, declared inflated size or output codec (its
        parameters dropped) replaced, or cut after its head."""
        base, payload, _ = of(name)
        r = wire.Reader(memoryview(payload))
        r.u8()
        for _ in range(4):  # lit_dict_off, lit_dict_len, lit_frame_len (0), op_count
            r.uvarint()
        assert r.u8() == wire.OP_SPLICE
        r.uvarint(), r.uvarint()
        codec = r.u8()
        at_plain = r.pos
        plain = r.uvarint() if codec == wire.CODEC_DEFLATE else None
        at_head = r.pos
        h, t = r.uvarint(), r.uvarint()
        rest = payload[r.pos:]
        if out_codec is not None:
            r.take(r.uvarint())  # the frame
            at_out, was = r.pos, r.u8()
            if was in (wire.CODEC_DEFLATE, wire.CODEC_BLOCKS):
                r.u8(), r.u8(), r.u8()
                if was == wire.CODEC_BLOCKS:
                    r.uvarint(), r.uvarint()
            rest = payload[len(payload) - len(rest):at_out] + bytes([out_codec]) + payload[r.pos:]
        if cut_after_head:
            return payload[:at_head] + wire.uvarint(h)
        fields = wire.uvarint(h if head is None else head) + wire.uvarint(t if tail is None else tail)
        if plain is None:
            return payload[:at_head] + fields + rest
        return payload[:at_plain] + wire.uvarint(plain if dict_plain is None else dict_plain) + fields + rest

    s9_base, s9_payload, s9_sha = of("splice_codec9")
    s9_len = len(s9_base)
    s8_plain = len(_text(6000, 1))
    span_base, span_payload, span_sha = of("span")
    patch_base, patch_payload, patch_sha = of("patch")
    c9_base, c9_payload, c9_sha = of("member_codec9")
    t_base, t_payload, t_sha = of("member_codec10")
    t_len = len(transcript.parse(t_base, wire.plain_cap(MAX)))
    t_out = delta.apply_delta(t_base, t_payload, expected_sha256=t_sha, max_size=MAX)
    # A tiny fixed-Huffman transcript: "abc", then a match of 9 bytes 3 back; 46 bits, 2 bits of padding.
    fb, fc, fl = bytes([3]) + wire.uvarint(1) + b"\x00", bytes([3, 6, 2, 0, 0]), b"abc"
    # A zlib dynamic block's transcript: the content has no byte 0xff, so 0xff has no code.
    co = zlib.compressobj(6, zlib.DEFLATED, -15)
    dyn = transcript.parse(co.compress(_text(2000, 6)) + co.flush(), 1 << 20)
    dr = wire.Reader(memoryview(dyn))
    _plain, d_lb, d_lc = dr.uvarint(), dr.uvarint(), dr.uvarint()
    d_b, d_lit = dr.pos, dr.pos + d_lb + d_lc  # where B and L start

    def hostile(t: bytes, out_len: int = 64) -> Callable[[], tuple[bytes, bytes, bytes, int]]:
        return lambda: (t_base, _transcript_payload(t_base, t, out_len), t_sha, MAX)

    def codec10_with(**kw: int) -> Callable[[], tuple[bytes, bytes, bytes, int]]:
        return lambda: (t_base, _transcript_payload(t_base, transcript.parse(t_out, wire.plain_cap(MAX)),
                                                    kw.pop("out_len", len(t_out)), **kw), t_sha, MAX)

    cases: list[tuple[str, str, Callable[[], tuple[bytes, bytes, bytes, int]]]] = [
        ("trailing_byte", "The span vector with one byte appended after the last op.",
         lambda: (span_base, span_payload + b"\x00", span_sha, MAX)),
        ("truncated", "The span vector without its last byte.",
         lambda: (span_base, span_payload[:-1], span_sha, MAX)),
        ("unknown_method", "The patch vector with method 3.",
         lambda: (patch_base, b"\x03" + patch_payload[1:], patch_sha, MAX)),
        ("non_minimal_varint", "A recipe whose first uvarint is 0x80 0x00 (zero, not minimal).",
         lambda: (span_base, b"\x02\x80\x00\x00\x00\x00", span_sha, MAX)),
        ("copy_outside_base", "A recipe that copies one byte past the end of the base.",
         lambda: (span_base, b"\x02\x00\x00\x00\x01\x01" + wire.uvarint(len(span_base)) + b"\x01", span_sha, MAX)),
        ("over_max_size", "The span vector read with max_size one byte smaller than its result.",
         lambda: (span_base, span_payload, span_sha, len(bytes.fromhex(by["span"]["result"])) - 1)),
        ("wrong_result_hash", "The patch vector checked against another file's hash.",
         lambda: (patch_base, patch_payload, hashlib.sha256(b"another file").digest(), MAX)),
        ("wrong_base", "The patch vector applied to another base: the frame decodes, to bytes that fail "
         "its content checksum (§18c: integrity.delta, before the SHA-256 is reached).",
         lambda: (span_base, patch_payload, patch_sha, MAX)),
        ("frame_without_size", "Method 1 whose zstd frame does not declare its content size.",
         lambda: (patch_base, b"\x01" + sizeless_frame(), patch_sha, MAX)),
        ("frame_without_checksum", "Method 1 whose patch frame carries no content checksum (§7 step 3): "
         "the same content and base, written with the checksum flag off.",
         lambda: (patch_base, b"\x01" + unchecked_frame(patch_base, by["patch"]), patch_sha, MAX)),
        ("frame_bad_checksum", "The patch vector with its frame's last byte (the content checksum) "
         "flipped: the frame decodes, the checksum does not match (§18c: integrity.delta).",
         lambda: (patch_base, patch_payload[:-1] + bytes([patch_payload[-1] ^ 0x01]), patch_sha, MAX)),
        ("unknown_out_codec", "The codec 9 vector with output codec 7.",
         lambda: (c9_base, codec9_with(4096, 1024, codec=7), c9_sha, MAX)),
        ("codec9_block_too_small", "The codec 9 vector with 4,095-byte blocks (under the 4,096 minimum).",
         lambda: (c9_base, codec9_with(4095, 1024), c9_sha, MAX)),
        ("codec9_window_too_large", "The codec 9 vector with a 32,769-byte window (zlib's is 32,768).",
         lambda: (c9_base, codec9_with(4096, 32769), c9_sha, MAX)),
        ("splice_head_tail_over_dict", "The splice_codec9 vector with head + tail one byte longer than its "
         "dictionary's content (head = len(D) - tail + 1).",
         lambda: (s9_base, splice_with("splice_codec9", head=s9_len - _tail_of(s9_payload) + 1), s9_sha, MAX)),
        ("splice_tail_over_dict", "The splice_codec9 vector with head 0 and tail len(D) + 1.",
         lambda: (s9_base, splice_with("splice_codec9", head=0, tail=s9_len + 1), s9_sha, MAX)),
        ("splice_head_huge", "The splice_codec9 vector with head 2^62: refused from the numbers, nothing decoded.",
         lambda: (s9_base, splice_with("splice_codec9", head=1 << 62), s9_sha, MAX)),
        ("splice_over_inflated_dict", "The splice_inflated_dict vector with head + tail past the declared "
         "inflated size (head = dict_plain_len + 1).",
         lambda: (of("splice_inflated_dict")[0], splice_with("splice_inflated_dict", head=s8_plain + 1, tail=0),
                  of("splice_inflated_dict")[2], MAX)),
        ("splice_oversize", "The splice_inflated_dict vector declaring a dictionary of stream_cap(max_size) bytes "
         "and keeping all of it as head: head + frame content passes stream_cap, refused before inflating.",
         lambda: (of("splice_inflated_dict")[0],
                  splice_with("splice_inflated_dict", head=wire.stream_cap(MAX), tail=0, dict_plain=wire.stream_cap(MAX)),
                  of("splice_inflated_dict")[2], MAX)),
        ("splice_dict_over_stream_cap", "The splice_inflated_dict vector declaring a dictionary of stream_cap(max_size) "
         "+ 1 bytes: refused as soon as the size is read.",
         lambda: (of("splice_inflated_dict")[0],
                  splice_with("splice_inflated_dict", head=0, tail=0, dict_plain=wire.stream_cap(MAX) + 1),
                  of("splice_inflated_dict")[2], MAX)),
        ("splice_streamed_total", "The splice_inflated_dict vector declaring a dictionary of stream_cap / 2 + 10 "
         "bytes and keeping stream_cap / 2 of it as head: each under stream_cap, dictionary + content over it.",
         lambda: (of("splice_inflated_dict")[0],
                  splice_with("splice_inflated_dict", head=wire.stream_cap(MAX) // 2, tail=0,
                              dict_plain=wire.stream_cap(MAX) // 2 + 10),
                  of("splice_inflated_dict")[2], MAX)),
        ("splice_held_middle", "The splice_inflated_dict vector declaring a dictionary of plain_cap(max_size) + 1 "
         "bytes and keeping none of it: the old middle, which a reader holds, passes plain_cap.",
         lambda: (of("splice_inflated_dict")[0],
                  splice_with("splice_inflated_dict", head=0, tail=0, dict_plain=wire.plain_cap(MAX) + 1),
                  of("splice_inflated_dict")[2], MAX)),
        ("splice_streamed_transcribed", "The splice_inflated_dict vector (a streamed SPLICE: dict codec 8) with "
         "output codec 10: a transcript is re-encoded whole, a streamed SPLICE is never held whole.",
         lambda: (of("splice_inflated_dict")[0], splice_with("splice_inflated_dict", out_codec=wire.CODEC_TRANSCRIPT),
                  of("splice_inflated_dict")[2], MAX)),
        ("splice_truncated", "The splice_codec9 vector cut right after its head field.",
         lambda: (s9_base, splice_with("splice_codec9", cut_after_head=True), s9_sha, MAX)),
        ("splice_trailing_byte", "The splice_codec9 vector with one byte appended after the last op.",
         lambda: (s9_base, s9_payload + b"\x00", s9_sha, MAX)),
        ("splice_wrong_middle", "The splice_codec9 vector with head one byte shorter: the frame's dictionary "
         "(D's middle) moves, so the frame decodes to other bytes or fails its checksum.",
         lambda: (s9_base, splice_with("splice_codec9", head=_head_of(s9_payload) - 1), s9_sha, MAX)),
        ("codec9_other_blocks", "The codec 9 vector rebuilt with 8,192-byte blocks: a different "
         "deflate stream, so the member length differs (another deflater).",
         lambda: (c9_base, codec9_with(8192, 1024), c9_sha, MAX)),
        ("codec10_distance_beyond_output", "Codec 10: a transcript whose first match reaches 4 bytes back after "
         "3 bytes of output.", hostile(_t(12, fb, bytes([3, 6, 3, 0, 0]), fl))),
        ("codec10_past_declared_size", "Codec 10: a transcript whose tokens make 12 bytes where it declares 11.",
         hostile(_t(11, fb, fc, fl))),
        ("codec10_trailing_literal", "Codec 10: a transcript with one literal byte no token uses.",
         hostile(_t(12, fb, fc, fl + b"x"))),
        ("codec10_bad_padding", "Codec 10: a final padding value of 4 where 2 bits remain.",
         hostile(_t(12, fb[:-1] + b"\x04", fc, fl))),
        ("codec10_truncated_blocks", "Codec 10: the block stream ends before the final padding byte.",
         hostile(_t(12, fb[:-1], fc, fl))),
        ("codec10_stream_lengths", "Codec 10: the block stream's length is declared 100 bytes longer than the "
         "transcript.", hostile(wire.uvarint(12) + wire.uvarint(len(fb) + 100) + wire.uvarint(len(fc)) + fb + fc + fl)),
        ("codec10_header_counts", "Codec 10: a dynamic block header with HLIT 30 (at most 29).",
         hostile(_t(0, bytes([5, 30, 0, 0]), b"", b""))),
        ("codec10_literal_without_code", "Codec 10: a zlib dynamic block's transcript with its first literal "
         "replaced by 0xff, which its code does not cover.",
         hostile(dyn[:d_lit] + b"\xff" + dyn[d_lit + 1:], 4096)),
        ("codec10_oversubscribed", "Codec 10: the same transcript with its first three code length code "
         "lengths set to 1 (three codes of one bit).",
         hostile(dyn[:d_b + 4] + b"\x01\x01\x01" + dyn[d_b + 7:], 4096)),
        ("codec10_wrong_length", "The member_codec10 vector with out_len one byte short: the transcript is "
         "well-formed and encodes one byte more.", codec10_with(out_len=len(t_out) - 1)),
        ("codec10_out_over_cap", "The member_codec10 vector with out_len 4 MiB + 1, over codec 10's cap.",
         codec10_with(out_len=transcript.MAX_DEFLATED + 1)),
        ("codec10_transcript_too_long", "The member_codec10 vector with out_len 16: its transcript is longer than "
         "16 x 16 + 64 bytes, more than any stream of 16 bytes has.", codec10_with(out_len=16)),
        ("codec10_dict_plain_wrong", "The member_codec10 vector declaring its dictionary's transcript one "
         "byte longer.", codec10_with(dict_plain=t_len + 1)),
        ("codec10_dict_not_deflate", "The member_codec10 vector whose dictionary range stops one byte short "
         "of the base's deflate stream.", codec10_with(dict_len=len(t_base) - 1)),
    ]
    out = []
    for name, desc, make in cases:
        base, payload, want, max_size = make()
        try:
            cls, code = _expected(payload, base, want, max_size)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None
        base_of = next(g["name"] for g in good if bytes.fromhex(g["base"]) == base)
        out.append({"name": name, "description": desc, "base_of": base_of, "payload": payload.hex(),
                    "max_size": max_size, "expected_sha256": want.hex(), "expected_error": cls,
                    "expected_code": code})
    return out


#: One letter per outcome in ``flips``: "a" rebuilt the right bytes anyway, else the class and code.
FLIP_LETTERS = {
    "a": "accept", "z": "ProtocolError protocol.zstd", "d": "ProtocolError protocol.delta",
    "t": "ProtocolError protocol.truncated", "r": "ProtocolError protocol.trailing",
    "l": "LimitError protocol.limit", "b": "LimitError protocol.bomb", "i": "IntegrityError integrity.delta",
}


def _flip_outcome(base: bytes, payload: bytes, want: bytes, max_size: int) -> str:
    try:
        delta.apply_delta(base, payload, expected_sha256=want, max_size=max_size)
    except HbwError as e:
        return f"{type(e).__name__} {e.code}"
    return "accept"


def _flips(good: list[dict[str, Any]]) -> dict[str, str]:
    """Every one-bit flip of every good payload, read against its own base and hash: one letter per bit.

    Why: a patch frame is decoded with a raw-content dictionary, which a second decoder may handle
    differently on damaged input; the content checksum (§7 step 11) and the result's SHA-256 must
    make every reader reach the same outcome, and this corpus checks that they do.
    """
    letter = {v: k for k, v in FLIP_LETTERS.items()}
    out = {}
    for g in good:
        base, payload = bytes.fromhex(g["base"]), bytes.fromhex(g["payload"])
        want = bytes.fromhex(g["result_sha256"])
        marks = []
        for bit in range(len(payload) * 8):
            bad = bytearray(payload)
            bad[bit >> 3] ^= 1 << (bit & 7)
            marks.append(letter[_flip_outcome(base, bytes(bad), want, g["max_size"])])
        out[g["name"]] = "".join(marks)
    return out


def build() -> dict[str, Any]:
    good = _good()
    return {
        "meta": {
            "zstandard_version": zstandard.__version__,
            "zstd_version": ".".join(map(str, zstandard.ZSTD_VERSION)),
            "zlib_version": zlib.ZLIB_VERSION,
            "note": "payload bytes are reproducible only with this zstd (and zlib, for deflated members); "
                    "decoding them is not version-dependent. Reader: rebuild the result from `base` and "
                    "`payload` under `max_size`, check `result_sha256`; a bad vector (base: that of the "
                    "good vector named in `base_of`) must fail with "
                    "`expected_error` / `expected_code` (PROTOCOL.md §18c).",
        },
        "valid": good,
        "invalid": _bad(good),
        "flip": "bit i flips payload[i >> 3] ^= 1 << (i & 7); the flipped payload is read against the good "
                "vector's base, result_sha256 and max_size; flips[name] has one letter per bit i, its outcome",
        "flip_letters": FLIP_LETTERS,
        "flips": _flips(good),
    }
