// Shared pieces of the conformance runner: lossless JSON, bytes, errors, crypto from Node's
// built-in module. Written from protocol/PROTOCOL.md, not from the Python code.
import crypto from "node:crypto";
import fs from "node:fs";

/** An error with the stable code of PROTOCOL.md (and the reference class, for comparison). */
export class WireError extends Error {
  constructor(cls, code, message) {
    super(message || code);
    this.cls = cls;
    this.code = code;
  }
}
export const fail = (cls, code, msg) => { throw new WireError(cls, code, msg); };
export const PE = (code, msg) => fail("ProtocolError", code, msg);

/** JSON with integers above 2^53 kept exact (as BigInt): the vectors hold HLCs and u64 seqs. */
export function loadJson(path) {
  const text = fs.readFileSync(path, "utf8").replace(
    /([:\[,]\s*)(-?\d{16,})(?=\s*[,\]\}])/g, (_, pre, num) => `${pre}"\\u0000big:${num}"`);
  return JSON.parse(text, (_, v) => (typeof v === "string" && v.startsWith("\u0000big:") ? BigInt(v.slice(5)) : v));
}

export const hex = (s) => new Uint8Array(Buffer.from(s, "hex"));
export const toHex = (b) => Buffer.from(b).toString("hex");
export const eq = (a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;
export const concat = (...parts) => new Uint8Array(Buffer.concat(parts.map((p) => Buffer.from(p))));
export const ascii = (s) => new Uint8Array(Buffer.from(s, "latin1"));
export const u32 = (n) => { const b = Buffer.alloc(4); b.writeUInt32BE(Number(n)); return new Uint8Array(b); };
export const u64 = (n) => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(n)); return new Uint8Array(b); };
export const big = (v) => (typeof v === "bigint" ? v : BigInt(v));

export const sha256 = (b) => new Uint8Array(crypto.createHash("sha256").update(b).digest());
export const hmac = (key, b) => new Uint8Array(crypto.createHmac("sha256", key).update(b).digest());
export const hkdf = (ikm, info, salt = new Uint8Array(32), len = 32) =>
  new Uint8Array(crypto.hkdfSync("sha256", ikm, salt, typeof info === "string" ? ascii(info) : info, len));

const ED_PRIV = Buffer.from("302e020100300506032b657004220420", "hex");
const ED_PUB = Buffer.from("302a300506032b6570032100", "hex");
const X_PRIV = Buffer.from("302e020100300506032b656e04220420", "hex");
const X_PUB = Buffer.from("302a300506032b656e032100", "hex");
const edPriv = (seed) => crypto.createPrivateKey({ key: Buffer.concat([ED_PRIV, seed]), format: "der", type: "pkcs8" });
export const edPublic = (seed) => new Uint8Array(crypto.createPublicKey(edPriv(seed)).export({ format: "der", type: "spki" }).subarray(12));
export const edSign = (seed, msg) => new Uint8Array(crypto.sign(null, msg, edPriv(seed)));
export function edVerify(pub, sig, msg) {
  try {
    const key = crypto.createPublicKey({ key: Buffer.concat([ED_PUB, pub]), format: "der", type: "spki" });
    return crypto.verify(null, msg, key, sig);
  } catch {
    return false;
  }
}
export function x25519(priv, pub) {
  const k = crypto.createPrivateKey({ key: Buffer.concat([X_PRIV, priv]), format: "der", type: "pkcs8" });
  const p = crypto.createPublicKey({ key: Buffer.concat([X_PUB, pub]), format: "der", type: "spki" });
  return new Uint8Array(crypto.diffieHellman({ privateKey: k, publicKey: p }));
}
export function x25519Public(priv) {
  const k = crypto.createPrivateKey({ key: Buffer.concat([X_PRIV, priv]), format: "der", type: "pkcs8" });
  return new Uint8Array(crypto.createPublicKey(k).export({ format: "der", type: "spki" }).subarray(12));
}
/** ChaCha20-Poly1305 open of nonce(12) || ciphertext || tag(16); null when the tag fails. */
export function aeadOpen(key, sealed, aad) {
  const nonce = sealed.subarray(0, 12), tag = sealed.subarray(sealed.length - 16), ct = sealed.subarray(12, sealed.length - 16);
  try {
    const d = crypto.createDecipheriv("chacha20-poly1305", key, nonce, { authTagLength: 16 });
    d.setAAD(aad, { plaintextLength: ct.length });
    d.setAuthTag(tag);
    return new Uint8Array(Buffer.concat([d.update(ct), d.final()]));
  } catch {
    return null;
  }
}
export function aeadSeal(key, nonce, plain, aad) {
  const c = crypto.createCipheriv("chacha20-poly1305", key, nonce, { authTagLength: 16 });
  c.setAAD(aad, { plaintextLength: plain.length });
  return concat(nonce, c.update(plain), c.final(), c.getAuthTag());
}

export const deviceId = (pub) => sha256(concat(ascii("hbw-sync device id v1\0"), pub)).subarray(0, 8);
export const keyId = (secret, epoch) => hmac(secret, concat(ascii("hbw-sync key id v1\0"), u32(epoch))).subarray(0, 8);

/** A tally per vector file: every check counted, every mismatch named. */
export class Tally {
  constructor(file) { this.file = file; this.passed = 0; this.failures = []; this.notes = []; }
  check(name, ok, detail = "") { if (ok) this.passed++; else this.failures.push(`${name}${detail ? ": " + detail : ""}`); }
  /** Run fn and compare the error it throws (or none) with the expected class/code. */
  expectError(name, fn, cls, code) {
    try {
      fn();
    } catch (e) {
      if (!(e instanceof WireError)) return this.check(name, false, `crashed: ${e.stack}`);
      return this.check(name, e.code === code && (cls == null || e.cls === cls), `got ${e.cls} ${e.code}, want ${cls} ${code}`);
    }
    this.check(name, false, `accepted, want ${cls} ${code}`);
  }
}

/** §18c's integers: u8 and minimal uvarint (at most 9 bytes, < 2^63); a short read is truncated. */
export class Reader {
  constructor(data) { this.data = data; this.pos = 0; }
  u8() {
    if (this.pos >= this.data.length) PE("protocol.truncated");
    return this.data[this.pos++];
  }
  uvarint() {
    let v = 0n;
    for (let i = 0; i < 9; i++) {
      const b = this.u8();
      v |= BigInt(b & 0x7f) << BigInt(7 * i);
      if (!(b & 0x80)) {
        if (b === 0 && i > 0) PE("protocol.delta", "non-minimal varint");
        if (v >= 1n << 63n) PE("protocol.delta", "varint out of range");
        return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : Infinity; // beyond any length here
      }
    }
    PE("protocol.delta", "varint too long");
  }
  atEnd() { return this.pos === this.data.length; }
  take(n) {
    if (n > this.data.length - this.pos) PE("protocol.truncated");
    const out = this.data.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
}
