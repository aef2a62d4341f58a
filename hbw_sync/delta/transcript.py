"""The deflate transcript (codec 10): any raw deflate stream as bytes a small edit changes little.

Why: Word, Excel, 7-Zip, zopfli, libdeflate... deflate in ways no zlib parameters reproduce, so
before this codec a changed member of their files was sent as a patch of its *compressed* bytes,
which after a one-paragraph edit differ from the edit to the end of the member (tens of KB). A
deflate stream is fully determined by its blocks' types and headers, its tokens (literals and
length/distance pairs) and its padding bits; ``parse`` writes those out as a canonical transcript
in which a literal is its byte and a match three bytes, and ``encode`` writes the very same bits
back. The delta then patches the new member's transcript against the base member's transcript
(which the reader computes from its own base bytes): the preflate idea without its predictor,
since the transcript carries the deflater's every choice.

Layout (normative: PROTOCOL.md §18c, "Codec 10")::

    uvarint plain_len   the inflated size (every token is checked against it)
    uvarint len_b       block stream B
    uvarint len_c       command stream C; the literal stream L is the rest
    B ‖ C ‖ L

B per block: u8 kind (BFINAL | BTYPE << 1); stored: u8 pad bits, uvarint LEN (the bytes are the
next LEN of L); fixed: uvarint matches; dynamic: u8 HLIT, u8 HDIST, u8 HCLEN, HCLEN+4 u8 code
length code lengths, the code-length symbols as sent (u8 symbol, and u8 extra for 16/17/18) until
all HLIT+HDIST+258 lengths are set, uvarint matches. After the final block: u8 pad bits.
C per Huffman block: uvarint run, then per match (u8 length-3, u16le distance-1, uvarint run):
``run`` literals (the next bytes of L) before the first match, between matches and after the last.

Sans-IO and bounded: ``parse`` reads only a member the caller holds, up to ``MAX_DEFLATED`` bytes
and ``cap`` inflated bytes; ``encode`` reads a transcript that arrived in a delta (at most
``PER_BYTE`` * out_len + ``SLACK`` bytes, checked by rebuild.py before decoding), so every field is
checked (codes complete as zlib requires, no symbol without a code, no distance beyond the output,
no token past ``plain_len``, no trailing byte) and it keeps at most ``max_out`` output bytes.
"""

from __future__ import annotations

from typing import Callable

from ..errors import IntegrityError, LimitError, ProtocolError
from .wire import Buf, Reader, uvarint

#: The largest deflated member that is transcribed (either side); larger ones keep today's paths.
MAX_DEFLATED = 4 << 20
#: A transcript of a stream of n bytes is at most PER_BYTE * n + SLACK bytes: a match is 4 bytes of C
#: and at least 2 bits of output, so no well-formed transcript is longer. Checked from the numbers
#: (rebuild.py), it bounds the reader's work by out_len, not by what the frame declares.
PER_BYTE = 16
SLACK = 64
#: Decoding tables may cost this much work per compressed byte, plus a floor (``parse`` only).
TABLE_WORK = 64
TABLE_FLOOR = 1 << 22

CLEN_ORDER = (16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15)
LBASE = (3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115,
         131, 163, 195, 227, 258)
LEXT = (0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0)
DBASE = (1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
         2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577)
DEXT = (0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13)
FIXED_LENGTHS = (8,) * 144 + (9,) * 112 + (7,) * 24 + (8,) * 8
FIXED_DIST = (5,) * 32  # 30 and 31 have codes but are never valid symbols

# length 3..258 -> length symbol - 257 (285 for 258, never 284 + 31); distance - 1 -> distance symbol
_LSYM = [0] * 259
for _i, _b in enumerate(LBASE[:-1]):
    for _n in range(_b, _b + (1 << LEXT[_i])):
        if _n <= 257:
            _LSYM[_n] = _i
