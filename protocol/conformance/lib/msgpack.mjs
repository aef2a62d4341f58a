// Strict msgpack decoding as PROTOCOL.md §6 says: str and bin apart, no ext, no duplicate map
// keys, one object spanning all the input, caps before allocation. Values: null, boolean,
// number (safe integers and floats), BigInt (integers beyond 2^53), string, Uint8Array,
// Array, Map (keys kept as decoded). Floats are returned; the schema refuses them.
import { PE } from "./base.mjs";

export const DEFAULT_LIMITS = { max_message: 32 << 20, max_plain: 64 << 20, max_ops: 20000, max_container: 20000, max_str: 1 << 20 };
const utf8 = new TextDecoder("utf-8", { fatal: true });

export function unpack(buf, limits = DEFAULT_LIMITS) {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let pos = 0;
  const need = (n) => { if (pos + n > buf.length) PE("protocol.msgpack", "truncated msgpack"); };
  const u8 = () => { need(1); return buf[pos++]; };
  const uint = (n) => {
    need(n);
    let v;
    if (n === 1) v = dv.getUint8(pos); else if (n === 2) v = dv.getUint16(pos); else if (n === 4) v = dv.getUint32(pos);
    else { v = dv.getBigUint64(pos); if (v <= BigInt(Number.MAX_SAFE_INTEGER)) v = Number(v); }
    pos += n;
    return v;
  };
  const int = (n) => {
    need(n);
    let v;
    if (n === 1) v = dv.getInt8(pos); else if (n === 2) v = dv.getInt16(pos); else if (n === 4) v = dv.getInt32(pos);
    else { v = dv.getBigInt64(pos); if (v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)) v = Number(v); }
    pos += n;
    return v;
  };
  const bytes = (n) => { need(n); const b = buf.subarray(pos, pos + n); pos += n; return b; };
  const str = (n) => {
    if (n > limits.max_str) PE("protocol.msgpack", "str over max_str");
    try { return utf8.decode(bytes(n)); } catch (e) { if (e.code) throw e; PE("protocol.msgpack", "bad UTF-8"); }
  };
  const bin = (n) => { if (n > limits.max_plain) PE("protocol.msgpack", "bin over max_plain"); return new Uint8Array(bytes(n)); };
  const arr = (n, depth) => {
    if (n > limits.max_container) PE("protocol.msgpack", "array over max_container");
    const out = [];
    for (let i = 0; i < n; i++) out.push(value(depth + 1));
    return out;
  };
  const map = (n, depth) => {
    if (n > limits.max_container) PE("protocol.msgpack", "map over max_container");
    const m = new Map();
    const seen = new Set();
    for (let i = 0; i < n; i++) {
      const k = value(depth + 1);
      const key = typeof k === "string" ? "s" + k : k instanceof Uint8Array ? "b" + Buffer.from(k).toString("hex") : typeof k + String(k);
      if (seen.has(key)) PE("protocol.msgpack", "duplicate map key");
      seen.add(key);
      m.set(typeof k === "bigint" ? k : k, value(depth + 1));
    }
    return m;
  };
  const value = (depth) => {
    if (depth > 512) PE("protocol.msgpack", "nested too deep");
    const b = u8();
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    if ((b & 0xf0) === 0x80) return map(b & 0x0f, depth);
    if ((b & 0xf0) === 0x90) return arr(b & 0x0f, depth);
    if ((b & 0xe0) === 0xa0) return str(b & 0x1f);
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return bin(uint(1));
      case 0xc5: return bin(uint(2));
      case 0xc6: return bin(uint(4));
      case 0xca: need(4); pos += 4; return { float: dv.getFloat32(pos - 4) };
      case 0xcb: need(8); pos += 8; return { float: dv.getFloat64(pos - 8) };
      case 0xcc: return uint(1);
      case 0xcd: return uint(2);
      case 0xce: return uint(4);
      case 0xcf: return uint(8);
      case 0xd0: return int(1);
      case 0xd1: return int(2);
      case 0xd2: return int(4);
      case 0xd3: return int(8);
      case 0xd9: return str(uint(1));
      case 0xda: return str(uint(2));
      case 0xdb: return str(uint(4));
      case 0xdc: return arr(uint(2), depth);
      case 0xdd: return arr(uint(4), depth);
      case 0xde: return map(uint(2), depth);
      case 0xdf: return map(uint(4), depth);
      default: PE("protocol.msgpack", `msgpack type 0x${b.toString(16)} is not allowed`); // ext types, 0xc1
    }
  };
  const v = value(0);
  if (pos !== buf.length) PE("protocol.trailing", "trailing bytes after the msgpack object");
  return v;
}

