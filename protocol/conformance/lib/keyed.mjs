// enroll.json (§14, §15), bundles.json (§18b), approval.json (§14b), delta.json (§18c).
import crypto from "node:crypto";
import {
  aeadOpen, ascii, big, concat, deviceId, edVerify, eq, fail, hex, hkdf, keyId, PE, Tally, toHex, u32, x25519, x25519Public,
} from "./base.mjs";
import { same, toTyped, unpack } from "./msgpack.mjs";
import { openResponse, parseRequest } from "./wire.mjs";

// -- invites (§14): "hbw1-" || lowercase(base32(msgpack([...]))) -----------------------------------
const B32 = "abcdefghijklmnopqrstuvwxyz234567";
function base32Decode(s) {
  let bits = 0, val = 0;
  const out = [];
  for (const ch of s) {
    const i = B32.indexOf(ch);
    if (i < 0) fail("UsageError", "usage", "not base32");
    val = (val << 5) | i; bits += 5;
    if (bits >= 8) { out.push((val >>> (bits - 8)) & 0xff); bits -= 8; }
  }
  if (bits >= 5 || (val & ((1 << bits) - 1))) fail("UsageError", "usage", "bad base32 padding");
  return new Uint8Array(out);
}
export function decodeInvite(text) {
  const t = text.replace(/\s+/g, "").toLowerCase();
  if (!t.startsWith("hbw1-")) fail("UsageError", "usage", "prefix");
  let v;
  try { v = unpack(base32Decode(t.slice(5))); } catch (e) { if (e.code === "usage") throw e; fail("UsageError", "usage", "msgpack"); }
  if (!Array.isArray(v) || v.length < 6 || v.length > 8) fail("UsageError", "usage", "shape");
  const [url, relay, team, token, member, role, tls, secret] = v;
  const binN = (b, n) => b instanceof Uint8Array && b.length === n;
  if (typeof url !== "string" || !binN(relay, 32) || !binN(team, 8) || !(token instanceof Uint8Array) || typeof member !== "string"
    || !["member", "supervisor"].includes(role) || !(tls == null || binN(tls, 32)) || !(secret === undefined || binN(secret, 16)))
    fail("UsageError", "usage", "fields");
  return { url, relay_public: toHex(relay), team: toHex(team), token: toHex(token), member, role };
}

const GRANT_LABEL = ascii("hbw-sync key grant v1\0");
export function openGrant(grant, myDevice, myX25519Private, granterPublic) {
  if (grant.length < 74) PE("protocol.truncated");
  const body = grant.subarray(0, grant.length - 64), sig = grant.subarray(grant.length - 64);
  if (!edVerify(granterPublic, sig, concat(GRANT_LABEL, myDevice, body))) fail("IntegrityError", "integrity.signature");
  const b = unpack(body);
  if (!Array.isArray(b) || b.length !== 5) PE("protocol.schema");
  const [epoch, kid, eph, sealed] = b;
  const shared = x25519(myX25519Private, eph);
  const key = hkdf(shared, GRANT_LABEL, concat(eph, x25519Public(myX25519Private)));
  const secret = aeadOpen(key, sealed, concat(GRANT_LABEL, myDevice, u32(epoch), kid));
  if (!secret) fail("IntegrityError", "integrity.aead");
  if (!eq(keyId(secret, epoch), kid)) fail("IntegrityError", "integrity.grant");
  return { epoch, secret };
}

