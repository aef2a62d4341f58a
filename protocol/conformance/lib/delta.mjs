// delta.json: document delta payloads (PROTOCOL.md §18c), applied from the spec alone.
// Method 1 (one patch frame against the whole base) and method 2 (a recipe of LIT, COPY,
// MEMBER and SPLICE ops); patch frames through the vendored fzstd with the base as raw-content history.
// Codec 10 (a deflate transcript, any deflater) is written from the spec in ./transcript.mjs.
// Deflate (codecs 8 and 9) must be zlib's own, byte for byte: Node's built-in zlib is Chromium's
// fork, which picks other matches (1,989 bytes where zlib 1.2.13 writes 1,988 for the codec 8
// vector), so it would refuse every such delta with integrity.delta. pako is a line-by-line port
// of zlib's deflate and writes the same bytes; Node's zlib still inflates (any inflater agrees).
// Every declared size is checked against max_size, plain_cap(max_size) (what a reader holds) and
// stream_cap(max_size) (what a SPLICE over a deflated dictionary streams) before anything that
// grows with it is allocated. (This runner holds everything: the vectors are small.)
import zlib from "node:zlib";
import pako from "pako";
import { eq, fail, hex, PE, Reader, sha256, Tally, toHex, WireError } from "./base.mjs";
import { encode as transcriptEncode, MAX_DEFLATED, parse as transcriptParse, PER_BYTE, SLACK } from "./transcript.mjs";
import { patchSize, unpatch } from "./zstd.mjs";

const PLAIN_FACTOR = 64, PLAIN_CEILING = 256 * 2 ** 20, STREAM_FACTOR = 128, STREAM_CEILING = 2 * 2 ** 30;
const MIN_BLOCK = 4096, MAX_BLOCK = 2 ** 24, MAX_WINDOW = 32768, DEFLATE_PIECE = 65536;
const plainCap = (max) => Math.min(PLAIN_FACTOR * max, Math.max(max, PLAIN_CEILING));
const streamCap = (max) => Math.min(STREAM_FACTOR * max, Math.max(max, STREAM_CEILING));
const LE = (code, msg) => fail("LimitError", code, msg);

const inside = (baseLen, off, n) => { if (off > baseLen || n > baseLen - off) PE("protocol.delta", "range outside the base"); };

/** One raw zlib deflate stream of `c` (fed in 64 KiB pieces, Z_NO_FLUSH) ended by `flush`. */
function deflate(c, [level, memLevel, strategy], dictionary = null, flush = pako.constants.Z_FINISH) {
  const opts = { raw: true, level, memLevel, strategy, windowBits: 15 };
  if (dictionary && dictionary.length) opts.dictionary = dictionary;
  const z = new pako.Deflate(opts);
  const parts = [];
  z.onData = (chunk) => parts.push(chunk);
  for (let i = 0; i < c.length; i += DEFLATE_PIECE) z.push(c.subarray(i, i + DEFLATE_PIECE), pako.constants.Z_NO_FLUSH);
  z.push(new Uint8Array(0), flush);
  if (z.err) throw new Error(`pako: ${z.msg}`);
  return new Uint8Array(Buffer.concat(parts));
}

/** Codec 9: blocks of `blockSize`, each a fresh stream primed with the `window` bytes before it,
 * ended by Z_SYNC_FLUSH, the last by Z_FINISH; empty content is one empty block. */
function deflateBlocks(c, params, blockSize, window) {
  const parts = [];
  for (let start = 0; ; start += blockSize) {
    const end = Math.min(c.length, start + blockSize), last = end >= c.length;
    const dict = start && window ? c.subarray(Math.max(0, start - window), start) : null;
    parts.push(deflate(c.subarray(start, end), params, dict, last ? pako.constants.Z_FINISH : pako.constants.Z_SYNC_FLUSH));
    if (last) return new Uint8Array(Buffer.concat(parts));
  }
}

/** The raw deflate stream that is exactly `range`, inflating to exactly `plain` bytes; else protocol.delta. */
function inflateExact(range, plain) {
  let r;
  try {
    r = zlib.inflateRawSync(range, { maxOutputLength: Math.max(1, plain + 1), info: true });
  } catch {
    PE("protocol.delta", "dictionary is not a deflate stream");
  }
  if (r.buffer.length !== plain || r.engine.bytesWritten !== range.length)
    PE("protocol.delta", "dictionary is not the declared deflate stream");
  return new Uint8Array(r.buffer);
}