export const isInt = (v) => (typeof v === "number" && Number.isInteger(v)) || typeof v === "bigint";
export const isFloat = (v) => v !== null && typeof v === "object" && "float" in v;

/** Decoded msgpack to the vectors' typed JSON: bytes {hex}, non-string-keyed maps {map: [...]}. */
export function toTyped(v) {
  if (v instanceof Uint8Array) return { hex: Buffer.from(v).toString("hex") };
  if (Array.isArray(v)) return v.map(toTyped);
  if (v instanceof Map) {
    const keys = [...v.keys()];
    if (keys.every((k) => typeof k === "string")) return Object.fromEntries(keys.map((k) => [k, toTyped(v.get(k))]));
    return { map: keys.map((k) => [toTyped(k), toTyped(v.get(k))]) };
  }
  return v;
}

/** Deep equality of typed JSON values, integers compared exactly, map order ignored for objects. */
export function same(a, b) {
  if ((typeof a === "number" || typeof a === "bigint") && (typeof b === "number" || typeof b === "bigint"))
    return BigInt(a) === BigInt(b);
  if (Array.isArray(a) || Array.isArray(b)) return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => same(x, b[i]));
  if (a && b && typeof a === "object" && typeof b === "object") {
    const ka = Object.keys(a), kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => k in b && same(a[k], b[k]));
  }
  return a === b;
}

/** Canonical msgpack encoding (§6: shortest integers, maps in the given key order) of unsigned
 *  integers, Uint8Array (bin), arrays and Maps: what a manifest (§18d) needs, since a derived
 *  manifest (§18e) is checked by the SHA-256 of its encoding. */
export function pack(v) {
  const out = [];
  // a length: its fix form (fix | n, when fix is given and n < 16), else the 8-bit form (t8, when
  // given), else the 16- and 32-bit forms (t16, t16 + 1)
  const head = (n, fix, t8, t16) => {
    if (fix !== null && n < 16) out.push(fix | n);
    else if (t8 !== null && n < 0x100) out.push(t8, n);
    else if (n < 0x10000) out.push(t16, n >> 8, n & 0xff);
    else out.push(t16 + 1, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
  };
  const put = (x) => {
    if (typeof x === "number" || typeof x === "bigint") {
      const n = BigInt(x);
      if (n < 0n) throw new RangeError("pack: negative integers are not needed here");
      if (n < 128n) out.push(Number(n));
      else if (n < 0x100n) out.push(0xcc, Number(n));
      else if (n < 0x10000n) out.push(0xcd, Number(n >> 8n), Number(n & 0xffn));
      else if (n < 0x100000000n) out.push(0xce, ...[24n, 16n, 8n, 0n].map((s) => Number((n >> s) & 0xffn)));
      else out.push(0xcf, ...[56n, 48n, 40n, 32n, 24n, 16n, 8n, 0n].map((s) => Number((n >> s) & 0xffn)));
    } else if (x instanceof Uint8Array) {
      head(x.length, null, 0xc4, 0xc5);
      for (const b of x) out.push(b);
    } else if (Array.isArray(x)) {
      head(x.length, 0x90, null, 0xdc);
      x.forEach(put);
    } else if (x instanceof Map) {
      head(x.size, 0x80, null, 0xde);
      for (const [k, val] of x) { put(k); put(val); }
    } else {
      throw new TypeError(`pack: ${typeof x} is not needed here`);
    }
  };
  put(v);
  return new Uint8Array(out);
}