_LSYM[258] = 28
_DSYM = bytearray(32768)
for _i, _b in enumerate(DBASE):
    for _n in range(_b, min(32769, _b + (1 << DEXT[_i]))):
        _DSYM[_n - 1] = _i


def _bad(why: str) -> ProtocolError:
    return ProtocolError(f"deflate transcript: {why}", code="protocol.delta")


def _codes(lengths: list[int] | tuple[int, ...], kind: str) -> list[int]:
    """Canonical codes, bit-reversed as deflate sends them; refuses what zlib's inflate refuses.

    ``kind`` is "codes" (the code-length code: must be complete), "lens" or "dists" (complete,
    or a single code of length 1; the literal/length code must have end-of-block; an all-zero
    distance code is allowed, and then no match may be coded).
    """
    count = [0] * 16
    for n in lengths:
        count[n] += 1
    count[0] = 0
    left = 1
    for n in range(1, 16):
        left = (left << 1) - count[n]
        if left < 0:
            raise _bad(f"over-subscribed {kind} code")
    used = sum(count)
    biggest = max((n for n in range(1, 16) if count[n]), default=0)
    if left > 0 and used and (kind == "codes" or biggest != 1):
        raise _bad(f"incomplete {kind} code")
    if kind == "codes" and not used:
        raise _bad("empty code length code")
    if kind == "lens" and (len(lengths) <= 256 or not lengths[256]):
        raise _bad("no end-of-block code")
    nxt = [0] * 16
    code = 0
    for n in range(1, 16):
        code = (code + count[n - 1]) << 1
        nxt[n] = code
    out = [0] * len(lengths)
    for sym, n in enumerate(lengths):
        if n:
            c = nxt[n]
            nxt[n] += 1
            r = 0
            for _bit in range(n):
                r = (r << 1) | (c & 1)
                c >>= 1
            out[sym] = r
    return out


def _table(lengths: list[int] | tuple[int, ...], codes: list[int]) -> tuple[list[int], int]:
    """A decoding table indexed by the next ``bits`` input bits: entry = symbol << 4 | length, -1 if none."""
    bits = max(max(lengths), 1)
    size = 1 << bits
    table = [-1] * size
    for sym, n in enumerate(lengths):
        if n:
            step = 1 << n
            table[codes[sym] : size : step] = [(sym << 4) | n] * (size >> n)
    return table, bits


class _Bits:
    """Bit reader for ``parse`` (LSB first) over a padded copy; overreading is checked at block ends."""

    __slots__ = ("data", "pos", "buf", "cnt", "limit")

    def __init__(self, data: Buf) -> None:
        self.data = bytes(data) + bytes(16)
        self.limit = len(data) * 8
        self.pos = 0
        self.buf = 0
        self.cnt = 0

    def fill(self) -> None:
        self.buf |= int.from_bytes(self.data[self.pos : self.pos + 7], "little") << self.cnt
        self.pos += 7
        self.cnt += 56
        if self.pos > len(self.data):
            raise _bad("the stream ends inside a block")

    def get(self, n: int) -> int:
        if self.cnt < n:
            self.fill()
        v = self.buf & ((1 << n) - 1)
        self.buf >>= n
        self.cnt -= n
        return v

    def sym(self, table: list[int], bits: int) -> int:
        if self.cnt < bits:
            self.fill()
        e = table[self.buf & ((1 << bits) - 1)]
        if e < 0:
            raise _bad("invalid Huffman code in the stream")
        n = e & 15
        self.buf >>= n
        self.cnt -= n
        return e >> 4

    def used(self) -> int:
        return self.pos * 8 - self.cnt

    def check(self) -> None:
        if self.used() > self.limit:
            raise _bad("the stream ends inside a block")


