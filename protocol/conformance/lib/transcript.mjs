// Codec 10, the deflate transcript (PROTOCOL.md §18c): parse a raw deflate stream into its
// transcript (the base member, a MEMBER/SPLICE dictionary), and encode a transcript back into the
// exact deflate bits (the output codec). Written from the spec: blocks, headers, tokens and
// padding bits as §18c lays them out, codes checked as zlib's inflate checks them. Every error
// is a WireError with the spec's code; encode checks every field before it writes, keeps at most
// maxOut bytes and fails a well-formed transcript of another length with integrity.delta.
import { fail, PE, Reader } from "./base.mjs";

export const MAX_DEFLATED = 4 * 2 ** 20;
export const PER_BYTE = 16, SLACK = 64; // no well-formed transcript of an n-byte stream is over 16 n + 64
const TABLE_WORK = 64, TABLE_FLOOR = 2 ** 22;
const CLEN_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];
const LBASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LEXT = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DBASE = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073,
  4097, 6145, 8193, 12289, 16385, 24577];
const DEXT = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
const FIXED_LENGTHS = [...Array(144).fill(8), ...Array(112).fill(9), ...Array(24).fill(7), ...Array(8).fill(8)];
const FIXED_DIST = Array(32).fill(5); // 30 and 31 have codes but are never valid symbols

const LSYM = new Uint8Array(259);
for (let i = 0; i < 28; i++) for (let n = LBASE[i]; n < LBASE[i] + (1 << LEXT[i]) && n <= 257; n++) LSYM[n] = i;
LSYM[258] = 28;
const DSYM = new Uint8Array(32768);
for (let i = 0; i < 30; i++) for (let n = DBASE[i]; n < Math.min(32769, DBASE[i] + (1 << DEXT[i])); n++) DSYM[n - 1] = i;

const bad = (why) => PE("protocol.delta", `deflate transcript: ${why}`);

function uvarint(n) {
  const out = [];
  for (;;) {
    const b = n % 128;
    n = Math.floor(n / 128);
    if (n) out.push(b | 0x80);
    else { out.push(b); return out; }
  }
}

/** Canonical codes, bit-reversed; kind "codes" must be complete, "lens"/"dists" complete or one
 * code of length 1; "lens" must code end-of-block; an all-zero distance code is allowed. */
function codes(lengths, kind) {
  const count = Array(16).fill(0);
  for (const n of lengths) count[n]++;
  count[0] = 0;
  let left = 1;
  for (let n = 1; n < 16; n++) {
    left = left * 2 - count[n];
    if (left < 0) bad(`over-subscribed ${kind} code`);
  }
  let used = 0, biggest = 0;
  for (let n = 1; n < 16; n++) { used += count[n]; if (count[n]) biggest = n; }
  if (left > 0 && used && (kind === "codes" || biggest !== 1)) bad(`incomplete ${kind} code`);
  if (kind === "codes" && !used) bad("empty code length code");
  if (kind === "lens" && (lengths.length <= 256 || !lengths[256])) bad("no end-of-block code");
  const next = Array(16).fill(0);
  let code = 0;
  for (let n = 1; n < 16; n++) { code = (code + count[n - 1]) * 2; next[n] = code; }
  const out = Array(lengths.length).fill(0);
  lengths.forEach((n, sym) => {
    if (!n) return;
    let c = next[n]++, r = 0;
    for (let i = 0; i < n; i++) { r = r * 2 + (c & 1); c >>= 1; }
    out[sym] = r;
  });
  return out;
}

function table(lengths, cds) {
  const bits = Math.max(1, ...lengths), size = 1 << bits;
  const t = new Int32Array(size).fill(-1);
  lengths.forEach((n, sym) => { if (n) for (let j = cds[sym]; j < size; j += 1 << n) t[j] = (sym << 4) | n; });
  return { t, bits };
}

