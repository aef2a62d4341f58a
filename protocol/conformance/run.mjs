// hbw-sync protocol conformance runner: checks every protocol/vectors/*.json file from the spec
// alone (Node.js built-in crypto, fzstd for zstd, no Python). Exits 1 on any mismatch, or when
// a vector file has no checker (a new file must get one). `node run.mjs [VECTOR_DIR]`.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadJson } from "./lib/base.mjs";
import { checkHlc, checkKeys, checkZstd } from "./lib/simple.mjs";
import { CHECKERS as WIRE } from "./lib/wire.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const dir = process.argv[2] || path.join(here, "..", "vectors");
const CHECKERS = {
  "keys.json": checkKeys,
  "hlc.json": checkHlc,
  "zstd.json": checkZstd,
};
const extra = WIRE;
Object.assign(CHECKERS, extra);

// Files this runner knows it does not check yet, and why: printed as SKIP on every run, never silently.
const NOT_YET = {
  "delta.json": "patch frames need a raw-content zstd dictionary (RFC 8878 §5), which fzstd lacks; " +
    "recipes and deflate members are doable but not written yet",
  "chunk_delta.json": "delta versions rebuild through §18c patch frames (raw-content zstd dictionaries, which " +
    "fzstd lacks); the manifest and chunk-id checks are chunks.json's",
  "evidence.json": "evidence files (§24, audit tools) arrived in parallel with this runner; no checker written yet",
};

let passed = 0, failed = 0;
const files = fs.readdirSync(dir).filter((f) => f.endsWith(".json")).sort();
for (const file of files) {
  const check = CHECKERS[file];
  if (!check && NOT_YET[file]) {
    console.log(`SKIP ${file}: not checked: ${NOT_YET[file]}`);
    continue;
  }
  if (!check) {
    console.log(`FAIL ${file}: no checker in protocol/conformance`);
    failed++;
    continue;
  }
  const t = check(loadJson(path.join(dir, file)));
  passed += t.passed;
  failed += t.failures.length;
  console.log(`${t.failures.length ? "FAIL" : "ok  "} ${file}: ${t.passed} checks passed, ${t.failures.length} failed`);
  for (const f of t.failures.slice(0, 15)) console.log(`     ${f}`);
  if (t.failures.length > 15) console.log(`     ... and ${t.failures.length - 15} more`);
  for (const n of t.notes) console.log(`     note: ${n}`);
}
console.log(`conformance: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
