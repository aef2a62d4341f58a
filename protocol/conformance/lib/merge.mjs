// merge.json (PROTOCOL.md §11): stamps, LWW, APPEND and POLICY registers, in many orders.
import { big, concat, hex, Tally, toHex, u64 } from "./base.mjs";
import { same } from "./msgpack.mjs";
import { byMerge } from "./fields.mjs";

const S = 600000n, MS_MAX = (1n << 48n) - 1n;
const effective = (ts, rcv) => {
  if (rcv == null) return ts;
  let ms = big(rcv) + S;
  if (ms > MS_MAX) ms = MS_MAX;
  const b = (ms << 16n) | 65535n;
  return ts < b ? ts : b;
};
const POLICY = byMerge("POLICY"), APPEND = byMerge("APPEND"); // from ../fields.json
const cmpBytes = (a, b) => Buffer.compare(Buffer.from(a, "hex"), Buffer.from(b, "hex"));
const cmpStamp = (a, b) => (a.ts !== b.ts ? (a.ts < b.ts ? -1 : 1) : cmpBytes(a.op_id, b.op_id));
const cmpKeys = (a, b) => { for (let i = 0; i < a.length; i++) { const c = typeof a[i] === "string" ? cmpBytes(a[i], b[i]) : a[i] < b[i] ? -1 : a[i] > b[i] ? 1 : 0; if (c) return c; } return 0; };

/** The state of every entity after applying ``items`` ({device_id, received_ms, op, rank}) in the given order. */
export function fold(items) {
  const states = new Map();
  for (const { device_id, received_ms, op, rank = 1 } of items) {
    const ts = effective(big(op.hlc), received_ms), op_id = toHex(concat(u64(op.hlc), hex(device_id)));
    const stamp = { ts, op_id };
    const key = `${op.kind}:${op.entity}`;
    const st = states.get(key) || { kind: op.kind, entity: op.entity, lww: {}, append: {}, hist: {}, head: null };
    for (const [name, value] of Object.entries(op.fields)) {
      if ((APPEND[op.kind] || []).includes(name)) (st.append[name] ||= {})[op_id] = value;
      else if ((POLICY[op.kind] || []).includes(name)) (st.hist[name] ||= {})[op_id] = [value, ts, op.base ? big("0x" + op.base.slice(0, 16)) : 0n, BigInt(rank)];
      else if (!st.lww[name] || cmpStamp(stamp, st.lww[name][1]) > 0) st.lww[name] = [value, stamp];
    }
    if (!st.head || cmpStamp(stamp, st.head) > 0) st.head = stamp;
    states.set(key, st);
  }
  return states;
}

const raw = (opId) => big("0x" + opId.slice(0, 16));
const saw = (later, earlierId) => later[2] >= raw(earlierId);
const policyKey = (name, id, e) => (name === "sha256" ? [0n, 0n, e[1], id]
  : [name === "status" && e[0] === 2 ? 1n : 0n, e[3], e[1], id]);

export function policyWinner(name, hist) {
  const ids = Object.keys(hist);
  const frontier = ids.filter((k) => !ids.some((o) => o !== k && saw(hist[o], k)));
  return frontier.reduce((w, k) => (w === null || cmpKeys(policyKey(name, k, hist[k]), policyKey(name, w, hist[w])) > 0 ? k : w), null);
}

/** Conflicts of one POLICY field: pairs neither of which saw the other, with different values. */
export function conflicts(name, hist) {
  const ids = Object.keys(hist).sort(cmpBytes), out = [];
  for (let i = 0; i < ids.length; i++) for (let j = i + 1; j < ids.length; j++) {
    const [a, b] = [ids[i], ids[j]], [ea, eb] = [hist[a], hist[b]];
    if (saw(ea, b) || saw(eb, a) || same(ea[0], eb[0])) continue;
    const aWins = cmpKeys(policyKey(name, a, ea), policyKey(name, b, eb)) > 0;
    out.push({ field: name, winner: aWins ? a : b, loser: aWins ? b : a });
  }
  return out;
}

export function values(st) {
  const out = {};
  for (const [n, [v]] of Object.entries(st.lww)) out[n] = v;
  for (const [n, m] of Object.entries(st.append)) out[n] = Object.keys(m).sort(cmpBytes).map((k) => m[k]);
  for (const [n, h] of Object.entries(st.hist)) out[n] = h[policyWinner(n, h)][0];
  return out;
}

function shuffled(items, seed) {
  const a = items.slice();
  let x = seed;
  for (let i = a.length - 1; i > 0; i--) { x = (x * 1103515245 + 12345) % 2147483648; const j = x % (i + 1); [a[i], a[j]] = [a[j], a[i]]; }
  return a;
}

export function checkMerge(d) {
  const t = new Tally("merge.json");
  const items = d.ops.map((o) => ({ device_id: d.devices[o.device], received_ms: o.received_ms, op: o.op }));
  for (const [i, o] of d.ops.entries()) {
    const ts = effective(big(o.op.hlc), o.received_ms), id = toHex(concat(u64(o.op.hlc), hex(d.devices[o.device])));
    t.check(`stamp of op ${i}`, ts === big(o.stamp.ts) && id === o.stamp.op_id);
  }
  const expect = (states, label) => {
    for (const e of d.expected) {
      const st = states.get(`${e.kind}:${e.entity}`);
      t.check(`${label} ${e.kind} ${e.entity}`, !!st && same(values(st), e.values) && st.head.ts === big(e.head.ts) && st.head.op_id === e.head.op_id,
        st ? JSON.stringify(values(st), (_, v) => (typeof v === "bigint" ? String(v) : v)) : "missing");
    }
  };
  expect(fold(items), "in order");
  for (let s = 1; s <= 300; s++) expect(fold(shuffled(items.concat(items.slice(0, s % items.length)), s)), `order ${s}`);
  return t;
}

function ruleOf(name, w, lo) {
  if (name === "sha256") return "both versions kept: the later is current, the other is a conflict copy";
  if (name === "status" && w[0] === 2 && lo[0] !== 2) return "a task marked done stays done";
  if (w[3] !== lo[3]) {
    // §11: by the pair of ranks (relay 0, member 1, supervisor 2)
    if (BigInt(lo[3]) === 0n) return "a person's change beats automatic rebalancing";
    if (BigInt(w[3]) === 2n && BigInt(lo[3]) === 1n) return "a supervisor's change beats a member's";
    return "higher role wins";
  }
  return "the later change wins (same role)";
}

export function checkPolicy(d) {
  const t = new Tally("policy.json");
  for (const sc of d.scenarios) {
    const items = sc.ops.map((o) => ({ device_id: o.device_id, received_ms: o.received_ms, op: o.op, rank: d.meta.ranks[o.role] }));
    for (let s = 0; s <= 40; s++) {
      const order = s === 0 ? items : shuffled(items.concat(items.slice(0, s % items.length)), s * 7 + 1);
      const [st] = fold(order).values();
      const got = [];
      for (const [n, h] of Object.entries(st.hist))
        for (const c of conflicts(n, h)) got.push([n, c.winner, c.loser, ruleOf(n, h[c.winner], h[c.loser])]);
      got.sort((a, b) => (a.join(" ") < b.join(" ") ? -1 : 1));
      const ok = same(values(st), sc.expected.values) && st.head.op_id === sc.expected.head.op_id && same(got, sc.expected.conflicts);
      t.check(`${sc.name} order ${s}`, ok, JSON.stringify({ values: values(st), got }, (_, v) => (typeof v === "bigint" ? String(v) : v)));
    }
  }
  return t;
}
