// The zstd acceptance rule of PROTOCOL.md §7, steps 1-11, around fzstd (a pure-JS decoder,
// vendored in ./fzstd/ with raw-content dictionaries added for §18c's patch frames).
// Steps 1-8 and 10-11 are ours; only step 9 (decoding the blocks) is the library's.
import * as fzstd from "./fzstd/index.mjs";
import { fail, PE } from "./base.mjs";

const MAGIC = [0x28, 0xb5, 0x2f, 0xfd];
const BLOCK_MAX = 128 * 1024;
const WINDOW_FLOOR = 8 * 1024 * 1024;

const M = (1n << 64n) - 1n;
const P1 = 11400714785074694791n, P2 = 14029467366897019727n, P3 = 1609587929392839161n;
const P4 = 9650029242287828579n, P5 = 2870177450012600261n;
const rotl = (x, r) => ((x << BigInt(r)) | (x >> BigInt(64 - r))) & M;
const round = (acc, v) => (rotl((acc + v * P2) & M, 31) * P1) & M;
const mergeRound = (acc, v) => (((acc ^ round(0n, v)) * P1) & M) + P4 & M;

/** XXH64 with seed 0 (BigInt; fine for the vectors' sizes). */
export function xxh64(buf) {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = buf.length;
  let i = 0, h;
  if (n >= 32) {
    let v1 = (P1 + P2) & M, v2 = P2, v3 = 0n, v4 = (M + 1n - P1) & M;
    for (; i + 32 <= n; i += 32) {
      v1 = round(v1, dv.getBigUint64(i, true));
      v2 = round(v2, dv.getBigUint64(i + 8, true));
      v3 = round(v3, dv.getBigUint64(i + 16, true));
      v4 = round(v4, dv.getBigUint64(i + 24, true));
    }
    h = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) & M;
    h = mergeRound(h, v1); h = mergeRound(h, v2); h = mergeRound(h, v3); h = mergeRound(h, v4);
  } else {
    h = P5;
  }
  h = (h + BigInt(n)) & M;
  for (; i + 8 <= n; i += 8) h = ((rotl(h ^ round(0n, dv.getBigUint64(i, true)), 27) * P1) & M) + P4 & M;
  if (i + 4 <= n) { h = ((rotl(h ^ ((BigInt(dv.getUint32(i, true)) * P1) & M), 23) * P2) & M) + P3 & M; i += 4; }
  for (; i < n; i++) h = (rotl(h ^ ((BigInt(buf[i]) * P5) & M), 11) * P1) & M;
  h ^= h >> 33n; h = (h * P2) & M; h ^= h >> 29n; h = (h * P3) & M; h ^= h >> 32n;
  return h;
}

/** Steps 1-8: the frame's declared size, window and checksum, or the error of the first failing step.
 * `windowMax` replaces step 6's bound (§18c patch frames). */
export function checkFrame(data, cap, windowMax = null) {
  const n = data.length;
  if (n < 4 || MAGIC.some((b, i) => data[i] !== b)) {
    if (n < 4 && [...data].every((b, i) => b === MAGIC[i])) PE("protocol.truncated");
    PE("protocol.zstd", "not a zstd frame");
  }
  if (n < 5) PE("protocol.truncated");
  const fhd = data[4];
  const fcsFlag = fhd >> 6, single = (fhd >> 5) & 1;
  if ((fhd >> 3) & 1) PE("protocol.zstd", "reserved bit");
  if (fhd & 3) PE("protocol.zstd", "dictionary id");
  if (!((fhd >> 2) & 1)) PE("protocol.zstd", "no checksum");
  if (fcsFlag === 0 && !single) PE("protocol.zstd", "no content size");
  const fcsLen = [single ? 1 : 0, 2, 4, 8][fcsFlag];
  let pos = 5 + (single ? 0 : 1);
  if (n < pos + fcsLen) PE("protocol.truncated");
  let size = 0n;
  for (let i = fcsLen - 1; i >= 0; i--) size = (size << 8n) | BigInt(data[pos + i]);
  if (fcsLen === 2) size += 256n;
  if (size > BigInt(cap)) fail("LimitError", "protocol.bomb");
  size = Number(size);
  let window;
  if (single) window = size;
  else {
    const wd = data[5], base = 2 ** (10 + (wd >> 3));
    window = base + (base / 8) * (wd & 7);
    if (window > (windowMax ?? Math.max(WINDOW_FLOOR, 2 * size))) PE("protocol.zstd", "window too large");
  }
  pos += fcsLen;
  const blockMax = Math.min(window, BLOCK_MAX);
  let plain = 0;
  for (;;) {
    if (pos + 3 > n) PE("protocol.truncated");
    const h = data[pos] | (data[pos + 1] << 8) | (data[pos + 2] << 16);
    pos += 3;
    const last = h & 1, type = (h >> 1) & 3, bsize = h >>> 3;
    if (type === 3) PE("protocol.zstd", "reserved block type");
    if (bsize > blockMax) PE("protocol.zstd", "block too large");
    if (type !== 2) { plain += bsize; if (plain > size) PE("protocol.zstd", "blocks over the declared size"); }
    pos += type === 1 ? 1 : bsize;
    if (last) break;
  }
  if (pos + 4 > n) PE("protocol.truncated");
  if (pos + 4 < n) PE("protocol.trailing");
  const checksum = (data[pos] | (data[pos + 1] << 8) | (data[pos + 2] << 16) | (data[pos + 3] << 24)) >>> 0;
  return { size, window, checksum };
}

/** Steps 9-11 on a frame that passed checkFrame; `refuse(why)` throws the error for any of them. */
function decode(data, info, dict, refuse) {
  let out;
  try {
    out = fzstd.decompress(data, new Uint8Array(info.size), dict);
  } catch (e) {
    refuse(`fzstd: ${e.message}`);
  }
  if (out.length !== info.size) refuse("size differs from the header");
  if (Number(xxh64(out) & 0xffffffffn) !== info.checksum) refuse("checksum");
  return out;
}

/** Steps 1-11 for a section (batch, snapshot entry, chunk). */
export function decompress(data, cap) {
  const info = checkFrame(data, cap);
  return decode(data, info, null, (why) => PE("protocol.zstd", why));
}

/** §18c: the window a patch frame with output cap `cap` may declare (at least §7's 8 MiB floor). */
export function patchWindowMax(cap) {
  let p = 1;
  while (p < cap) p *= 2;
  return Math.max(WINDOW_FLOOR, Math.min(2 ** 31, Math.max(2 ** 20, p)));
}

/** §18c patch frame: steps 1-8 with the patch window bound (returns the declared size). */
export const patchSize = (frame, cap) => checkFrame(frame, cap, patchWindowMax(cap)).size;

/** §18c patch frame decoded with `dict` as raw-content history (none under 8 bytes); any failure
 * of steps 9-11 is integrity.delta (a different base decodes cleanly to other bytes, and decoders
 * stop at different steps on a damaged frame). */
export function unpatch(frame, dict, cap) {
  const info = checkFrame(frame, cap, patchWindowMax(cap));
  return decode(frame, info, dict.length >= 8 ? dict : null, (why) => fail("IntegrityError", "integrity.delta", why));
}
