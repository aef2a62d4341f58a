// batches.json, invalid.json (§8, §9), envelopes.json (§12), chunks.json (§18d): message layouts.
import {
  aeadOpen, aeadSeal, ascii, big, concat, deviceId, edVerify, eq, fail, hex, hkdf, hmac, PE, Tally, toHex, u32, WireError,
} from "./base.mjs";
import { DEFAULT_LIMITS, isFloat, isInt, same, toTyped, unpack } from "./msgpack.mjs";
import { decompress } from "./zstd.mjs";
import { checkSnapshot } from "./snapshot.mjs";
import { checkMerge, checkPolicy } from "./merge.mjs";
import { checkKeyed } from "./keyed.mjs";
import { FIELDS, KINDS } from "./fields.mjs";

// -- §5 field registry: lib/fields.mjs, from ../fields.json -----------------------------------
const R = "routing", C = "content";
export { FIELDS, KINDS };

function checkValues(kind, values, section) {
  if (!(values instanceof Map)) PE("protocol.schema", `${section} fields must be a map`);
  for (const [tag, v] of values) {
    const spec = typeof tag === "number" && Number.isInteger(tag) ? FIELDS[kind][tag] : undefined;
    if (!spec || spec[1] !== section) PE("protocol.schema", `unknown ${section} tag ${tag}`);
    if (v === null && spec[3]) continue;
    if (isFloat(v) || !spec[2](v)) PE("protocol.schema", `bad value for ${kind}.${spec[0]}`);
  }
}

/** §9 step 7 for one row (and its content map, when opened). */
export function opFromRow(row, content) {
  if (!Array.isArray(row) || row.length !== 5) PE("protocol.schema", "op is not a 5-array");
  const [k, entity, hlc, base, fields] = row;
  const kind = typeof k === "number" ? KINDS[k] : undefined;
  if (!kind) PE("protocol.schema", "unknown kind");
  if (!(entity instanceof Uint8Array) || entity.length < 1 || entity.length > 32) PE("protocol.schema", "entity");
  if (!isInt(hlc) || big(hlc) <= 0n || big(hlc) >= 1n << 64n) PE("protocol.schema", "hlc");
  if (base !== null && !(base instanceof Uint8Array && base.length === 16)) PE("protocol.schema", "base");
  checkValues(kind, fields, R);
  if (content !== undefined) checkValues(kind, content, C);
  return { kind, entity, hlc: big(hlc), base, fields, content };
}

/** An op in the vectors' JSON form (fields by name, routing and content together). */
export function opJson(op) {
  const fields = {};
  const all = [...op.fields, ...(op.content || new Map())].sort((a, b) => a[0] - b[0]);
  for (const [tag, v] of all) fields[FIELDS[op.kind][tag][0]] = toTyped(v);
  return { kind: op.kind, entity: toHex(op.entity), hlc: op.hlc, base: op.base && toHex(op.base), fields };
}

// -- §8 batch, §9 decoding order -------------------------------------------------------------
const HEADER = 46;
export function parseBatch(data, limits) {
  if (data.length > limits.max_message) fail("LimitError", "protocol.limit");
  const head = ascii("HBWB");
  if (data.length < 5 || !eq(data.subarray(0, 4), head)) {
    if (data.length < 5 && eq(data.subarray(0, 4), head.subarray(0, Math.min(4, data.length)))) PE("protocol.truncated");
    PE("protocol.magic");
  }
  if (data[4] !== 1) fail("VersionError", "protocol.version");
  if (data.length < HEADER) PE("protocol.truncated");
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (data[5] !== 0) fail("VersionError", "protocol.version");
  const rLen = dv.getUint32(38), sLen = dv.getUint32(42), end = HEADER + rLen + sLen;
  if (data.length < end + 64) PE("protocol.truncated");
  if (data.length > end + 64) PE("protocol.trailing");
  const seq = dv.getBigUint64(22);
  if (seq === 0n) PE("protocol.schema", "seq 0");
  return {
    team: data.subarray(6, 14), device: data.subarray(14, 22), seq, epoch: dv.getUint32(30), dictId: dv.getUint32(34),
    header: data.subarray(0, HEADER), routing: data.subarray(HEADER, HEADER + rLen), sealed: data.subarray(HEADER + rLen, end),
    signed: data.subarray(0, end), signature: data.subarray(end),
  };
}

function section(bytes, f, limits) {
  if (f.dictId !== 0) fail("VersionError", "protocol.version", `dictionary ${f.dictId} is not shipped here`);
  return unpack(decompress(bytes, limits.max_plain), limits);
}