def _read_header(bits: _Bits, b: bytearray) -> tuple[list[int], list[int]]:
    """A dynamic block's header, appended to ``b`` as the transcript writes it; its two code lengths."""
    hlit, hdist, hclen = bits.get(5), bits.get(5), bits.get(4)
    if hlit > 29 or hdist > 29:
        raise _bad("too many length or distance symbols")
    b += bytes((hlit, hdist, hclen))
    clen = [0] * 19
    for i in range(hclen + 4):
        clen[CLEN_ORDER[i]] = bits.get(3)
        b.append(clen[CLEN_ORDER[i]])
    table, tbits = _table(clen, _codes(clen, "codes"))
    lengths = _rle_lengths(hlit + hdist + 258, lambda: bits.sym(table, tbits), bits.get, b)
    return lengths[: hlit + 257], lengths[hlit + 257 :]


def _rle_lengths(total: int, next_sym: Callable[[], int], extra: Callable[[int], int],
                 b: bytearray | None) -> list[int]:
    """The code lengths a dynamic header's symbols set (shared by parse and encode)."""
    lengths: list[int] = []
    while len(lengths) < total:
        s = next_sym()
        if s > 18:
            raise _bad("code length symbol out of range")
        if b is not None:
            b.append(s)
        if s < 16:
            lengths.append(s)
            continue
        nbits, base = ((2, 3), (3, 3), (7, 11))[s - 16]
        x = extra(nbits)
        if x >> nbits:
            raise _bad("code length repeat out of range")
        if b is not None:
            b.append(x)
        if s == 16 and not lengths:
            raise _bad("repeat with no previous length")
        value = lengths[-1] if s == 16 else 0
        if len(lengths) + base + x > total:
            raise _bad("code lengths overflow the header")
        lengths += [value] * (base + x)
    return lengths


def parse(data: Buf, cap: int) -> bytes:
    """The transcript of the raw deflate stream ``data``, which must end exactly at its end.

    Raises ``ProtocolError`` (``protocol.delta``: not a deflate stream, trailing bytes, a length 258
    sent as code 284, which the transcript cannot say) or ``LimitError`` (``protocol.limit``: over
    ``MAX_DEFLATED`` compressed, ``cap`` inflated, or the table budget).
    """
    if len(data) > MAX_DEFLATED:
        raise LimitError("deflate stream too large to transcribe", code="protocol.limit")
    bits = _Bits(data)
    work = TABLE_WORK * len(data) + TABLE_FLOOR
    b = bytearray()
    c = bytearray()
    lit = bytearray()
    plain = 0
    fixed: tuple[list[int], int, list[int], int] | None = None
    while True:
        final, btype = bits.get(1), bits.get(2)
        b.append(final | btype << 1)
        if btype == 0:
            pad = (-(bits.used())) & 7
            b.append(bits.get(pad))
            size, nsize = bits.get(16), bits.get(16)
            if size != nsize ^ 0xFFFF:
                raise _bad("stored block length does not match its complement")
            b += uvarint(size)
            start = bits.used() // 8
            if start + size > len(data):
                raise _bad("the stream ends inside a stored block")
            lit += memoryview(data)[start : start + size]
            plain += size
            # drop what the reader buffered and restart byte-aligned after the stored bytes
            bits.pos, bits.buf, bits.cnt = start + size, 0, 0
        elif btype == 3:
            raise _bad("invalid block type")
        else:
            if btype == 1:
                if fixed is None:
                    lt, lb = _table(FIXED_LENGTHS, _codes(FIXED_LENGTHS, "lens"))
                    dt, db = _table(FIXED_DIST, _codes(FIXED_DIST, "dists"))
                    fixed = (lt, lb, dt, db)
                lt, lb, dt, db = fixed
            else:
                llen, dlen = _read_header(bits, b)
                lt, lb = _table(llen, _codes(llen, "lens"))
                if any(dlen):
                    dt, db = _table(dlen, _codes(dlen, "dists"))
                else:
                    dt, db = [-1], 0
                work -= (1 << lb) + (1 << db)
                if work < 0:
                    raise LimitError("deflate stream has too many blocks to transcribe", code="protocol.limit")
            plain, matches = _tokens(bits, lt, lb, dt, db, c, lit, plain, cap)
            b += uvarint(matches)
        bits.check()
        if plain > cap:
            raise LimitError("deflate stream inflates past the cap", code="protocol.limit")
        if final:
            break
    pad = (-(bits.used())) & 7
    b.append(bits.get(pad))
    if bits.used() != bits.limit:
        raise _bad("bytes after the final block")
    head = uvarint(plain) + uvarint(len(b)) + uvarint(len(c))
    return b"".join((head, b, c, lit))