function parseRecipe(r, baseLen, max) {
  const cap = plainCap(max), scap = streamCap(max);
  const litOff = r.uvarint(), litLen = r.uvarint();
  inside(baseLen, litOff, litLen);
  const litFrameLen = r.uvarint();
  const litFrame = litFrameLen ? r.take(litFrameLen) : null;
  const opCount = r.uvarint();
  if (opCount > r.data.length) PE("protocol.delta", "more ops than the payload can hold");
  const ops = [];
  let total = 0, litTotal = 0, dictTotal = 0, plainTotal = 0, streamTotal = 0;
  for (let i = 0; i < opCount; i++) {
    const tag = r.u8();
    let op;
    if (tag === 0) {
      op = { tag, n: r.uvarint() };
      litTotal += op.n;
    } else if (tag === 1) {
      op = { tag, off: r.uvarint(), n: r.uvarint() };
      inside(baseLen, op.off, op.n);
    } else if (tag === 2 || tag === 3) { // MEMBER, or SPLICE: the same with head and tail kept from D
      op = { tag, dictOff: r.uvarint(), dictLen: r.uvarint(), dictPlain: 0, head: 0, tail: 0 };
      inside(baseLen, op.dictOff, op.dictLen);
      op.dictCodec = r.u8();
      const streamed = tag === 3 && op.dictCodec === 8; // a SPLICE over a deflated dictionary: streamed, not held
      if (op.dictCodec === 8 || op.dictCodec === 10) {
        op.dictPlain = r.uvarint();
        if (op.dictPlain > (streamed ? scap : cap)) LE("protocol.bomb", "dictionary inflates past its cap");
        if (op.dictCodec === 10 && op.dictLen > MAX_DEFLATED) LE("protocol.limit", "dictionary too large to transcribe");
      } else if (op.dictCodec !== 0) PE("protocol.delta", "unknown dictionary codec");
      if (op.dictLen === 0 && (op.dictOff || op.dictCodec !== 0)) PE("protocol.delta", "empty range with offset or codec");
      if (tag === 3) {
        op.head = r.uvarint(); op.tail = r.uvarint();
        const have = op.dictCodec === 0 ? op.dictLen : op.dictPlain;
        if (op.head > have || op.tail > have - op.head) PE("protocol.delta", "splice keeps more than its dictionary");
      }
      op.frame = r.take(r.uvarint());
      op.frameSize = patchSize(op.frame, cap);
      op.size = op.head + op.tail + op.frameSize; // the member's content C
      if (op.size > (streamed ? scap : cap)) LE("protocol.bomb", "spliced member over its cap");
      dictTotal += op.dictLen;
      if (streamed) { // held: the old middle and the new one; streamed: the dictionary and the content
        plainTotal += op.dictPlain - op.head - op.tail + op.frameSize;
        streamTotal += op.dictPlain + op.size;
      } else plainTotal += op.dictPlain + op.size;
      if (dictTotal > baseLen || plainTotal > cap || streamTotal > scap) LE("protocol.limit", "members over the caps");
      op.outCodec = r.u8();
      if (op.outCodec === 8 || op.outCodec === 9) {
        op.params = [r.u8(), r.u8(), r.u8()];
        const [level, mem, strategy] = op.params;
        let bad = level > 9 || mem < 1 || mem > 9 || strategy > 4;
        if (op.outCodec === 9) {
          op.blockSize = r.uvarint(); op.window = r.uvarint();
          bad ||= op.blockSize < MIN_BLOCK || op.blockSize > MAX_BLOCK || op.window > MAX_WINDOW;
        }
        if (bad) PE("protocol.delta", "deflate parameters out of range");
      } else if (op.outCodec !== 0 && op.outCodec !== 10) PE("protocol.delta", "unknown output codec");
      if (streamed && op.outCodec === 10) PE("protocol.delta", "a streamed SPLICE is never transcribed");
      op.n = r.uvarint();
      if (op.outCodec === 10 && op.n > MAX_DEFLATED) LE("protocol.limit", "transcribed member too large");
      if (op.outCodec === 10 && op.size > PER_BYTE * op.n + SLACK) PE("protocol.delta", "transcript longer than any stream of its length");
      if (op.outCodec === 0 && op.n !== op.size) PE("protocol.delta", "member size differs from its frame");
    } else PE("protocol.delta", `unknown op ${tag}`);
    total += op.n;
    if (total > max) LE("protocol.limit", "result over max_size");
    ops.push(op);
  }
  if (r.pos !== r.data.length) PE("protocol.trailing");
  if (litFrame === null) { if (litTotal) PE("protocol.delta", "literals without a literal stream"); }
  else if (patchSize(litFrame, max) !== litTotal) PE("protocol.delta", "literal stream size differs from the ops");
  return { litOff, litLen, litFrame, total, ops };
}