/** §9 in order; returns {frame, ops, routingPlain, contentPlain}. */
export function decodeBatch(data, publicKey, teamKeys, limits, team) {
  const f = parseBatch(data, limits);
  if (team && !eq(f.team, team)) fail("IntegrityError", "integrity.team");
  if (!eq(deviceId(publicKey), f.device)) fail("IntegrityError", "integrity.device");
  if (!edVerify(publicKey, f.signature, f.signed)) fail("IntegrityError", "integrity.signature");
  const secret = teamKeys.get(f.epoch);
  if (!secret) fail("WrongKeyError", "access.wrong_key");
  if (f.dictId !== 0) fail("VersionError", "protocol.version");
  const routingPlain = decompress(f.routing, limits.max_plain);
  const rows = unpack(routingPlain, limits);
  if (!Array.isArray(rows) || rows.length === 0) PE("protocol.schema", "routing is not a non-empty array");
  if (rows.length > limits.max_ops) fail("LimitError", "protocol.limit");
  if (f.sealed.length < 28) PE("protocol.truncated");
  const plain = aeadOpen(hkdf(secret, "hbw-sync batch content v1"), f.sealed, concat(f.header, f.routing));
  if (!plain) fail("IntegrityError", "integrity.aead");
  const contentPlain = decompress(plain, limits.max_plain);
  const content = unpack(contentPlain, limits);
  if (!Array.isArray(content) || content.length !== rows.length) PE("protocol.schema", "content does not match routing");
  let last = 0n;
  const ops = rows.map((row, i) => {
    const op = opFromRow(row, content[i]);
    if (op.hlc <= last) PE("protocol.order");
    last = op.hlc;
    return op;
  });
  return { frame: f, ops, routingPlain, contentPlain, contentZstd: plain };
}

export function decodeInputs(dec) {
  const keys = new Map(dec.team_keys.map((k) => [Number(k.epoch), hex(k.secret)]));
  return [hex(dec.public_key), keys, { ...DEFAULT_LIMITS, ...(dec.limits || {}) }, hex(dec.team)];
}

function checkBatches(d) {
  const t = new Tally("batches.json");
  for (const v of d.batches) {
    const [pub, keys, limits, team] = decodeInputs(v.decode);
    let r;
    try {
      r = decodeBatch(hex(v.batch), pub, keys, limits, team);
    } catch (e) {
      t.check(v.name, false, `refused: ${e.cls} ${e.code} ${e.message}`);
      continue;
    }
    t.check(`${v.name} ops`, same(r.ops.map(opJson), v.inputs.ops));
    t.check(`${v.name} routing_plain`, toHex(r.routingPlain) === v.routing_plain);
    t.check(`${v.name} content_plain`, toHex(r.contentPlain) === v.content_plain);
    t.check(`${v.name} content_zstd`, toHex(r.contentZstd) === v.content_zstd);
    t.check(`${v.name} header`, toHex(r.frame.header) === v.header);
    const secret = keys.get(r.frame.epoch);
    const sealed = aeadSeal(hkdf(secret, "hbw-sync batch content v1"), hex(v.inputs.nonce), r.contentZstd, concat(r.frame.header, r.frame.routing));
    t.check(`${v.name} sealed`, toHex(sealed) === v.sealed);
    t.check(`${v.name} signature`, toHex(r.frame.signature) === v.signature);
  }
  return t;
}

function checkInvalid(d) {
  const t = new Tally("invalid.json");
  for (const v of d.invalid) {
    const [pub, keys, limits, team] = decodeInputs(v.decode);
    t.expectError(v.name, () => decodeBatch(hex(v.batch), pub, keys, limits, team), v.expected_error_class, v.expected_code);
  }
  return t;
}