function checkEnroll(d) {
  const t = new Tally("enroll.json");
  for (const v of d.invites) {
    let inv;
    try { inv = decodeInvite(v.text); } catch (e) { t.check(`invite ${v.member}`, false, e.code); continue; }
    t.check(`invite ${v.member}`, ["url", "relay_public", "team", "token", "member", "role"].every((k) => inv[k] === v[k]));
    const bytes = base32Decode(v.text.slice(5));
    t.check(`invite ${v.member} msgpack`, toHex(bytes) === v.msgpack);
    t.check(`invite ${v.member} token hash`, !v.token_hash || toHex(crypto.createHash("sha256").update(concat(ascii("hbw-sync invite token v1\0"), hex(v.token))).digest()) === v.token_hash);
  }
  const sp = decodeInvite(d.invite_spaced.text), target = d.invites[d.invite_spaced.decodes_to];
  t.check("invite with spaces and upper case", sp.token === target.token && sp.member === target.member);
  for (const v of d.invalid_invites) t.expectError(`invalid invite ${v.name}`, () => decodeInvite(v.text), v.expected_error_class, v.expected_code);
  const g = d.grant;
  const eph = hex(g.ephemeral_private);
  t.check("grant ephemeral_public", toHex(x25519Public(eph)) === g.ephemeral_public);
  t.check("grant shared", toHex(x25519(eph, hex(g.recipient_x25519_public))) === g.shared);
  t.check("grant key", toHex(hkdf(hex(g.shared), GRANT_LABEL, hex(g.salt))) === g.grant_key);
  t.check("grant aad", toHex(concat(GRANT_LABEL, hex(g.recipient_device_id), u32(g.team_key.epoch), hex(g.team_key.key_id))) === g.aad);
  const x2 = d.devices.find((x) => x.name === g.recipient || x.device === g.recipient);
  const granter = d.devices.find((x) => x.name === g.granter || x.device === g.granter);
  if (x2 && granter) {
    try {
      const r = openGrant(hex(g.grant), hex(g.recipient_device_id), hex(x2.x25519_private), hex(granter.author_public || granter.public_key));
      t.check("grant opens to the team key", toHex(r.secret) === g.team_key.secret && Number(r.epoch) === g.team_key.epoch);
    } catch (e) { t.check("grant opens", false, `${e.code}`); }
  } else t.check("grant devices", false, "device keys not found in devices");
  for (const v of d.invalid_grants) {
    const o = v.open;
    t.expectError(`invalid grant ${v.name}`, () => openGrant(hex(v.grant), hex(o.my_device), hex(o.my_x25519_private), hex(o.granter_public)),
      v.expected_error_class, v.expected_code);
  }
  t.notes.push("word_code (§14a, scrypt) is not checked here");
  return t;
}

// -- bundles (§18b) ---------------------------------------------------------------------------
export function openBundle(data, kind, team, recipient, xPriv) {
  if (data.length > 64 * 1024 * 1024) fail("LimitError", "protocol.limit");
  if (data.length < 4 || !eq(data.subarray(0, 3), ascii("HBW")) || !["X", "Y"].includes(String.fromCharCode(data[3]))) PE("protocol.magic");
  if (data.length < 54 + 28) PE("protocol.truncated");
  if (data[4] !== 1 || data[5] !== 0) fail("VersionError", "protocol.version");
  if (String.fromCharCode(data[3]) !== kind) PE("protocol.bundle_type");
  if (!eq(data.subarray(6, 14), team)) fail("IntegrityError", "integrity.team");
  if (!eq(data.subarray(14, 22), recipient)) fail("IntegrityError", "integrity.recipient");
  const eph = data.subarray(22, 54);
  let shared;
  try { shared = x25519(xPriv, eph); } catch { fail("IntegrityError", "integrity.aead"); }
  if (shared.every((b) => b === 0)) fail("IntegrityError", "integrity.aead");
  const key = hkdf(shared, "hbw-sync bundle v1", concat(eph, x25519Public(xPriv)));
  const env = aeadOpen(key, data.subarray(54), data.subarray(0, 54));
  if (!env) fail("IntegrityError", "integrity.aead");
  return env;
}

function checkBundles(d) {
  const t = new Tally("bundles.json");
  const relayX = hkdf(hex(d.relay.seed), "hbw-sync relay x25519 v1");
  t.check("relay x25519 private", toHex(relayX) === d.relay.x25519_private);
  t.check("relay x25519 public", toHex(x25519Public(relayX)) === d.relay.x25519_public);
  const team = hex(d.team);
  const req = d.request, rep = d.reply;
  for (const [name, b, priv] of [["request", req, relayX], ["reply", rep, hex(d.device.x25519_private)]]) {
    t.check(`${name} shared`, toHex(x25519(hex(b.ephemeral_private), hex(b.recipient_x25519_public))) === b.shared);
    t.check(`${name} key`, toHex(hkdf(hex(b.shared), "hbw-sync bundle v1", hex(b.salt))) === b.key);
    try {
      const env = openBundle(hex(b.bundle), b.kind, team, hex(b.recipient), priv);
      t.check(`${name} opens to its envelope`, toHex(env) === b.envelope);
    } catch (e) { t.check(`${name} opens`, false, `${e.code}`); }
  }
  try {
    const q = parseRequest(hex(req.envelope));
    t.check("request envelope verifies", edVerify(hex(d.device.transport_public), q.signature, q.signed) && same(toTyped(q.args), req.envelope_args));
    const r = openResponse(hex(rep.envelope), hex(d.relay.public), q.nonce);
    t.check("reply answers the request", r.result instanceof Map);
  } catch (e) { t.check("bundle envelopes", false, `${e.code}`); }
  for (const v of d.invalid) {
    const o = v.open;
    t.expectError(`invalid ${v.name}`, () => openBundle(hex(v.bundle), o.kind, hex(o.team), hex(o.recipient), hex(o.x25519_private)),
      v.expected_error_class, v.expected_code);
  }
  t.notes.push(`invalid_inner (${d.invalid_inner.length}): relay behaviour, not checked here`);
  return t;
}