def _tokens(bits: _Bits, lt: list[int], lb: int, dt: list[int], db: int, c: bytearray, lit: bytearray,
            plain: int, cap: int) -> tuple[int, int]:
    """One Huffman block's tokens into C and L; the hot loop, with the bit reader inlined."""
    data = bits.data
    pos, buf, cnt = bits.pos, bits.buf, bits.cnt
    lmask, dmask = (1 << lb) - 1, (1 << db) - 1
    run = matches = 0
    end = len(data)
    while True:
        if cnt < 48:
            buf |= int.from_bytes(data[pos : pos + 7], "little") << cnt
            pos += 7
            cnt += 56
            if pos > end:
                raise _bad("the stream ends inside a block")
        e = lt[buf & lmask]
        if e < 0:
            raise _bad("invalid literal/length code in the stream")
        n = e & 15
        buf >>= n
        cnt -= n
        s = e >> 4
        if s < 256:
            lit.append(s)
            run += 1
            continue
        if s == 256:
            break
        s -= 257
        if s > 28:
            raise _bad("invalid length symbol")
        x = LEXT[s]
        length = LBASE[s] + (buf & ((1 << x) - 1))
        buf >>= x
        cnt -= x
        if s == 27 and length == 258:
            raise _bad("length 258 sent as code 284")
        e = dt[buf & dmask]
        if e < 0:
            raise _bad("invalid distance code in the stream")
        n = e & 15
        buf >>= n
        cnt -= n
        s = e >> 4
        if s > 29:
            raise _bad("invalid distance symbol")
        x = DEXT[s]
        dist = DBASE[s] + (buf & ((1 << x) - 1))
        buf >>= x
        cnt -= x
        plain += run
        if dist > plain:
            raise _bad("distance too far back")
        plain += length
        if plain > cap:
            raise LimitError("deflate stream inflates past the cap", code="protocol.limit")
        if run < 128:
            c.append(run)
        else:
            c += uvarint(run)
        c += bytes((length - 3, (dist - 1) & 255, (dist - 1) >> 8))
        run = 0
        matches += 1
    plain += run
    c += uvarint(run)
    bits.pos, bits.buf, bits.cnt = pos, buf, cnt
    return plain, matches


class _Out:
    """Bit writer for ``encode``, LSB first. Past ``limit`` bytes it keeps counting but writes nothing.

    Why count on: so that a malformed transcript fails with the same code whether or not its output
    has passed the member's length before the fault (``ProtocolError`` first, ``integrity.delta`` only
    for a well-formed transcript of the wrong length), in every reader.
    """

    __slots__ = ("out", "acc", "n", "limit", "dropped")

    def __init__(self, limit: int) -> None:
        self.out = bytearray()
        self.acc = 0
        self.n = 0
        self.limit = limit
        self.dropped = 0  # bytes counted but not kept, past the limit

    def put(self, value: int, nbits: int) -> None:
        self.acc |= value << self.n
        self.n += nbits
        if self.n >= 64:
            self.flush()

    def flush(self) -> None:
        whole = self.n >> 3
        if whole:
            self.out += (self.acc & ((1 << (whole * 8)) - 1)).to_bytes(whole, "little")
            self.acc >>= whole * 8
            self.n -= whole * 8
        if len(self.out) > self.limit:
            self.dropped += len(self.out)
            self.out.clear()
            self.limit = -1

    def write(self, data: Buf) -> None:
        """Whole bytes, at a byte boundary (a stored block's)."""
        self.flush()
        if self.limit < 0:
            self.dropped += len(data)
        else:
            self.out += data
            self.flush()

    def bytes_used(self) -> int:
        return (self.dropped + len(self.out)) * 8 + self.n


