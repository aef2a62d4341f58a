"""protocol/vectors/chunk_delta.json: delta versions of chunked documents (PROTOCOL.md §18e), good and bad.

Keys: the team key of epoch 3 with secret bytes 0..31 (as chunks.json). The good vector is a
base file and a new file one paragraph apart, each with its manifest (cut by the reference
writer; with a sent manifest a reader cuts the rebuilt file at the manifest's sizes), the
``delta`` payload that rebuilds the new file from the base file, and ``manifest_delta`` (SHA-256
of the new manifest, then a payload rebuilding it from the base manifest). A reader MUST:

1. rebuild the manifest from ``manifest_delta`` and the base manifest, check its SHA-256 and
   that its field 4 is ``sha256``;
2. rebuild the file from ``delta`` and the base file (``max_size`` = the manifest's size) and
   check its SHA-256;
3. cut it at the manifest's sizes and check every piece's id (HMAC-SHA256 under ``id_key``,
   truncated to 16 bytes) against the manifest's ids.

``aligned_delta`` is the same edit as a chunk-aligned recipe (COPY for the chunks the base has,
a patched MEMBER per run of new chunks): a reader MUST rebuild the file from it as from ``delta``,
and MAY rebuild only ``needed_ids`` (the chunks the base lacks), each checked against its id.

Bad vectors each change one thing from the good one (``base_file_byte``: [offset, value] set in the
base file) and name the error class and stable code a
reader must fail with. Payloads hold zstd frames, reproducible only with the zstd release in ``meta``.

``derived`` is the same edit with a *derived manifest* (§18e): ``manifest_delta_derived`` = SHA-256
of the new manifest's encoding ‖ 0x80 ‖ chunker 1 ‖ epoch (u32 BE), 38 bytes. A reader MUST parse
it (``protocol.manifest`` for a wrong length, an unknown chunker or epoch 0), take the team key of
that epoch (without it: ``integrity.chain``, the reference reader's answer for any chunked version
whose epoch it lacks), rebuild the file from ``delta`` (``max_size`` = the op's ``size``, its
SHA-256 = ``sha256``: ``integrity.delta``), cut it with chunker 1 (§18d), compute the ids, encode
the manifest and check its SHA-256 against the field's (``integrity.delta``); the result is
exactly ``manifest``. ``invalid_derived`` each change one thing in the field.
"""

from __future__ import annotations

import hashlib
import random
import struct
from typing import Any, Callable

import zstandard

from hbw_sync import chunks, crypto, derived
from hbw_sync.delta import METHOD_PATCH, apply_delta, apply_delta_to, make_delta
from hbw_sync.delta.patch import patch_frame
from hbw_sync.delta.chunked import DELTA_MAX, aligned_recipe, rebuild_chunks, rebuild_needed
from hbw_sync.errors import HbwError, IntegrityError
from hbw_sync.ops import MAX_MANIFEST

KEY = crypto.TeamKey(3, bytes(range(32)))


def _file(seed: int, n: int) -> bytes:
    rng = random.Random(seed)
    words = "ward ledger permit budget clinic road water audit tender receipt quarter office".split()
    out = bytearray()
    while len(out) < n:
        if rng.random() < 0.3:
            out += rng.randbytes(3000)  # an embedded image: incompressible
        else:
            out += (" ".join(rng.choice(words) for _ in range(rng.randint(6, 14))).capitalize() + ".\n").encode()
    return bytes(out[:n])


def _fails(fn: Callable[[], Any]) -> tuple[str, str]:
    try:
        fn()
    except HbwError as e:
        return type(e).__name__, e.code
    raise AssertionError("a bad chunk delta vector was accepted")


def _mdelta(base_manifest: bytes, manifest: bytes) -> bytes:
    """manifest_delta as a method-1 payload always (the reference writer sends one only when it is smaller
    than the manifest, i.e. for manifests of many chunks; these files are kept small)."""
    return hashlib.sha256(manifest).digest() + bytes([METHOD_PATCH]) + patch_frame(base_manifest, manifest)


def read(keys: chunks.ChunkKeys, base_file: bytes, base_manifest: bytes, sha256: bytes, delta: bytes,
         mdelta: bytes) -> bytes:
    """The reader's three steps, as the vectors state them; the rebuilt file."""
    raw = apply_delta(base_manifest, mdelta[32:], expected_sha256=mdelta[:32], max_size=MAX_MANIFEST)
    m = chunks.decode_manifest(raw)
    if m.sha256 != sha256:
        raise IntegrityError("a manifest rebuilt from its delta names another file", code="integrity.doc")
    return b"".join(bytes(p) for _cid, p in rebuild_chunks(keys, m, base_file, delta))


def read_derived(keyring: dict[int, crypto.TeamKey], base_file: bytes, sha256: bytes, size: int, delta: bytes,
                 field: bytes) -> chunks.Manifest:
    """A derived manifest's reader, as the vectors state it: the manifest it works out (checked)."""
    want = derived.parse(field)
    key = keyring.get(want.epoch)
    if key is None:
        raise IntegrityError(f"no team key of epoch {want.epoch} for a derived manifest", code="integrity.chain")
    deriver = derived.Deriver(chunks.ChunkKeys.of(key), want, sha256, size, lambda _cid, _plain: None)
    apply_delta_to(base_file, delta, deriver.write, expected_sha256=sha256, max_size=size)
    return deriver.finish()