// -- admission (§14b) ----------------------------------------------------------------------------
const stretch = (secret, authorPub, sc) => new Uint8Array(crypto.scryptSync(secret, concat(ascii("hbw-sync enrollment secret v1\0"), authorPub), 32,
  { N: sc.n, r: sc.r, p: sc.p, maxmem: 64 * 1024 * 1024 }));
const proofOf = (k, dv) => new Uint8Array(crypto.createHmac("sha256", k).update(concat(ascii("hbw-sync enrollment proof v1\0"),
  hex(dv.device_id), hex(dv.author_public), hex(dv.transport_public), hex(dv.x25519_public))).digest());
const WELCOME_AAD = (team) => concat(ascii("hbw-sync welcome v1\0"), team);

function openCodeWelcome(data, k, xPriv, team) {
  if (data.length < 32 + 28) PE("protocol.schema");
  const E = data.subarray(0, 32);
  const key = hkdf(concat(x25519(xPriv, E), k), ascii("hbw-sync welcome v1\0code"), concat(E, x25519Public(xPriv)));
  const plain = aeadOpen(key, data.subarray(32), WELCOME_AAD(team));
  if (!plain) fail("IntegrityError", "integrity.aead");
  return { key, plain };
}
function verifyApproval(rec, approverPub) {
  if (rec.length < 65) PE("protocol.schema");
  const body = rec.subarray(0, rec.length - 64);
  let b;
  try { b = unpack(body); } catch { PE("protocol.schema"); }
  if (!Array.isArray(b) || b.length !== 7 || !(b[5] instanceof Uint8Array)) PE("protocol.schema");
  if (!eq(deviceId(approverPub), b[5])) fail("IntegrityError", "integrity.signature", "names another approver");
  if (!edVerify(approverPub, rec.subarray(rec.length - 64), concat(ascii("hbw-sync approval v1\0"), body))) fail("IntegrityError", "integrity.signature");
  return b;
}

function checkApproval(d) {
  const t = new Tally("approval.json");
  const dv = d.device, team = hex(d.team), c = d.code;
  const kc = stretch(ascii(c.digits), hex(dv.author_public), d.scrypt);
  t.check("code stretched key", toHex(kc) === c.stretched);
  t.check("code proof", toHex(proofOf(kc, dv)) === c.proof);
  try {
    const w = openCodeWelcome(hex(c.welcome), kc, hex(c.device_x25519_private), team);
    t.check("code welcome key", toHex(w.key) === c.welcome_key);
    const [granter, , keys] = unpack(w.plain);
    t.check("code welcome holds the team keys", toHex(granter) === d.supervisor.device_id
      && same(keys.map(([e, s]) => ({ epoch: e, secret: toHex(s) })), d.team_keys));
  } catch (e) { t.check("code welcome opens", false, `${e.code}`); }
  const inv = d.invite, ks = stretch(hex(inv.secret), hex(dv.author_public), d.scrypt);
  t.check("invite proof", toHex(proofOf(ks, dv)) === inv.proof);
  const wk = hkdf(hex(inv.secret), ascii("hbw-sync welcome v1\0invite"));
  t.check("invite welcome key", toHex(wk) === inv.welcome_key);
  t.check("invite welcome opens", aeadOpen(wk, hex(inv.welcome), WELCOME_AAD(team)) !== null);
  t.check("invite text carries the secret", decodeInvite(inv.text) && toHex(base32Decode(inv.text.slice(5))).endsWith(inv.secret));
  try {
    const b = verifyApproval(hex(d.approval.record), hex(d.supervisor.author_public));
    t.check("approval record", toHex(b[0]) === dv.device_id && b[3] === d.approval.member && b[4] === d.approval.role);
  } catch (e) { t.check("approval record", false, `${e.code}`); }
  for (const v of d.invalid) {
    const o = v.open;
    const fn = v.kind === "welcome"
      ? () => openCodeWelcome(hex(v.data), stretch(ascii(o.code), hex(o.author_public), d.scrypt), hex(o.x25519_private), hex(o.team))
      : () => verifyApproval(hex(v.data), hex(o.approver_public));
    t.expectError(`invalid ${v.name}`, fn, v.expected_error, v.expected_code);
  }
  t.notes.push("messages (the enroll and invite request envelopes) are not re-checked here: envelopes.json covers the layout");
  return t;
}

export const checkKeyed = { "enroll.json": checkEnroll, "bundles.json": checkBundles, "approval.json": checkApproval };
