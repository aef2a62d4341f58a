// evidence.json: evidence files an auditor verifies offline (PROTOCOL.md §24), from the spec:
// the signed frame (§24 table), relay receipts (§24.1), the file (§24.2) and the verification
// algorithm with its reason codes (§24.4). Ed25519 through node:crypto.
import { ascii, big, concat, deviceId, edVerify, eq, fail, hex, PE, sha256, Tally, toHex, WireError } from "./base.mjs";
import { DEFAULT_LIMITS, isInt, same, unpack } from "./msgpack.mjs";
import { decodeBatch, FIELDS, opFromRow, parseBatch } from "./wire.mjs";
import { decompress } from "./zstd.mjs";

const MAX_FILE = 2 ** 30, FRAME = 13, SIG = 64;
const LIMITS = { max_message: MAX_FILE, max_plain: MAX_FILE, max_ops: 1000000, max_container: 1000000, max_str: 1 << 20 };
const U63 = (v) => isInt(v) && big(v) >= 0n && big(v) < 1n << 63n;
const BIN = (lo, hi) => (v) => v instanceof Uint8Array && v.length >= lo && v.length <= hi;
const STR = (max) => (v) => typeof v === "string" && [...v].length <= max;
const OPT = (f) => (v) => v === null || f(v);
const TUPLE = (...fs) => (v) => Array.isArray(v) && v.length === fs.length && fs.every((f, i) => f(v[i]));
const LIST = (f, max) => (v) => {
  if (!Array.isArray(v)) return false;
  if (v.length > max) fail("LimitError", "protocol.limit", "list too long");
  return v.every(f);
};
const SCOPE = TUPLE(OPT(STR(32)), OPT(BIN(1, 32)), OPT(U63), OPT(U63));
const RECEIPT = TUPLE(U63, BIN(8, 8), (v) => U63(v) && big(v) >= 1n, U63, BIN(32, 32), (v) => v === true || v === false);
const ENROLLED = TUPLE(BIN(8, 8), STR(32), STR(16), BIN(32, 32), U63, OPT(U63));
const RECEIPTS = TUPLE(BIN(8, 8), U63, SCOPE, U63, U63, LIST(RECEIPT, 1000000), LIST(ENROLLED, 100000));
const EVIDENCE = TUPLE(BIN(0, MAX_FILE), BIN(32, 32), LIST(BIN(0, DEFAULT_LIMITS.max_message), 200000),
  LIST(BIN(0, 512), 100000), BIN(8, 8), U63);

/** §24 frame: magic "HBW", type, version 1, u64 body length, body, Ed25519 signature. */
function unframe(data, type, spec) {
  if (data.length > MAX_FILE) fail("LimitError", "protocol.limit");
  const magic = concat(ascii("HBW"), ascii(type));
  if (data.length < FRAME) {
    if (eq(data.subarray(0, 4), magic.subarray(0, Math.min(4, data.length)))) PE("protocol.truncated");
    PE("protocol.magic");
  }
  if (!eq(data.subarray(0, 4), magic)) PE("protocol.magic");
  if (data[4] !== 1) fail("VersionError", "protocol.version");
  const n = new DataView(data.buffer, data.byteOffset, data.byteLength).getBigUint64(5);
  if (BigInt(data.length) < BigInt(FRAME + SIG) + n) PE("protocol.truncated");
  if (BigInt(data.length) > BigInt(FRAME + SIG) + n) PE("protocol.trailing");
  const end = FRAME + Number(n);
  const body = data.subarray(FRAME, end);
  if (!spec) return { signed: data.subarray(0, end), signature: data.subarray(end) }; // framing only
  let value;
  try {
    value = unpack(body, LIMITS);
  } catch (e) {
    if (e instanceof WireError && e.code === "protocol.limit") throw e;
    PE("protocol.schema", `body: ${e.message}`);
  }
  if (!spec(value)) PE("protocol.schema", "body does not have §24's types");
  return { signed: data.subarray(0, end), value, signature: data.subarray(end) };
}