/** The code lengths a dynamic header's symbols set; `sym()` and `extra(n)` read (or write) them. */
function rleLengths(total, sym, extra) {
  const lengths = [];
  while (lengths.length < total) {
    const s = sym();
    if (s > 18) bad("code length symbol out of range");
    if (s < 16) { lengths.push(s); continue; }
    const [nbits, base] = [[2, 3], [3, 3], [7, 11]][s - 16];
    const x = extra(nbits);
    if (x >> nbits) bad("code length repeat out of range");
    if (s === 16 && !lengths.length) bad("repeat with no previous length");
    const value = s === 16 ? lengths[lengths.length - 1] : 0;
    if (lengths.length + base + x > total) bad("code lengths overflow the header");
    for (let i = 0; i < base + x; i++) lengths.push(value);
  }
  return lengths;
}

class Bits {
  constructor(data) { this.data = data; this.pos = 0; this.buf = 0; this.cnt = 0; this.limit = data.length * 8; }
  need(n) { // at most 24 bits at a time; past the end reads zeros, checked by used()
    while (this.cnt < n) {
      if (this.pos > this.data.length + 16) bad("the stream ends inside a block");
      const b = this.pos < this.data.length ? this.data[this.pos] : 0;
      this.pos++;
      this.buf = (this.buf | (b << this.cnt)) >>> 0;
      this.cnt += 8;
    }
  }
  get(n) {
    if (!n) return 0;
    this.need(n);
    const v = this.buf & ((1 << n) - 1);
    this.buf >>>= n; this.cnt -= n;
    return v;
  }
  sym({ t, bits }) {
    this.need(bits);
    const e = t[this.buf & ((1 << bits) - 1)];
    if (e < 0) bad("invalid Huffman code in the stream");
    const n = e & 15;
    this.buf >>>= n; this.cnt -= n;
    return e >> 4;
  }
  used() { return this.pos * 8 - this.cnt; }
}

class Grow {
  constructor() { this.buf = new Uint8Array(1024); this.length = 0; }
  push(...bytes) { for (const b of bytes) { if (this.length === this.buf.length) this.grow(1); this.buf[this.length++] = b; } }
  append(arr) { if (this.length + arr.length > this.buf.length) this.grow(arr.length); this.buf.set(arr, this.length); this.length += arr.length; }
  grow(n) { const b = new Uint8Array(Math.max(this.buf.length * 2, this.length + n)); b.set(this.buf.subarray(0, this.length)); this.buf = b; }
  bytes() { return this.buf.subarray(0, this.length); }
}

