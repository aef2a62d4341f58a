// Reads every one-bit flip of one frame in a child process (`node zstd_flips.mjs CAP HEX START`),
// printing "B bit" before and "R bit outcome" after each: fzstd 0.1.1 loops forever on some
// damaged frames, so the parent runs this with a time limit and restarts past a frame that hangs.
import { hex, WireError } from "./base.mjs";
import { decompress } from "./zstd.mjs";
import crypto from "node:crypto";

const [cap, frameHex, start] = process.argv.slice(2);
const frame = hex(frameHex);
const lines = [];
const flush = () => { if (lines.length) { process.stdout.write(lines.join("")); lines.length = 0; } };
for (let bit = Number(start); bit < frame.length * 8; bit++) {
  const bad = frame.slice();
  bad[bit >> 3] ^= 1 << (bit & 7);
  lines.push(`B ${bit}\n`);
  flush();
  let outcome;
  try {
    outcome = "accept:" + crypto.createHash("sha256").update(decompress(bad, Number(cap))).digest("hex");
  } catch (e) {
    outcome = e instanceof WireError ? e.code : "crash:" + String(e).replace(/\s+/g, " ");
  }
  lines.push(`R ${bit} ${outcome}\n`);
}
flush();