/** §14b approval record: [device, author_pub, x25519_pub, member, role, approver, time_ms] ‖ signature. */
function parseApproval(rec) {
  if (rec.length <= SIG) return null;
  let b;
  try { b = unpack(rec.subarray(0, rec.length - SIG)); } catch { return null; }
  if (!TUPLE(BIN(8, 8), BIN(32, 32), BIN(32, 32), (v) => typeof v === "string", (v) => ["member", "supervisor"].includes(v),
    BIN(8, 8), isInt)(b) || !eq(deviceId(b[1]), b[0])) return null;
  return { device: b[0], authorPub: b[1], member: b[3], role: b[4], approver: b[5], time: b[6], body: rec.subarray(0, rec.length - SIG), sig: rec.subarray(rec.length - SIG) };
}

/** The batch's ops: routing only, or opened with the team key of its epoch (§9). */
function opsOf(data, f, pub, keys, team) {
  if (keys && keys.has(f.epoch)) return { ops: decodeBatch(data, pub, keys, DEFAULT_LIMITS, team).ops, opened: true };
  if (f.dictId !== 0) fail("VersionError", "protocol.version");
  const rows = unpack(decompress(f.routing, DEFAULT_LIMITS.max_plain), DEFAULT_LIMITS);
  if (!Array.isArray(rows) || rows.length === 0) PE("protocol.schema");
  return { ops: rows.map((row) => opFromRow(row)), opened: false };
}

const plain = (v) => (v instanceof Uint8Array ? toHex(v) : v);

/** §24.4, steps 1-8: {report, problems: [[code, rseq|null]]}, or throws for a refusal. */
export function verifyEvidence(data, relayPub, keys) {
  const ev = unframe(data, "E", EVIDENCE);                                        // 1
  const [receiptsRaw, filePub, batches, approvals, exporterId] = ev.value;
  if (relayPub && !eq(relayPub, filePub)) fail("IntegrityError", "integrity.relay_key"); // 2
  const rc = unframe(receiptsRaw, "M", null); // framing, then the signature, then the types (§24.4 step 3)
  if (!edVerify(filePub, rc.signature, rc.signed)) fail("IntegrityError", "integrity.receipts"); // 3
  const rcv = unframe(receiptsRaw, "M", RECEIPTS).value;
  const [team, , scope, first, last, receipts, roster] = rcv;
  const problems = [];
  const byDevice = new Map(roster.map((e) => [toHex(e[0]), e]));
  const approved = new Map();
  for (const raw of approvals) {                                                  // 4
    const a = parseApproval(raw);
    const signer = a && byDevice.get(toHex(a.approver));
    const enrolled = a && byDevice.get(toHex(a.device));
    if (!a || !signer || !eq(deviceId(signer[3]), a.approver)
      || !edVerify(signer[3], a.sig, concat(ascii("hbw-sync approval v1\0"), a.body))
      || (enrolled && !eq(enrolled[3], a.authorPub))) {
      problems.push(["integrity.approval", null]);
      continue;
    }
    const k = toHex(a.device);
    if (!approved.has(k)) approved.set(k, []);
    approved.get(k).push({ device: toHex(a.approver), member: signer[1], time_ms: a.time, role: a.role });
  }
  let prev = -1n;
  for (const r of receipts) {                                                     // 5
    const rseq = big(r[0]);
    if (rseq <= prev || rseq < big(first) || rseq > big(last)) problems.push(["integrity.order", r[0]]);
    if (rseq > prev) prev = rseq;
  }
  const wanted = new Map(receipts.map((r) => [`${toHex(r[1])}/${r[2]}`, r]));
  const seen = new Set(), entries = [];
  prev = -1n;
  for (const b of batches) {                                                      // 6
    let f;
    try { f = parseBatch(b, DEFAULT_LIMITS); } catch (e) { problems.push([e.code, null]); continue; }
    const where = `${toHex(f.device)}/${f.seq}`, r = wanted.get(where);
    if (!r) { problems.push(["integrity.unlisted", null]); continue; }
    if (seen.has(where)) { problems.push(["integrity.order", r[0]]); continue; }
    seen.add(where);
    if (big(r[0]) < prev) problems.push(["integrity.order", r[0]]);
    if (big(r[0]) > prev) prev = big(r[0]);
    if (!eq(f.team, team)) { problems.push(["integrity.team", r[0]]); continue; }
    if (!eq(sha256(b), r[4])) { problems.push(["integrity.receipt", r[0]]); continue; }
    const who = byDevice.get(toHex(f.device));
    if (!who) { problems.push(["integrity.unknown_device", r[0]]); continue; }
    if (!edVerify(who[3], f.signature, f.signed)) { problems.push(["integrity.signature", r[0]]); continue; }
    let got;
    try { got = opsOf(b, f, who[3], keys, team); } catch (e) { problems.push([e.code, r[0]]); continue; }
    if (who[5] !== null) {
      const late = got.ops.reduce((m, op) => (op.hlc >> 16n > m ? op.hlc >> 16n : m), big(r[3]));
      if (late > big(who[5])) problems.push(["integrity.revoked", r[0]]);
    }
    entries.push({
      rseq: r[0], member: who[1], device: toHex(f.device), seq: f.seq, received_ms: r[3],
      changes: got.ops.map((op) => {
        const fields = {};
        for (const [tag, v] of [...op.fields, ...(got.opened ? op.content : [])]) fields[FIELDS[op.kind][tag][0]] = plain(v);
        return { kind: op.kind, entity: toHex(op.entity), time_ms: op.hlc >> 16n, fields };
      }),
    });
  }
  for (const r of receipts) if (r[5] && !seen.has(`${toHex(r[1])}/${r[2]}`)) problems.push(["integrity.missing", r[0]]); // 7
  const exporter = byDevice.get(toHex(exporterId));                             // 8
  if (!exporter) problems.push(["integrity.exporter", null]);
  else if (!edVerify(exporter[3], ev.signature, ev.signed)) problems.push(["integrity.signature", null]);
  const report = {
    ok: problems.length === 0, exporter: exporter ? exporter[1] : toHex(exporterId).slice(0, 8),
    first_rseq: first, last_rseq: last,
    scope: { member: scope[0], task: scope[1] && toHex(scope[1]), since_ms: scope[2], until_ms: scope[3] },
    devices: roster.map((e) => ({ device: toHex(e[0]), member: e[1], role: e[2], enrolled_ms: e[4], revoked_ms: e[5],
      approved_by: approved.get(toHex(e[0])) || [] })),
    entries,
  };
  return { report, problems };
}