/** The transcript of the raw deflate stream `data` (which must end exactly at its end). */
export function parse(data, cap) {
  if (data.length > MAX_DEFLATED) fail("LimitError", "protocol.limit", "deflate stream too large to transcribe");
  const bits = new Bits(data);
  let work = TABLE_WORK * data.length + TABLE_FLOOR;
  const b = new Grow(), c = new Grow(), lit = new Grow();
  let plain = 0, fixed = null;
  for (;;) {
    const final = bits.get(1), btype = bits.get(2);
    b.push(final | (btype << 1));
    if (btype === 0) {
      const pad = (8 - (bits.used() & 7)) & 7;
      b.push(bits.get(pad));
      const size = bits.get(16), nsize = bits.get(16);
      if (size !== (nsize ^ 0xffff)) bad("stored block length does not match its complement");
      b.push(...uvarint(size));
      const start = bits.used() / 8;
      if (start + size > data.length) bad("the stream ends inside a stored block");
      lit.append(data.subarray(start, start + size));
      plain += size;
      bits.pos = start + size; bits.buf = 0; bits.cnt = 0;
    } else if (btype === 3) bad("invalid block type");
    else {
      let lt, dt;
      if (btype === 1) {
        fixed ||= [table(FIXED_LENGTHS, codes(FIXED_LENGTHS, "lens")), table(FIXED_DIST, codes(FIXED_DIST, "dists"))];
        [lt, dt] = fixed;
      } else {
        const hlit = bits.get(5), hdist = bits.get(5), hclen = bits.get(4);
        if (hlit > 29 || hdist > 29) bad("too many length or distance symbols");
        b.push(hlit, hdist, hclen);
        const clen = Array(19).fill(0);
        for (let i = 0; i < hclen + 4; i++) { clen[CLEN_ORDER[i]] = bits.get(3); b.push(clen[CLEN_ORDER[i]]); }
        const ct = table(clen, codes(clen, "codes"));
        const lengths = rleLengths(hlit + hdist + 258,
          () => { const s = bits.sym(ct); if (s <= 18) b.push(s); return s; },
          (n) => { const x = bits.get(n); b.push(x); return x; });
        const llen = lengths.slice(0, hlit + 257), dlen = lengths.slice(hlit + 257);
        lt = table(llen, codes(llen, "lens"));
        dt = dlen.some((n) => n) ? table(dlen, codes(dlen, "dists")) : { t: new Int32Array([-1]), bits: 0 };
        work -= (1 << lt.bits) + (1 << dt.bits);
        if (work < 0) fail("LimitError", "protocol.limit", "too many blocks to transcribe");
      }
      let run = 0, matches = 0;
      for (;;) {
        const s = bits.sym(lt);
        if (s < 256) { lit.push(s); run++; continue; }
        if (s === 256) break;
        const li = s - 257;
        if (li > 28) bad("invalid length symbol");
        const length = LBASE[li] + bits.get(LEXT[li]);
        if (li === 27 && length === 258) bad("length 258 sent as code 284");
        const ds = dt.bits ? bits.sym(dt) : bad("invalid distance code in the stream");
        if (ds > 29) bad("invalid distance symbol");
        const dist = DBASE[ds] + bits.get(DEXT[ds]);
        plain += run;
        if (dist > plain) bad("distance too far back");
        plain += length;
        if (plain > cap) fail("LimitError", "protocol.limit", "deflate stream inflates past the cap");
        c.push(...uvarint(run), length - 3, (dist - 1) & 255, (dist - 1) >> 8);
        run = 0; matches++;
      }
      plain += run;
      c.push(...uvarint(run));
      b.push(...uvarint(matches));
    }
    if (bits.used() > bits.limit) bad("the stream ends inside a block");
    if (plain > cap) fail("LimitError", "protocol.limit", "deflate stream inflates past the cap");
    if (final) break;
  }
  b.push(bits.get((8 - (bits.used() & 7)) & 7));
  if (bits.used() !== bits.limit) bad("bytes after the final block");
  const head = [...uvarint(plain), ...uvarint(b.length), ...uvarint(c.length)];
  const out = new Uint8Array(head.length + b.length + c.length + lit.length);
  out.set(head); out.set(b.bytes(), head.length); out.set(c.bytes(), head.length + b.length);
  out.set(lit.bytes(), head.length + b.length + c.length);
  return out;
}

/** Bit writer, LSB first; past `limit` bytes it counts but keeps nothing. */
class Out {
  constructor(limit) { this.out = new Uint8Array(Math.min(limit, 1 << 16) + 8); this.len = 0; this.limit = limit;
    this.acc = 0; this.n = 0; this.dropped = 0; }
  byte(v) {
    if (this.limit < 0) { this.dropped++; return; }
    if (this.len === this.out.length) { const b = new Uint8Array(this.out.length * 2); b.set(this.out); this.out = b; }
    this.out[this.len++] = v;
    if (this.len > this.limit) { this.dropped += this.len; this.len = 0; this.limit = -1; }
  }
  put(v, n) { // n <= 32: the accumulator holds < 8 bits between calls
    this.acc += v * 2 ** this.n; this.n += n;
    while (this.n >= 8) { this.byte(this.acc % 256); this.acc = Math.floor(this.acc / 256); this.n -= 8; }
  }
  used() { return (this.dropped + this.len) * 8 + this.n; }
}