def encode(transcript: Buf, max_out: int) -> bytes:
    """The raw deflate stream a transcript describes (at most ``max_out`` bytes).

    Raises ``ProtocolError`` (``protocol.delta`` for a malformed transcript, ``protocol.trailing`` for
    bytes left in a stream, ``protocol.truncated`` for a stream that ends inside a field) or, for a
    well-formed transcript only, ``IntegrityError`` (``integrity.delta``: the output passes
    ``max_out``). Nothing grows past ``max_out`` output bytes and the transcript itself.
    """
    view = memoryview(transcript).cast("B")
    head = Reader(view)
    plain_len, len_b, len_c = head.uvarint(), head.uvarint(), head.uvarint()
    if len_b > len(view) - head.pos or len_c > len(view) - head.pos - len_b:
        raise _bad("stream lengths exceed the transcript")
    rb = Reader(view[head.pos : head.pos + len_b])
    rc = Reader(view[head.pos + len_b : head.pos + len_b + len_c])
    lits = view[head.pos + len_b + len_c :]
    lp = 0  # next literal
    plain = 0
    out = _Out(max_out)
    fixed: tuple[list[int], list[int], list[int], list[int]] | None = None
    while True:
        kind = rb.u8()
        final, btype = kind & 1, kind >> 1
        if btype > 2:
            raise _bad("invalid block kind")
        out.put(kind, 3)
        if btype == 0:
            pad = (-out.bytes_used()) & 7
            v = rb.u8()
            if v >> pad:
                raise _bad("stored block padding out of range")
            out.put(v, pad)
            size = rb.uvarint()
            if size > 0xFFFF:
                raise _bad("stored block too long")
            if size > len(lits) - lp:
                raise _bad("stored block runs past the literals")
            if plain + size > plain_len:
                raise _bad("tokens pass the declared size")
            out.put(size | (size ^ 0xFFFF) << 16, 32)
            out.write(lits[lp : lp + size])
            lp += size
            plain += size
        else:
            if btype == 1:
                if fixed is None:
                    fixed = (list(FIXED_LENGTHS), _codes(FIXED_LENGTHS, "lens"),
                             list(FIXED_DIST), _codes(FIXED_DIST, "dists"))
                llen, lcode, dlen, dcode = fixed
            else:
                llen, lcode, dlen, dcode = _write_header(rb, out)
            lp, plain = _put_tokens(rb, rc, lits, lp, plain, plain_len, out, llen, lcode, dlen, dcode)
        if final:
            break
    pad = (-out.bytes_used()) & 7
    v = rb.u8()
    if v >> pad:
        raise _bad("final padding out of range")
    out.put(v, pad)
    out.flush()
    if not rb.at_end() or not rc.at_end() or lp != len(lits):
        raise ProtocolError("deflate transcript: bytes left after the final block", code="protocol.trailing")
    if plain != plain_len:
        raise _bad("tokens do not add up to the declared size")
    if out.limit < 0:
        raise IntegrityError("deflate transcript encodes past the member's length", code="integrity.delta",
                             hint="fetch the whole version")
    return bytes(out.out)


def _write_header(rb: Reader, out: _Out) -> tuple[list[int], list[int], list[int], list[int]]:
    """A dynamic block's header from B, written as bits; the block's two codes."""
    hlit, hdist, hclen = rb.u8(), rb.u8(), rb.u8()
    if hlit > 29 or hdist > 29 or hclen > 15:
        raise _bad("dynamic header counts out of range")
    out.put(hlit | hdist << 5 | hclen << 10, 14)
    clen = [0] * 19
    for i in range(hclen + 4):
        v = rb.u8()
        if v > 7:
            raise _bad("code length code length out of range")
        clen[CLEN_ORDER[i]] = v
        out.put(v, 3)
    ccode = _codes(clen, "codes")

    def next_sym() -> int:
        s = rb.u8()
        if s > 18:
            raise _bad("code length symbol out of range")
        if not clen[s]:
            raise _bad("code length symbol without a code")
        out.put(ccode[s], clen[s])
        return s

    def extra(nbits: int) -> int:
        x = rb.u8()
        if not x >> nbits:
            out.put(x, nbits)
        return x

    lengths = _rle_lengths(hlit + hdist + 258, next_sym, extra, None)
    llen, dlen = lengths[: hlit + 257], lengths[hlit + 257 :]
    return llen, _codes(llen, "lens"), dlen, (_codes(dlen, "dists") if any(dlen) else [0] * len(dlen))