// -- §12 envelopes ---------------------------------------------------------------------------
const ENV_LIMITS = { ...DEFAULT_LIMITS, max_container: 100000 };
function frameEnvelope(data, type) {
  if (data.length > ENV_LIMITS.max_message) fail("LimitError", "protocol.limit");
  if (data.length < 69 || !eq(data.subarray(0, 3), ascii("HBW"))) PE("protocol.magic");
  if (data[3] !== type.charCodeAt(0)) PE("protocol.magic");
  if (data[4] !== 1) fail("VersionError", "protocol.version");
  return { body: data.subarray(5, data.length - 64), signed: data.subarray(0, data.length - 64), signature: data.subarray(data.length - 64) };
}
export function parseRequest(data) {
  const e = frameEnvelope(data, "Q");
  const body = unpack(e.body, ENV_LIMITS);
  if (!Array.isArray(body) || body.length !== 5) PE("protocol.schema");
  const [dev, time, nonce, action, args] = body;
  if (!(dev instanceof Uint8Array && dev.length === 8) || !isInt(time) || !(nonce instanceof Uint8Array && nonce.length === 16)
    || typeof action !== "string" || !(args instanceof Map) || [...args.keys()].some((k) => typeof k !== "string")) PE("protocol.schema");
  return { ...e, device: dev, time: big(time), nonce, action, args };
}
export function checkFresh(time, now, skew = 600000n) {
  const d = big(time) - big(now);
  if (d > skew || -d > skew) fail("AccessError", "access.clock");
}
export function openResponse(data, relayPublic, nonce) {
  const e = frameEnvelope(data, "R");
  if (!edVerify(relayPublic, e.signature, e.signed)) fail("IntegrityError", "integrity.signature");
  const body = unpack(e.body, ENV_LIMITS);
  if (!Array.isArray(body) || body.length !== 3 || !(body[2] instanceof Map) || !(body[0] instanceof Uint8Array)) PE("protocol.schema");
  if (nonce && !eq(body[0], nonce)) PE("protocol.replay");
  return { nonce: body[0], time: body[1], result: body[2] };
}

function checkEnvelopes(d) {
  const t = new Tally("envelopes.json");
  const byName = {};
  for (const r of d.requests) {
    const data = hex(r.envelope);
    byName[r.name] = r;
    let q;
    try { q = parseRequest(data); } catch (e) { t.check(`request ${r.name}`, false, `${e.code}`); continue; }
    t.check(`request ${r.name} verifies`, edVerify(hex(r.transport_public), q.signature, q.signed));
    t.check(`request ${r.name} body`, toHex(q.body) === r.body_msgpack && toHex(q.signature) === r.signature);
    t.check(`request ${r.name} fields`, toHex(q.device) === r.device_id && q.time === big(r.time_ms) && toHex(q.nonce) === r.nonce
      && q.action === r.action && same(toTyped(q.args), r.args));
  }
  for (const r of d.responses) {
    let s;
    try { s = openResponse(hex(r.envelope), hex(d.relay.public), hex(byName[r.request].nonce)); } catch (e) {
      t.check(`response ${r.name}`, false, `${e.code}`); continue;
    }
    t.check(`response ${r.name} result`, same(toTyped(s.result), r.result) && big(s.time) === big(r.time_ms));
    t.check(`response ${r.name} body`, toHex(hex(r.envelope).subarray(5, -64)) === r.body_msgpack);
    if (r.name === "sync") {
      const roster = s.result.get("roster");
      t.check("sync roster entries carry the role (§16)", roster instanceof Map && [...roster.values()].every(
        (e) => e.length === 5 && ["member", "supervisor"].includes(e[4])));
    }
  }
  for (const c of d.freshness) {
    let code = null;
    try { checkFresh(c.time_ms, c.now_ms); } catch (e) { code = e.code; }
    t.check(`freshness ${c.time_ms} at ${c.now_ms}`, code === c.expected_code);
  }
  for (const v of d.invalid) {
    const data = hex(v.envelope);
    t.expectError(v.name, () => {
      if (v.kind === "request") {
        const q = parseRequest(data);
        checkFresh(q.time, v.now_ms); // the relay's order (§12): freshness, then the signature
        if (!edVerify(hex(v.transport_public), q.signature, q.signed)) fail("IntegrityError", "integrity.signature");
      } else openResponse(data, hex(v.relay_public), hex(v.nonce));
    }, v.expected_error_class, v.expected_code);
  }
  t.notes.push(`relay_order (${d.relay_order.length} vectors, the relay's bounded reading) is not checked here: ` +
    "it is relay behaviour, not what a client must do");
  return t;
}

