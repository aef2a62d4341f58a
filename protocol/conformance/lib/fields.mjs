// The field registry (PROTOCOL.md §5, §5a), built from ../fields.json, the machine-readable copy
// of those tables that tests/test_vectors.py keeps equal to the spec and to the reference code.
// FIELDS[kind][tag] = [name, section, check(value), nullable, merge ("LWW" | "APPEND" | "POLICY")].
import fs from "node:fs";
import { big } from "./base.mjs";
import { isInt } from "./msgpack.mjs";

const registry = JSON.parse(fs.readFileSync(new URL("../../fields.json", import.meta.url), "utf8"));
const HANDLE = /^[a-z0-9._-]{1,32}$/;
const cps = (s) => [...s].length;

/** The value check of one fields.json type (type rules of §5: no bool for uint, no float). */
function checker(f) {
  switch (f.type) {
    case "uint": return (v) => isInt(v) && big(v) >= big(f.min) && big(v) <= big(f.max);
    case "bool": return (v) => v === true || v === false;
    case "true": return (v) => v === true;
    case "str": return (v) => typeof v === "string" && cps(v) >= f.min && cps(v) <= f.max;
    case "handle": return (v) => typeof v === "string" && HANDLE.test(v);
    case "bin": return (v) => v instanceof Uint8Array && v.length >= f.min && (f.max === null || v.length <= f.max)
      && v.length % (f.multiple_of || 1) === 0;
    default: throw new Error(`fields.json: unknown type ${f.type}`);
  }
}

export const KINDS = Object.fromEntries(Object.entries(registry.kinds).map(([name, n]) => [n, name]));
export const FIELDS = {};
for (const f of registry.fields) (FIELDS[f.kind] ||= {})[f.tag] = [f.name, f.section, checker(f), f.nullable, f.merge];
/** kind -> names of its fields with the given merge rule. */
export const byMerge = (merge) => {
  const out = {};
  for (const f of registry.fields) if (f.merge === merge) (out[f.kind] ||= []).push(f.name);
  return out;
};