/** The raw deflate stream a transcript describes; at most maxOut bytes kept. */
export function encode(t, maxOut) {
  const head = new Reader(t);
  const plainLen = head.uvarint(), lenB = head.uvarint(), lenC = head.uvarint();
  if (lenB > t.length - head.pos || lenC > t.length - head.pos - lenB) bad("stream lengths exceed the transcript");
  const rb = new Reader(t.subarray(head.pos, head.pos + lenB));
  const rc = new Reader(t.subarray(head.pos + lenB, head.pos + lenB + lenC));
  const lits = t.subarray(head.pos + lenB + lenC);
  let lp = 0, plain = 0, fixed = null;
  const out = new Out(maxOut);
  for (;;) {
    const kind = rb.u8(), final = kind & 1, btype = kind >> 1;
    if (btype > 2) bad("invalid block kind");
    out.put(kind, 3);
    if (btype === 0) {
      const pad = (8 - (out.used() & 7)) & 7;
      const v = rb.u8();
      if (v >> pad) bad("stored block padding out of range");
      out.put(v, pad);
      const size = rb.uvarint();
      if (size > 0xffff) bad("stored block too long");
      if (size > lits.length - lp) bad("stored block runs past the literals");
      if (plain + size > plainLen) bad("tokens pass the declared size");
      out.put(size, 16); out.put(size ^ 0xffff, 16);
      for (let i = 0; i < size; i++) out.byte(lits[lp + i]);
      lp += size; plain += size;
      if (final) break;
      continue;
    }
    let llen, lcode, dlen, dcode;
    if (btype === 1) {
      fixed ||= [FIXED_LENGTHS, codes(FIXED_LENGTHS, "lens"), FIXED_DIST, codes(FIXED_DIST, "dists")];
      [llen, lcode, dlen, dcode] = fixed;
    } else {
      const hlit = rb.u8(), hdist = rb.u8(), hclen = rb.u8();
      if (hlit > 29 || hdist > 29 || hclen > 15) bad("dynamic header counts out of range");
      out.put(hlit | (hdist << 5) | (hclen << 10), 14);
      const clen = Array(19).fill(0);
      for (let i = 0; i < hclen + 4; i++) {
        const v = rb.u8();
        if (v > 7) bad("code length code length out of range");
        clen[CLEN_ORDER[i]] = v;
        out.put(v, 3);
      }
      const ccode = codes(clen, "codes");
      const lengths = rleLengths(hlit + hdist + 258, () => {
        const s = rb.u8();
        if (s > 18) bad("code length symbol out of range");
        if (!clen[s]) bad("code length symbol without a code");
        out.put(ccode[s], clen[s]);
        return s;
      }, (nbits) => {
        const x = rb.u8();
        if (!(x >> nbits)) out.put(x, nbits);
        return x;
      });
      llen = lengths.slice(0, hlit + 257); dlen = lengths.slice(hlit + 257);
      lcode = codes(llen, "lens");
      dcode = dlen.some((n) => n) ? codes(dlen, "dists") : Array(dlen.length).fill(0);
    }
    const matches = rb.uvarint();
    if (matches > rc.data.length - rc.pos) bad("block declares more matches than C holds");
    for (let m = 0; m <= matches; m++) {
      const run = rc.uvarint();
      if (run > lits.length - lp) bad("literal run past the literals");
      plain += run;
      if (plain > plainLen) bad("tokens pass the declared size");
      for (let i = 0; i < run; i++) {
        const byte = lits[lp + i];
        if (!llen[byte]) bad("literal without a code");
        out.put(lcode[byte], llen[byte]);
      }
      lp += run;
      if (m === matches) break;
      const length = rc.u8() + 3;
      const d = rc.u8();
      const dist = (d | (rc.u8() << 8)) + 1;
      if (dist > 32768) bad("distance beyond the window");
      if (dist > plain) bad("distance beyond the output");
      plain += length;
      if (plain > plainLen) bad("tokens pass the declared size");
      const s = LSYM[length], sym = 257 + s;
      if (sym >= llen.length || !llen[sym]) bad("length without a code");
      const ds = DSYM[dist - 1];
      if (ds >= dlen.length || !dlen[ds]) bad("distance without a code");
      out.put(lcode[sym], llen[sym]); out.put(length - LBASE[s], LEXT[s]);
      out.put(dcode[ds], dlen[ds]); out.put(dist - DBASE[ds], DEXT[ds]);
    }
    out.put(lcode[256], llen[256]);
    if (final) break;
  }
  const pad = (8 - (out.used() & 7)) & 7;
  const v = rb.u8();
  if (v >> pad) bad("final padding out of range");
  out.put(v, pad);
  if (!rb.atEnd() || !rc.atEnd() || lp !== lits.length) PE("protocol.trailing", "deflate transcript: bytes left after the final block");
  if (plain !== plainLen) bad("tokens do not add up to the declared size");
  if (out.limit < 0) fail("IntegrityError", "integrity.delta", "deflate transcript encodes past the member's length");
  return out.out.slice(0, out.len);
}
