// bundle_stream.json (§18b, bundle format 2): 64 KiB segments, counter and final flag in the nonce,
// the body named by the signed envelope. Read as a relay does: header, each segment, envelope, body.
import crypto from "node:crypto";
import { ascii, concat, edVerify, eq, fail, hex, hkdf, PE, sha256, Tally, toHex, x25519, x25519Public } from "./base.mjs";
import { same, toTyped } from "./msgpack.mjs";
import { openResponse, parseRequest } from "./wire.mjs";

const SEGMENT = 65536, SEALED = SEGMENT + 16, INFO = "hbw-sync bundle v2";

function nonceFor(i, final) {
  const n = new Uint8Array(12);
  let v = BigInt(i);
  for (let k = 10; k >= 0; k--) { n[k] = Number(v & 0xffn); v >>= 8n; }
  n[11] = final ? 1 : 0;
  return n;
}

function openSegment(key, i, final, sealed, header) {
  const tryOpen = (f) => {
    try {
      const d = crypto.createDecipheriv("chacha20-poly1305", key, nonceFor(i, f), { authTagLength: 16 });
      const ct = sealed.subarray(0, sealed.length - 16);
      d.setAAD(header, { plaintextLength: ct.length });
      d.setAuthTag(sealed.subarray(sealed.length - 16));
      return new Uint8Array(Buffer.concat([d.update(ct), d.final()]));
    } catch { return null; }
  };
  if (sealed.length < 16) fail("IntegrityError", "integrity.aead");
  const plain = tryOpen(final);
  if (plain) return plain;
  if (!tryOpen(!final)) fail("IntegrityError", "integrity.aead");
  if (final) PE("protocol.truncated");
  PE("protocol.trailing");
}

/** Open a format 2 bundle: { envelope, body, segments }; throws the spec's codes. */
export function openStream(data, kind, team, recipient, xPriv, maxEnvelope) {
  if (data.length < 4 || !eq(data.subarray(0, 3), ascii("HBW")) || !["X", "Y"].includes(String.fromCharCode(data[3]))) PE("protocol.magic");
  if (data.length < 54) PE("protocol.truncated");
  if (data[4] !== 2 || data[5] !== 0) fail("VersionError", "protocol.version");
  if (String.fromCharCode(data[3]) !== kind) PE("protocol.bundle_type");
  if (!eq(data.subarray(6, 14), team)) fail("IntegrityError", "integrity.team");
  if (!eq(data.subarray(14, 22), recipient)) fail("IntegrityError", "integrity.recipient");
  const header = data.subarray(0, 54), eph = data.subarray(22, 54);
  let shared;
  try { shared = x25519(xPriv, eph); } catch { fail("IntegrityError", "integrity.aead"); }
  if (shared.every((b) => b === 0)) fail("IntegrityError", "integrity.aead");
  const key = hkdf(shared, INFO, concat(eph, x25519Public(xPriv)));
  const rest = data.subarray(54);
  if (rest.length <= 16) PE("protocol.truncated");
  const parts = [];
  let i = 0;
  for (let off = 0; off < rest.length; off += SEALED, i++) {
    const seg = rest.subarray(off, off + SEALED);
    parts.push(openSegment(key, i, off + SEALED >= rest.length, seg, header));
  }
  const plain = concat(...parts);
  if (plain.length < 4) PE("protocol.truncated");
  const n = Buffer.from(plain).readUInt32BE(0);
  if (n > maxEnvelope) fail("LimitError", "protocol.limit");
  if (plain.length < 4 + n) PE("protocol.truncated");
  return { envelope: plain.subarray(4, 4 + n), body: plain.subarray(4 + n), segments: i };
}

function checkNamed(named, o) {
  const want = [{ hex: toHex(sha256(o.body)) }, o.segments, o.body.length];
  if (!same(toTyped(named ?? null), want)) fail("IntegrityError", "integrity.body");
}

/** As the relay: open, parse and verify the request, then match the body with the signed name. */
function atRelay(d, data) {
  const o = openStream(data, "X", hex(d.team), hex(d.relay.device_id), hex(d.relay.x25519_private), d.meta.max_envelope);
  const q = parseRequest(o.envelope);
  if (!edVerify(hex(d.device.transport_public), q.signature, q.signed)) fail("IntegrityError", "integrity.signature");
  checkNamed(q.args.get("body"), o);
  return { o, q };
}

function edit(d, e) {
  const req = d.request, b = hex(req.bundle);
  const header = new Uint8Array(b.subarray(0, 54));
  if (e.header_byte) header[e.header_byte[0]] = e.header_byte[1];
  const segs = [];
  let off = 54;
  for (const n of req.segment_lengths) { segs.push(b.subarray(off, off + n)); off += n; }
  const parts = e.segments.map((i) => new Uint8Array(segs[i]));
  for (const [k, v] of Object.entries(e.replace ?? {})) parts[Number(k)] = hex(v);
  if (e.flip) parts[e.flip[0]][e.flip[1]] ^= 1;
  return concat(header, ...parts, hex(e.append ?? ""));
}

export function checkBundleStream(d) {
  const t = new Tally("bundle_stream.json");
  t.check("segment size", d.meta.segment === SEGMENT);
  const req = d.request, rep = d.reply;
  for (const [name, b, recipientX] of [["request", req, d.relay.x25519_public], ["reply", rep, d.device.x25519_public]]) {
    t.check(`${name} shared`, toHex(x25519(hex(b.ephemeral_private), hex(recipientX))) === b.shared);
    t.check(`${name} key`, toHex(hkdf(hex(b.shared), INFO, concat(hex(b.ephemeral_public), hex(recipientX)))) === b.key);
    t.check(`${name} header`, hex(b.bundle).subarray(0, 54).every((x, i) => x === hex(b.header)[i]));
  }
  try {
    const { o, q } = atRelay(d, hex(req.bundle));
    t.check("request envelope", toHex(o.envelope) === req.envelope);
    t.check("request segments", o.segments === req.segments && req.segments === req.segment_lengths.length);
    t.check("request body", toHex(sha256(o.body)) === req.body_sha256 && o.body.length === req.body_length);
    t.check("request args", same(toTyped(q.args), req.envelope_args));
    // The body's chunk records: id (16) || u32 length || sealed, to its end.
    const buf = Buffer.from(o.body);
    let off = 0, n = 0;
    while (off < buf.length) { const len = buf.readUInt32BE(off + 16); off += 20 + len; n++; }
    t.check("request body records", off === buf.length && n === 2);
  } catch (e) { t.check("request opens", false, `${e.code}`); }
  try {
    const o = openStream(hex(rep.bundle), "Y", hex(d.team), hex(d.device.device_id), hex(d.device.x25519_private), d.meta.max_envelope);
    const r = openResponse(o.envelope, hex(d.relay.public), parseRequest(hex(req.envelope)).nonce);
    checkNamed(r.result.get("body"), o);
    t.check("reply result", same(toTyped(r.result), rep.envelope_result) && o.body.length === 0);
  } catch (e) { t.check("reply opens", false, `${e.code}`); }
  for (const v of d.invalid) {
    const data = v.edit ? edit(d, v.edit) : hex(v.bundle);
    t.expectError(`invalid ${v.name}`, () => atRelay(d, data), v.expected_error_class, v.expected_code);
  }
  return t;
}