def _put_tokens(rb: Reader, rc: Reader, lits: memoryview, lp: int, plain: int, plain_len: int, out: _Out,
                llen: list[int], lcode: list[int], dlen: list[int], dcode: list[int]) -> tuple[int, int]:
    """One Huffman block's tokens from C and L, written as bits; the hot loop.

    The bit accumulator and C's cursor are local here (a method call per literal halved the speed);
    a field that is not a one-byte run or a whole match goes through ``Reader``, which raises the
    codes the spec names.
    """
    matches = rb.uvarint()
    if matches > len(rc.data) - rc.pos:  # every match takes at least four bytes of C
        raise _bad("block declares more matches than C holds")
    nl, nd = len(llen), len(dlen)
    cdata, cend = rc.data, len(rc.data)
    acc, n = out.acc, out.n
    m = 0
    while True:
        cp = rc.pos
        if cp < cend and cdata[cp] < 0x80:
            run = cdata[cp]
            rc.pos = cp + 1
        else:
            run = rc.uvarint()
        if run > len(lits) - lp:
            raise _bad("literal run past the literals")
        plain += run
        if plain > plain_len:
            raise _bad("tokens pass the declared size")
        for byte in lits[lp : lp + run]:
            k = llen[byte]
            if not k:
                raise _bad("literal without a code")
            acc |= lcode[byte] << n
            n += k
            if n >= 64:
                out.acc, out.n = acc, n
                out.flush()
                acc, n = out.acc, out.n
        lp += run
        if m == matches:
            break
        m += 1
        cp = rc.pos
        if cp + 3 <= cend:
            length, dist = cdata[cp] + 3, (cdata[cp + 1] | cdata[cp + 2] << 8) + 1
            rc.pos = cp + 3
        else:
            length = rc.u8() + 3
            d = rc.u8()
            dist = (d | rc.u8() << 8) + 1
        if dist > 32768:
            raise _bad("distance beyond the window")
        if dist > plain:
            raise _bad("distance beyond the output")
        plain += length
        if plain > plain_len:
            raise _bad("tokens pass the declared size")
        s = _LSYM[length]
        sym = 257 + s
        if sym >= nl or not llen[sym]:
            raise _bad("length without a code")
        ds = _DSYM[dist - 1]
        if ds >= nd or not dlen[ds]:
            raise _bad("distance without a code")
        acc |= (lcode[sym] | (length - LBASE[s]) << llen[sym]) << n
        n += llen[sym] + LEXT[s]
        acc |= (dcode[ds] | (dist - DBASE[ds]) << dlen[ds]) << n
        n += dlen[ds] + DEXT[ds]
        if n >= 64:
            out.acc, out.n = acc, n
            out.flush()
            acc, n = out.acc, out.n
    out.acc, out.n = acc, n
    if not llen[256]:  # cannot happen: _codes refuses a code without end-of-block
        raise _bad("no end-of-block code")
    out.put(lcode[256], llen[256])
    return lp, plain


def transcribe(data: Buf, cap: int) -> bytes | None:
    """The transcript of a member, only if it encodes back to exactly ``data`` (the writer's check); else None."""
    try:
        t = parse(data, cap)
        return t if encode(t, len(data)) == data else None
    except (ProtocolError, IntegrityError):
        return None