function runRecipe(base, p, max) {
  const cap = plainCap(max);
  const lits = p.litFrame ? unpatch(p.litFrame, base.subarray(p.litOff, p.litOff + p.litLen), max) : new Uint8Array(0);
  let litPos = 0;
  const parts = [];
  for (const op of p.ops) {
    if (op.tag === 0) { parts.push(lits.subarray(litPos, litPos + op.n)); litPos += op.n; }
    else if (op.tag === 1) parts.push(base.subarray(op.off, op.off + op.n));
    else {
      let dict = base.subarray(op.dictOff, op.dictOff + op.dictLen);
      if (op.dictCodec === 8) dict = inflateExact(dict, op.dictPlain);
      else if (op.dictCodec === 10) { // the base member's deflate transcript (codec 10)
        let t = null;
        try { t = transcriptParse(dict, cap); } catch (e) { if (!(e instanceof WireError)) throw e; }
        if (t === null || t.length !== op.dictPlain) PE("protocol.delta", "dictionary is not the declared deflate stream");
        dict = t;
      }
      let content = op.tag === 3
        ? new Uint8Array(Buffer.concat([dict.subarray(0, op.head),
            unpatch(op.frame, dict.subarray(op.head, dict.length - op.tail), cap), dict.subarray(dict.length - op.tail)]))
        : unpatch(op.frame, dict, cap);
      if (op.outCodec !== 0) {
        content = op.outCodec === 8 ? deflate(content, op.params)
          : op.outCodec === 10 ? transcriptEncode(content, op.n)
            : deflateBlocks(content, op.params, op.blockSize, op.window);
        if (content.length !== op.n) fail("IntegrityError", "integrity.delta", "recompressed member differs");
      }
      parts.push(content);
    }
  }
  const out = new Uint8Array(Buffer.concat(parts));
  if (out.length !== p.total) PE("protocol.delta", "rebuilt size differs");
  return out;
}

/** Rebuild a version from `base` and a §18c payload; throws WireError with the spec's code. */
export function applyDelta(base, payload, expectedSha256, max) {
  const r = new Reader(payload);
  const method = r.u8();
  let out;
  if (method === 1) out = unpatch(r.take(payload.length - 1), base, max);
  else if (method === 2) out = runRecipe(base, parseRecipe(r, base.length, max), max);
  else PE("protocol.delta", `unknown method ${method}`);
  if (!eq(sha256(out), expectedSha256)) fail("IntegrityError", "integrity.delta", "result hash");
  return out;
}

export function checkDelta(d) {
  const t = new Tally("delta.json");
  const bases = {};
  for (const v of d.valid) {
    const base = hex(v.base);
    bases[v.name] = base;
    let out;
    try {
      out = applyDelta(base, hex(v.payload), hex(v.result_sha256), v.max_size);
    } catch (e) {
      t.check(`valid ${v.name}`, false, e instanceof WireError ? `${e.cls} ${e.code}: ${e.message}` : `crashed: ${e.stack}`);
      continue;
    }
    t.check(`valid ${v.name} size`, out.length === v.result_size, `${out.length} != ${v.result_size}`);
    t.check(`valid ${v.name} sha256`, toHex(sha256(out)) === v.result_sha256);
    if (v.result !== undefined) t.check(`valid ${v.name} bytes`, toHex(out) === v.result);
  }
  const outcome = (base, payload, want, max) => {
    try {
      applyDelta(base, payload, want, max);
      return "accept";
    } catch (e) {
      return e instanceof WireError ? `${e.cls} ${e.code}` : `crash ${e.message}`;
    }
  };
  for (const v of d.valid) {
    const marks = d.flips[v.name], payload = hex(v.payload), want = hex(v.result_sha256);
    t.check(`flips ${v.name} count`, marks && marks.length === payload.length * 8);
    let bad = 0, first = "";
    for (let bit = 0; marks && bit < marks.length; bit++) {
      const p = payload.slice();
      p[bit >> 3] ^= 1 << (bit & 7);
      const got = outcome(bases[v.name], p, want, v.max_size), wantOutcome = d.flip_letters[marks[bit]];
      if (got !== wantOutcome) { bad++; first ||= `bit ${bit}: got ${got}, want ${wantOutcome}`; }
    }
    t.check(`flips ${v.name} (${marks ? marks.length : 0})`, bad === 0, `${bad} differ; first ${first}`);
    t.passed += marks ? marks.length - 1 : 0; // one check per flip
  }
  for (const v of d.invalid) {
    const base = bases[v.base_of];
    if (!base) { t.check(`invalid ${v.name}`, false, `no valid vector named ${v.base_of}`); continue; }
    t.expectError(`invalid ${v.name}`, () => applyDelta(base, hex(v.payload), hex(v.expected_sha256), v.max_size),
      v.expected_error, v.expected_code);
  }
  return t;
}
