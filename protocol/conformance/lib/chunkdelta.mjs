// chunk_delta.json: delta versions of chunked documents (PROTOCOL.md §18e), from the spec alone.
// The manifest is rebuilt from manifest_delta (SHA-256 ‖ a §18c payload against the base
// manifest), decoded (§18d), and must name the op's file; the file is rebuilt from the delta,
// cut at the manifest's sizes, and every piece must be the chunk its id names (HMAC, §18d). The
// derived cases: the reader cuts the rebuilt file itself with chunker 1 and hashes its manifest.
import { eq, fail, hex, hkdf, hmac, PE, sha256, Tally, toHex } from "./base.mjs";
import { applyDelta } from "./delta.mjs";
import { unpack } from "./msgpack.mjs";
import { derive } from "./cdc.mjs";

const MAX_MANIFEST = 262144 * 21 + 64, CHUNK_MAX = 262144;

function decodeManifest(raw) {
  const m = unpack(raw, { max_message: raw.length, max_plain: 1 << 24, max_ops: 1 << 20, max_container: 1 << 20, max_str: 0 });
  if (!(m instanceof Map)) PE("protocol.manifest", "not a map");
  const get = (k) => m.get(k) ?? m.get(BigInt(k));
  const ids = get(5), sizes = (get(6) || []).map(Number), size = Number(get(3));
  if (!(ids instanceof Uint8Array) || ids.length !== 16 * sizes.length) PE("protocol.manifest", "chunk list");
  if (sizes.some((n) => n < 1 || n > CHUNK_MAX) || sizes.reduce((a, b) => a + b, 0) !== size) PE("protocol.manifest", "sizes");
  return { size, sha: get(4), ids, sizes };
}

function rebuild(idKey, baseFile, baseManifest, sha, delta, mdelta) {
  const raw = applyDelta(baseManifest, mdelta.subarray(32), mdelta.subarray(0, 32), MAX_MANIFEST);
  const m = decodeManifest(raw);
  if (!eq(m.sha, sha)) fail("IntegrityError", "integrity.doc", "the manifest names another file");
  const file = applyDelta(baseFile, delta, m.sha, m.size);
  let off = 0;
  m.sizes.forEach((n, i) => {
    if (!eq(hmac(idKey, file.subarray(off, off + n)).subarray(0, 16), m.ids.subarray(16 * i, 16 * i + 16))) {
      fail("IntegrityError", "integrity.chunk", `piece ${i}`);
    }
    off += n;
  });
  return { file, m };
}

// A derived manifest (§18e): SHA-256 of the manifest's encoding ‖ 0x80 ‖ chunker ‖ epoch (u32 BE). The
// reader rebuilds the file, cuts it with chunker 1 (§18d), computes the ids and encodes the manifest.
function readDerived(secrets, baseFile, sha, size, delta, field) {
  if (field.length !== 38 || field[32] !== 0x80) PE("protocol.manifest", "a derived manifest field is 38 bytes");
  if (field[33] !== 1) PE("protocol.manifest", `chunker ${field[33]}`);
  const epoch = new DataView(field.buffer, field.byteOffset + 34, 4).getUint32(0);
  if (epoch === 0) PE("protocol.manifest", "epoch 0");
  if (!secrets.has(epoch)) fail("IntegrityError", "integrity.chain", `no team key of epoch ${epoch}`);
  const file = applyDelta(baseFile, delta, sha, size);
  const got = derive(hkdf(secrets.get(epoch), "hbw-sync chunk id v1"), epoch, file);
  if (!eq(sha256(got.manifest), field.subarray(0, 32))) fail("IntegrityError", "integrity.delta", "not the author's manifest");
  return got.manifest;
}

function checkDerived(t, d) {
  const secrets = new Map([[d.team_key.epoch, hex(d.team_key.secret)]]);
  for (const v of d.derived) {
    const g = d.good.find((x) => x.name === v.delta_of);
    const args = [secrets, hex(g.base_file), hex(g.sha256), v.size, hex(g.delta)];
    try {
      const raw = readDerived(...args, hex(v.manifest_delta_derived));
      t.check(`derived ${v.name} manifest`, toHex(raw) === v.manifest && v.manifest === g.manifest);
      t.check(`derived ${v.name} names the file`, eq(decodeManifest(raw).sha, hex(g.sha256)));
    } catch (e) {
      t.check(`derived ${v.name}`, false, `${e.cls} ${e.code}: ${e.message}`);
    }
    for (const b of d.invalid_derived) {
      t.expectError(`invalid derived ${b.name}`, () => readDerived(...args, hex(b.manifest_delta_derived)), b.expected_error, b.expected_code);
    }
  }
}

export function checkChunkDelta(d) {
  const t = new Tally("chunk_delta.json");
  const idKey = hkdf(hex(d.team_key.secret), "hbw-sync chunk id v1");
  t.check("id_key", toHex(idKey) === d.team_key.id_key);
  for (const g of d.good) {
    const args = ["base_file", "base_manifest", "sha256", "delta", "manifest_delta"].map((k) => hex(g[k]));
    try {
      const { file, m } = rebuild(idKey, ...args);
      t.check(`good ${g.name} file`, toHex(sha256(file)) === g.file_sha256);
      t.check(`good ${g.name} ids`, toHex(m.ids) === g.chunk_ids.join(""));
      const aligned = applyDelta(args[0], hex(g.aligned_delta), m.sha, m.size);
      t.check(`good ${g.name} aligned delta`, eq(aligned, file));
    } catch (e) {
      t.check(`good ${g.name}`, false, `${e.cls} ${e.code}: ${e.message}`);
    }
    for (const v of d.invalid) {
      const a = ["base_file", "base_manifest", "sha256", "delta", "manifest_delta"].map((k, i) => (k in v ? hex(v[k]) : args[i]));
      if (v.base_file_byte) {
        a[0] = new Uint8Array(a[0]);
        a[0][v.base_file_byte[0]] = v.base_file_byte[1];
      }
      t.expectError(`invalid ${v.name}`, () => rebuild(idKey, ...a), v.expected_error, v.expected_code);
    }
  }
  checkDerived(t, d);
  t.notes.push("rebuilding only the needed chunks of aligned_delta (a reader's option) is not checked: the whole file is");
  return t;
}