def _derived(keyring: dict[int, crypto.TeamKey], base: bytes, new: bytes, m_new: chunks.Manifest,
             delta: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The good derived-manifest vector and the bad ones, each one change in the 38-byte field."""
    field = derived.encode(m_new.encode(), m_new.epoch)
    assert len(field) == derived.FORM_LEN
    got = read_derived(keyring, base, m_new.sha256, m_new.size, delta, field)
    assert got.encode() == m_new.encode()
    good = {"name": "one paragraph edited, manifest derived", "delta_of": "one paragraph edited",
            "manifest_delta_derived": field.hex(), "size": m_new.size, "manifest": m_new.encode().hex(),
            "manifest_sha256": hashlib.sha256(m_new.encode()).hexdigest()}
    other_epoch = max(keyring) + 1
    changes = [
        ("wrong hash", "the field's SHA-256 is not the derived manifest's (its first byte flipped)",
         bytes([field[0] ^ 1]) + field[1:]),
        ("chunker 2", "an unknown chunker", field[:33] + b"\x02" + field[34:]),
        ("epoch 0", "epoch 0 (only the relay's unsealed changes have it)", field[:34] + bytes(4)),
        ("37 bytes", "one byte short", field[:37]),
        ("39 bytes", "one byte more", field + b"\x00"),
        ("epoch the reader lacks", f"epoch {other_epoch}: the reader holds no team key of it",
         field[:34] + struct.pack(">I", other_epoch)),
    ]
    bad = []
    for name, what, f in changes:
        cls, code = _fails(lambda: read_derived(keyring, base, m_new.sha256, m_new.size, delta, f))
        bad.append({"name": name, "description": what, "manifest_delta_derived": f.hex(),
                    "expected_error": cls, "expected_code": code})
    return good, bad


def build() -> dict[str, Any]:
    keys = chunks.ChunkKeys.of(KEY)
    base = _file(40, 80_000)
    new = base[:40_000] + b"The council approved the revised schedule for the mobile clinics.\n" + base[40_100:]
    m_base, _ = chunks.split_bytes(keys, base)
    m_new, _ = chunks.split_bytes(keys, new)
    delta = make_delta(base, new)
    assert delta is not None
    mdelta = _mdelta(m_base.encode(), m_new.encode())
    assert read(keys, base, m_base.encode(), m_new.sha256, delta, mdelta) == new
    def reader(data: bytes):
        return lambda off, n: data[off:off + n]

    aligned = aligned_recipe(m_base, m_new, reader(base), reader(new))
    assert aligned is not None
    needed = [c for c in m_new.ids if c not in set(m_base.ids)]
    rebuilt = dict(rebuild_needed(aligned, len(base), reader(base), m_new, keys, set(needed)))
    assert set(rebuilt) == set(needed)
    good = {
        "name": "one paragraph edited",
        "aligned_delta": aligned.hex(), "needed_ids": [c.hex() for c in needed],
        "base_file": base.hex(), "base_manifest": m_base.encode().hex(),
        "sha256": m_new.sha256.hex(), "delta": delta.hex(), "manifest_delta": mdelta.hex(),
        "manifest": m_new.encode().hex(), "file_sha256": hashlib.sha256(new).hexdigest(),
        "chunk_ids": [c.hex() for c in m_new.ids], "chunk_sizes": list(m_new.sizes),
    }  # fmt: skip

    def bad(name: str, what: str, **changed: bytes) -> dict[str, Any]:
        args = {"base_file": base, "base_manifest": m_base.encode(), "sha256": m_new.sha256, "delta": delta,
                "mdelta": mdelta} | changed
        cls, code = _fails(lambda: read(keys, args["base_file"], args["base_manifest"], args["sha256"],
                                        args["delta"], args["mdelta"]))
        out = {"name": name, "description": what, "expected_error": cls, "expected_code": code}
        for k, v in changed.items():
            out["manifest_delta" if k == "mdelta" else k] = v.hex()
        return out

    other = make_delta(base, new[:-1] + b"?")
    assert other is not None
    moved = chunks.Manifest(m_new.epoch, m_new.size, m_new.sha256, m_new.ids,
                            (m_new.sizes[0] - 1, m_new.sizes[1] + 1) + m_new.sizes[2:])
    raw_moved = moved.encode()
    elsewhere = chunks.Manifest(m_new.epoch, m_new.size, bytes(32), m_new.ids, m_new.sizes).encode()
    wrong_hash = bytes(32) + mdelta[32:]
    invalid = [
        bad("delta rebuilds another file", "the delta's result is not the manifest's SHA-256", delta=other),
        bad("manifest cut elsewhere", "the manifest's sizes cut the right file at other places, so a piece is not "
            "the chunk its id names", mdelta=_mdelta(m_base.encode(), raw_moved)),
        bad("manifest delta hash", "the first 32 bytes of manifest_delta are not the rebuilt manifest's SHA-256",
            mdelta=wrong_hash),
        bad("manifest names another file", "the rebuilt manifest's field 4 is not the op's sha256",
            mdelta=_mdelta(m_base.encode(), elsewhere)),
    ]
    flipped = bad("wrong base", "the base file is not the version the delta was made against: byte 1000 of "
                  "base_file set to 0x58 ('X')", base_file=base[:1000] + b"X" + base[1001:])
    del flipped["base_file"]
    flipped["base_file_byte"] = [1000, 0x58]
    invalid.append(flipped)
    good_derived, invalid_derived = _derived({KEY.epoch: KEY}, base, new, m_new, delta)
    return {
        "meta": {"zstandard_version": zstandard.__version__, "spec": "PROTOCOL.md §18e (delta versions)",
                 "delta_max": DELTA_MAX, "max_manifest": MAX_MANIFEST},
        "team_key": {"epoch": KEY.epoch, "secret": KEY.secret.hex(), "id_key": keys.id_key.hex()},
        "good": [good],
        "invalid": invalid,
        "derived": [good_derived],
        "invalid_derived": invalid_derived,
    }
