// cdc.json: chunker 1 (PROTOCOL.md §18d) from the spec alone. Each input is rebuilt from its pieces
// (the rule is in §18d), checked by its SHA-256, cut, and its chunk lengths, ids and manifest hash
// compared; the GEAR table and the masks must be the spec's.
import { concat, hkdf, hmac, sha256, Tally, toHex, u32 } from "./base.mjs";
import { chunkLengths, gearSha256, GEAR } from "./fastcdc.mjs";
import { pack } from "./msgpack.mjs";

/** Bytes offset .. offset+length-1 of S(seed) = SHA-256(seed ‖ u32 BE 0) ‖ SHA-256(seed ‖ u32 BE 1) ‖ … */
function stream(seed, offset, length) {
  const s = Buffer.from(seed, "utf8"), out = new Uint8Array(length);
  const first = Math.floor(offset / 32);
  for (let i = first, w = -(offset - 32 * first); w < length; i++, w += 32) {
    const block = sha256(concat(s, u32(i)));
    const from = Math.max(0, -w), upto = Math.min(32, length - w);
    out.set(block.subarray(from, upto), w + from);
  }
  return out;
}

function piece(p, words) {
  if (p.kind === "random") return stream(p.seed, p.offset, p.length);
  if (p.kind === "zeros") return new Uint8Array(p.length);
  if (p.kind === "text") {
    const t = Buffer.from(p.text, "utf8"), out = new Uint8Array(p.length);
    for (let i = 0; i < p.length; i++) out[i] = t[i % t.length];
    return out;
  }
  if (p.kind === "words") {
    const src = stream(p.seed, 0, p.length), out = new Uint8Array(p.length);
    let w = 0;
    for (let i = 0; w < p.length; i++) {
      for (const c of Buffer.from(words[src[i] % 16] + " ", "utf8")) { if (w < p.length) out[w++] = c; }
    }
    return out;
  }
  throw new Error(`unknown piece ${p.kind}`);
}

/** A manifest's encoding (§18d): {1: 1, 2: epoch, 3: size, 4: SHA-256, 5: ids, 6: sizes}, canonical msgpack. */
export function encodeManifest(epoch, file, ids, sizes) {
  return pack(new Map([[1, 1], [2, epoch], [3, file.length], [4, sha256(file)], [5, concat(...ids)], [6, sizes]]));
}

/** The chunks of a file cut with chunker 1: lengths, ids and the manifest's encoding. */
export function derive(idKey, epoch, file) {
  const sizes = chunkLengths(file), ids = [];
  let at = 0;
  for (const n of sizes) {
    ids.push(hmac(idKey, file.subarray(at, at + n)).subarray(0, 16));
    at += n;
  }
  return { sizes, ids, manifest: encodeManifest(epoch, file, ids, sizes) };
}

export function checkCdc(d) {
  const t = new Tally("cdc.json");
  t.check("gear table", d.gear.length === 256 && d.gear.every((h, i) => BigInt("0x" + h) === GEAR[i]));
  t.check("gear sha256", d.gear_sha256 === gearSha256());
  t.check("masks", d.meta.parameters.mask_s === "0000d90703537000" && d.meta.parameters.mask_l === "0000d90f03530000");
  const idKey = hkdf(Buffer.from(d.team_key.secret, "hex"), "hbw-sync chunk id v1");
  t.check("id_key", toHex(idKey) === d.team_key.id_key);
  const byName = {};
  const started = Date.now();
  let bytes = 0;
  for (const c of d.cases) {
    const data = concat(...c.pieces.map((p) => piece(p, d.words)));
    byName[c.name] = c;
    bytes += data.length;
    t.check(`${c.name} input`, data.length === c.length && toHex(sha256(data)) === c.sha256);
    const got = derive(idKey, d.team_key.epoch, data);
    t.check(`${c.name} chunk lengths`, JSON.stringify(got.sizes) === JSON.stringify(c.chunk_lengths),
      `got ${got.sizes.slice(0, 8)}…`);
    c.got_ids = got.ids.map(toHex);
    if (c.chunk_ids) {
      t.check(`${c.name} ids`, JSON.stringify(c.got_ids) === JSON.stringify(c.chunk_ids));
      t.check(`${c.name} manifest sha256`, toHex(sha256(got.manifest)) === c.manifest_sha256);
    }
  }
  const e = d.edit, base = byName[e.base], edited = byName[e.edited];
  const kept = edited.got_ids.filter((id) => base.got_ids.includes(id)).length;
  t.check("edit chunks kept", kept === e.chunks_kept && base.got_ids.length === e.base_chunks && edited.got_ids.length === e.edited_chunks);
  t.notes.push(`cut ${(bytes / 2 ** 20).toFixed(1)} MiB in ${Date.now() - started} ms (inputs, cuts, ids)`);
  return t;
}