// -- §18d chunks -----------------------------------------------------------------------------
function checkChunks(d) {
  const t = new Tally("chunks.json");
  const epoch = d.team_key.epoch, secret = hex(d.team_key.secret);
  const idKey = hkdf(secret, "hbw-sync chunk id v1"), sealKey = hkdf(secret, "hbw-sync chunk seal v1");
  t.check("id_key", toHex(idKey) === d.team_key.id_key);
  t.check("seal_key", toHex(sealKey) === d.team_key.seal_key);
  const open = (idHex, sealedHex) => {
    const id = hex(idHex), sealed = hex(sealedHex);
    if (sealed.length < 28) PE("protocol.truncated");
    const body = aeadOpen(sealKey, sealed, concat(ascii("hbw-sync chunk v1\0"), u32(epoch), id));
    if (!body) fail("IntegrityError", "integrity.aead");
    const plain = body[0] === 0 ? body.subarray(1) : body[0] === 1 ? decompress(body.subarray(1), 262144) : PE("protocol.chunk");
    const mac = hmac(idKey, plain);
    if (!eq(mac.subarray(0, 16), id)) fail("IntegrityError", "integrity.chunk");
    return plain;
  };
  for (const c of d.chunks) {
    let plain;
    try { plain = open(c.id, c.sealed); } catch (e) { t.check(`chunk ${c.name}`, false, `${e.code}`); continue; }
    t.check(`chunk ${c.name} opens`, toHex(plain) === c.plain);
    t.check(`chunk ${c.name} nonce`, eq(hex(c.sealed).subarray(0, 12), hmac(idKey, plain).subarray(16, 28)));
  }
  const file = concat(...d.chunks.filter((c) => d.manifest.ids.includes(c.id)).map((c) => hex(c.plain)));
  t.check("manifest file", d.manifest.ids.length > 0 && (toHex(file) === d.manifest.file || d.manifest.ids.length !== d.chunks.length));
  for (const v of d.invalid_chunks || []) {
    if (!v.sealed || !v.id) continue;
    t.expectError(`invalid chunk ${v.name}`, () => open(v.id, v.sealed), v.expected_error, v.expected_code);
  }
  t.notes.push("manifests: only their chunks are rebuilt here; invalid_manifests are not checked");
  return t;
}

// -- sync.json: a round trip with real batches (§16, §13a) ------------------------------------
function checkSync(d) {
  const t = new Tally("sync.json");
  const relayPub = hex(d.meta.relay_public), team = hex(d.meta.team);
  let q, r;
  try {
    q = parseRequest(hex(d.request.envelope));
    t.check("request verifies", edVerify(hex(d.meta.transport_public), q.signature, q.signed) && same(toTyped(q.args), d.request.args));
    r = openResponse(hex(d.response.envelope), relayPub, q.nonce).result;
  } catch (e) { t.check("round trip", false, `${e.code}`); return t; }
  t.check("response result", same(toTyped(r), d.response.result));
  const roster = r.get("roster");
  t.check("roster entries carry the role", [...roster.values()].every((e) => e.length === 5 && ["member", "supervisor"].includes(e[4])));
  // reads (§16): beside the roster, for exactly its devices, uint32 bit sets; the request declares its own
  const reads = r.get("reads");
  t.check("reads names the roster's devices with uint32 values", reads instanceof Map && reads.size === roster.size
    && [...reads.keys()].every((k) => k.length === 8 && [...roster.keys()].some((d) => eq(d, k)))
    && [...reads.values()].every((v) => big(v) >= 0n && big(v) <= 0xffffffffn));
  t.check("the request declares what it reads", q.args.has("reads") && big(q.args.get("reads")) <= 0xffffffffn);
  t.check("ack of the sent batch", r.get("acks").length === 1 && big(r.get("acks")[0][0]) === 5n);
  const relayId = deviceId(relayPub);
  for (const [i, [rseq, dev, rcv, data]] of r.get("batches").entries()) {
    const a = d.apply[i];
    // the key that verifies it: the pinned relay key for the relay's own batches, else the roster's author key
    const fromRelay = eq(dev, relayId);
    const pub = fromRelay ? relayPub : roster.get([...roster.keys()].find((k) => eq(k, dev)))?.[1];
    const rank = fromRelay ? 0 : roster.get([...roster.keys()].find((k) => eq(k, dev)))[4] === "supervisor" ? 2 : 1;
    const keys = new Map([[fromRelay ? 0 : 1, fromRelay ? new Uint8Array(32) : hex(a.team_secret)]]);
    try {
      const b = decodeBatch(data, pub, keys, DEFAULT_LIMITS, team);
      if (fromRelay && !b.ops.every((op) => op.kind === "task" && [...op.fields.keys()].join() === "1" && op.content.size === 0))
        fail("IntegrityError", "integrity.relay_scope");
      t.check(`batch ${rseq} applies`, big(rseq) === big(a.rseq) && big(rcv) === big(a.received_ms) && rank === a.rank
        && toHex(pub) === a.public_key && same(b.ops.map(opJson), a.ops));
    } catch (e) { t.check(`batch ${rseq}`, false, `${e.code} ${e.message}`); }
  }
  return t;
}

export const CHECKERS = {
  "sync.json": checkSync,
  "batches.json": checkBatches, "invalid.json": checkInvalid, "envelopes.json": checkEnvelopes, "chunks.json": checkChunks,
  "snapshot.json": checkSnapshot, "merge.json": checkMerge, "policy.json": checkPolicy, ...checkKeyed,
};
