// chunk_delta.json: delta versions of chunked documents (PROTOCOL.md §18e), from the spec alone.
// The manifest is rebuilt from manifest_delta (SHA-256 ‖ a §18c payload against the base
// manifest), decoded (§18d), and must name the op's file; the file is rebuilt from the delta,
// cut at the manifest's sizes, and every piece must be the chunk its id names (HMAC, §18d).
import { eq, fail, hex, hkdf, hmac, PE, sha256, Tally, toHex } from "./base.mjs";
import { applyDelta } from "./delta.mjs";
import { unpack } from "./msgpack.mjs";

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
  t.notes.push("rebuilding only the needed chunks of aligned_delta (a reader's option) is not checked: the whole file is");
  return t;
}
