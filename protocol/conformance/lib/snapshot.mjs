// snapshot.json (PROTOCOL.md §18): verify, decode, and the ops it must hold.
import { aeadOpen, ascii, big, concat, deviceId, edVerify, eq, fail, hex, hkdf, PE, Tally, toHex } from "./base.mjs";
import { isInt, same, unpack } from "./msgpack.mjs";
import { decompress } from "./zstd.mjs";
import { opFromRow, opJson } from "./wire.mjs";

const SNAP_LIMITS = { max_message: 512 << 20, max_plain: 512 << 20, max_ops: 2000000, max_container: 2000000, max_str: 1 << 20 };

export function decodeSnapshot(data, publicKey, teamKeys, team) {
  if (data.length < 106 || !eq(data.subarray(0, 4), ascii("HBWS"))) PE("protocol.magic");
  if (data[4] !== 2) fail("VersionError", "protocol.version");
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const n = dv.getUint32(34), sLen = dv.getUint32(38);
  if (n > 65536) fail("LimitError", "protocol.limit");
  if (data[5] !== 0) fail("VersionError", "protocol.version");
  const sealedAt = 42 + 16 * n;
  if (sealedAt + sLen + 64 !== data.length) PE("protocol.schema");
  const coverage = new Map();
  let last = null;
  for (let i = 0; i < n; i++) {
    const d = data.subarray(42 + 16 * i, 50 + 16 * i);
    if (last && Buffer.compare(d, last) <= 0) PE("protocol.order");
    coverage.set(toHex(d), dv.getBigUint64(50 + 16 * i));
    last = d;
  }
  if (!eq(data.subarray(6, 14), team)) fail("IntegrityError", "integrity.team");
  if (!eq(deviceId(publicKey), data.subarray(14, 22))) fail("IntegrityError", "integrity.device");
  const end = sealedAt + sLen;
  if (!edVerify(publicKey, data.subarray(end), data.subarray(0, end))) fail("IntegrityError", "integrity.signature");
  const secret = teamKeys.get(dv.getUint32(30));
  if (!secret) fail("WrongKeyError", "access.wrong_key");
  if (sLen < 28) PE("protocol.truncated");
  const plainZ = aeadOpen(hkdf(secret, "hbw-sync snapshot v1"), data.subarray(sealedAt, end), data.subarray(0, sealedAt));
  if (!plainZ) fail("IntegrityError", "integrity.aead");
  const plain = decompress(plainZ, SNAP_LIMITS.max_plain);
  const entries = unpack(plain, SNAP_LIMITS);
  if (!Array.isArray(entries)) PE("protocol.schema");
  const ops = entries.map((e) => {
    if (!Array.isArray(e) || e.length !== 4 || !(e[0] instanceof Uint8Array) || !isInt(e[1]) || !(e[3] instanceof Map)) PE("protocol.schema");
    const op = opFromRow(e[2], e[3]);
    if (!coverage.has(toHex(e[0]))) fail("IntegrityError", "integrity.coverage");
    return { device: toHex(e[0]), received_ms: big(e[1]), op };
  });
  return { cursor: dv.getBigUint64(22), coverage, ops, plain, plainZ };
}

export function checkSnapshot(d) {
  const t = new Tally("snapshot.json");
  const s = d.snapshot;
  const keys = (dec) => new Map(dec.team_keys.map((k) => [Number(k.epoch), hex(k.secret)]));
  let r;
  try {
    r = decodeSnapshot(hex(s.snapshot), hex(s.decode.public_key), keys(s.decode), hex(s.decode.team));
  } catch (e) {
    t.check("snapshot decodes", false, `${e.code} ${e.message}`);
    return t;
  }
  t.check("snapshot plain_msgpack", toHex(r.plain) === s.plain_msgpack);
  t.check("snapshot plain_zstd", toHex(r.plainZ) === s.plain_zstd);
  t.check("snapshot cursor", r.cursor === big(s.inputs.cursor));
  t.check("snapshot coverage", s.inputs.coverage.every((c) => r.coverage.get(c.device_id) === big(c.last_seq ?? c.seq)));
  t.check("snapshot ops", same(r.ops.map((o) => ({ device_id: o.device, received_ms: o.received_ms, op: opJson(o.op) })),
    s.ops.map((o) => ({ device_id: o.device_id, received_ms: o.received_ms, op: o.op }))));
  for (const v of d.invalid) {
    t.expectError(v.name, () => decodeSnapshot(hex(v.snapshot), hex(v.decode.public_key), keys(v.decode), hex(v.decode.team)),
      v.expected_error_class, v.expected_code);
  }
  t.notes.push("the selection of ops from history (§18 'Which ops') is checked only as the listed ops, not recomputed");
  return t;
}
