// keys.json, hlc.json and zstd.json: derivations and rules that need no message layout.
import { big, deviceId, edPublic, hex, hkdf, keyId, Tally, eq, toHex, WireError } from "./base.mjs";
import { decompress } from "./zstd.mjs";
import crypto from "node:crypto";

/** bit -> outcome ("accept:SHA256" or the error code) for every one-bit flip of a frame. */
function flipOutcomes(frame, cap) {
  const out = new Map();
  for (let bit = 0; bit < frame.length * 8; bit++) {
    const bad = frame.slice();
    bad[bit >> 3] ^= 1 << (bit & 7);
    const got = read(bad, cap);
    out.set(bit, got.expected === "accept" ? "accept:" + sha(got.out) : got.expected === "reject" ? got.code : "crash:" + got.code);
  }
  return out;
}

export function checkKeys(d) {
  const t = new Tally("keys.json");
  for (const dev of d.devices) {
    const pub = edPublic(hex(dev.seed));
    t.check(`${dev.name} public`, toHex(pub) === dev.public_key);
    t.check(`${dev.name} id`, toHex(deviceId(pub)) === dev.device_id);
  }
  for (const k of d.team_keys) {
    t.check(`epoch ${k.epoch} key id`, toHex(keyId(hex(k.secret), k.epoch)) === k.key_id);
    t.check(`epoch ${k.epoch} content key`, toHex(hkdf(hex(k.secret), "hbw-sync batch content v1")) === k.content_key);
  }
  return t;
}

// §4, with BigInt throughout; a refused argument is "ValueError" in the vectors.
const MS_MAX = (1n << 48n) - 1n;
const clamp = (x, lo, hi) => (x < lo ? lo : x > hi ? hi : x);
function pack(ms, l) {
  ms = big(ms); l = big(l);
  if (ms < 0n || ms > MS_MAX || l < 0n || l > 65535n) throw new RangeError("ValueError");
  return (ms << 16n) | l;
}
const skewBound = (now, s = 600000) => pack(clamp(big(now) + big(s ?? 600000), 0n, MS_MAX), 65535);
const HLC = {
  pack: (a) => pack(a.ms, a.logical),
  unpack: (a) => { const h = big(a.ts); if (h < 0n || h >= 1n << 64n) throw new RangeError("ValueError"); return [h >> 16n, h & 0xffffn]; },
  skew_bound: (a) => skewBound(a.now_ms, a.max_skew_ms),
  tick: (a) => {
    const next = big(a.last) + 1n, now = pack(clamp(big(a.now_ms), 0n, MS_MAX), 0);
    const v = now > next ? now : next;
    if (v >= 1n << 64n) throw new RangeError("ValueError");
    return v;
  },
  observe: (a) => {
    const b = skewBound(a.now_ms, a.max_skew_ms), r = big(a.remote) < b ? big(a.remote) : b;
    return big(a.last) > r ? big(a.last) : r;
  },
  effective: (a) => {
    if (a.received_ms == null) return big(a.ts);
    const b = skewBound(a.received_ms, a.max_skew_ms);
    return big(a.ts) < b ? big(a.ts) : b;
  },
};

export function checkHlc(d) {
  const t = new Tally("hlc.json");
  for (const [i, c] of d.cases.entries()) {
    const name = `${i} ${c.fn} (${c.note || ""})`;
    if (!(c.fn in HLC)) { t.check(name, false, "unknown function"); continue; }
    let got;
    try {
      got = HLC[c.fn](c.args);
    } catch (e) {
      got = e instanceof RangeError ? "ValueError" : `crash ${e}`;
    }
    const want = c.expected;
    const same = Array.isArray(want) ? Array.isArray(got) && want.every((w, j) => big(w) === big(got[j]))
      : typeof want === "string" ? got === want : typeof got === "bigint" && got === big(want);
    t.check(name, same, `got ${got}, want ${want}`);
  }
  return t;
}

const sha = (b) => crypto.createHash("sha256").update(b).digest("hex");

function read(frame, cap) {
  try {
    const out = decompress(frame, cap);
    return { expected: "accept", out };
  } catch (e) {
    if (!(e instanceof WireError)) return { expected: "crash", code: String(e) };
    return { expected: "reject", cls: e.cls, code: e.code };
  }
}

export function checkZstd(d) {
  const t = new Tally("zstd.json");
  for (const c of d.cases) {
    const got = read(hex(c.frame), c.cap);
    if (c.expected === "accept")
      t.check(`case ${c.name}`, got.expected === "accept" && sha(got.out) === c.plain_sha256, JSON.stringify({ ...got, out: undefined }));
    else t.check(`case ${c.name}`, got.expected === "reject" && got.code === c.expected_code && got.cls === c.expected_error,
      `got ${got.expected} ${got.cls} ${got.code}, want ${c.expected_error} ${c.expected_code}`);
  }
  const letters = d.meta.letters;
  for (const base of d.bases) {
    const frame = hex(base.frame), labels = d.flips[base.name];
    t.check(`base ${base.name}`, labels.length === frame.length * 8 && eq(read(frame, d.meta.cap).out || [], hex(base.plain)));
    const plainSha = sha(hex(base.plain));
    for (const [bit, got] of flipOutcomes(frame, d.meta.cap)) {
      const want = letters[labels[bit]];
      const ok = want === "accept" ? got === "accept:" + plainSha : got === want;
      t.check(`flip ${base.name} bit ${bit}`, ok, `got ${got}, want ${want}`);
    }
  }
  return t;
}