export function checkEvidence(d) {
  const t = new Tally("evidence.json");
  const keys = new Map(d.keys.team_keys.map((k) => [Number(k.epoch), hex(k.secret)]));
  for (const v of d.valid) {
    for (const [label, ks, want] of [["", null, v.expect], [" with team key", keys, v.expect_with_team_key]]) {
      let got;
      try {
        got = verifyEvidence(hex(v.file), hex(v.relay_public), ks);
      } catch (e) {
        t.check(`valid ${v.name}${label}`, false, e instanceof WireError ? `refused ${e.cls} ${e.code}` : `crashed: ${e.stack}`);
        continue;
      }
      t.check(`valid ${v.name}${label} holds`, got.problems.length === 0, JSON.stringify(got.problems));
      const { content_shown: shown, ...rest } = want;
      t.check(`valid ${v.name}${label} report`, same(got.report, rest), JSON.stringify(got.report, (k, x) => (typeof x === "bigint" ? Number(x) : x)).slice(0, 400));
      t.check(`valid ${v.name}${label} content shown`, shown === (ks !== null));
    }
  }
  for (const v of d.invalid) {
    const run = () => verifyEvidence(hex(v.file), hex(v.relay_public), null);
    if (v.outcome === "refused") { t.expectError(`invalid ${v.name}`, run, v.expected_error, v.expected_code); continue; }
    let got;
    try { got = run(); } catch (e) {
      t.check(`invalid ${v.name}`, false, e instanceof WireError ? `refused ${e.cls} ${e.code}` : `crashed: ${e.stack}`);
      continue;
    }
    const codes = got.problems.map((p) => p[0]), rseqs = got.problems.map((p) => (p[1] === null ? null : Number(p[1])));
    t.check(`invalid ${v.name} codes`, same(codes, v.expected_codes), `got ${codes}, want ${v.expected_codes}`);
    t.check(`invalid ${v.name} rseqs`, same(rseqs, v.problem_rseqs), `got ${rseqs}, want ${v.problem_rseqs}`);
  }
  return t;
}
