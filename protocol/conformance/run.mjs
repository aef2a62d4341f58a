// hbw-sync protocol conformance runner: checks every protocol/vectors/*.json file from the spec
// alone (Node.js built-in crypto, vendored fzstd, pako for deflate; no Python). Exits 1 on any mismatch, or when
// a vector file has no checker (a new file must get one). `node run.mjs [VECTOR_DIR]`.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadJson } from "./lib/base.mjs";
import { checkHlc, checkKeys, checkZstd } from "./lib/simple.mjs";
import { CHECKERS as WIRE } from "./lib/wire.mjs";
import { checkDelta } from "./lib/delta.mjs";
import { checkEvidence } from "./lib/evidence.mjs";
import { checkChunkDelta } from "./lib/chunkdelta.mjs";
import { checkCdc } from "./lib/cdc.mjs";
import { checkBundleStream } from "./lib/stream.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const dir = process.argv[2] || path.join(here, "..", "vectors");
const CHECKERS = {
  "keys.json": checkKeys,
  "hlc.json": checkHlc,
  "zstd.json": checkZstd,
  "delta.json": checkDelta,
  "evidence.json": checkEvidence,
  "chunk_delta.json": checkChunkDelta,
  "cdc.json": checkCdc,
  "bundle_stream.json": checkBundleStream,
};
const extra = WIRE;
Object.assign(CHECKERS, extra);

let passed = 0, failed = 0;
const files = fs.readdirSync(dir).filter((f) => f.endsWith(".json")).sort();
for (const file of files) {
  const check = CHECKERS[file];
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
