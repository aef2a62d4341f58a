"""protocol/vectors/chunks.json: document chunks and manifests (PROTOCOL.md §18d), good and bad.

Keys: the team key of epoch 3 with secret bytes 0..31; ``id_key`` and ``seal_key`` are given so a
reader can check its HKDF. Good chunks: one kept raw (incompressible bytes: reproducible with any
library), one compressed with zstd (its sealed bytes are reproducible only with the zstd release in
``meta``; opening it is not version-dependent). A reader MUST open ``sealed`` under ``id`` to
``plain`` and recompute ``id`` from it. The manifest vector lists two chunks; a reader MUST decode
``manifest`` to the fields given and rebuild ``file`` from the chunks. Bad vectors each change one
thing and name the error class and stable code a reader must fail with.

Chunk boundaries are not part of these vectors: a reader of a sent manifest only concatenates.
Where they are cut (chunker 1, PROTOCOL.md §18d) is vectored in cdc.json.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any, Callable

import zstandard

from hbw_sync import chunks, codec, crypto
from hbw_sync.errors import HbwError

KEY = crypto.TeamKey(3, bytes(range(32)))


def _fails(fn: Callable[[], Any]) -> tuple[str, str]:
    try:
        fn()
    except HbwError as e:
        return type(e).__name__, e.code
    raise AssertionError("a bad chunk vector was accepted")


def build() -> dict[str, Any]:
    keys = chunks.ChunkKeys.of(KEY)
    raw_plain = random.Random(18).randbytes(300)
    text_plain = b"Ward 4 water permits, quarter 3: receipts checked, two missing. " * 40
    good = []
    for name, plain in (("raw", raw_plain), ("zstd", text_plain)):
        cid, sealed = chunks.seal_chunk(keys, plain)
        assert chunks.open_chunk(keys, cid, sealed, len(plain)) == plain
        good.append({"name": name, "plain": plain.hex(), "id": cid.hex(), "sealed": sealed.hex(),
                     "method": chunks.METHOD_RAW if name == "raw" else chunks.METHOD_ZSTD})
    file = raw_plain + text_plain
    m = chunks.Manifest(KEY.epoch, len(file), hashlib.sha256(file).digest(),
                        (bytes.fromhex(good[0]["id"]), bytes.fromhex(good[1]["id"])), (len(raw_plain), len(text_plain)))
    manifest = m.encode()
    assert chunks.decode_manifest(manifest) == m

    raw_id, raw_sealed = bytes.fromhex(good[0]["id"]), bytes.fromhex(good[0]["sealed"])
    aad = chunks._SEAL_LABEL + KEY.epoch.to_bytes(4, "big")
    nonce = bytes(range(100, 112))

    def forged(cid: bytes, body: bytes) -> bytes:
        return crypto.seal(keys.seal_key, body, aad + cid, nonce=nonce)

    flipped = bytearray(raw_sealed)
    flipped[20] ^= 1
    bad_chunks = [
        ("altered", raw_id, bytes(flipped)),
        ("other_id", bytes.fromhex(good[1]["id"]), raw_sealed),
        ("junk_under_id", raw_id, forged(raw_id, b"\x00not the chunk")),
        ("unknown_method", raw_id, forged(raw_id, b"\x07" + raw_plain)),
        ("truncated", raw_id, raw_sealed[:27]),
    ]
    invalid_chunks = []
    for name, cid, sealed in bad_chunks:
        err, code = _fails(lambda: chunks.open_chunk(keys, cid, sealed))
        invalid_chunks.append({"name": name, "id": cid.hex(), "sealed": sealed.hex(),
                               "expected_error": err, "expected_code": code})

    fields = codec.unpack(manifest)
    bad_manifests = [
        ("sizes_do_not_add_up", {**fields, 3: fields[3] + 1}),
        ("ids_not_16_each", {**fields, 5: fields[5][:-1]}),
        ("chunk_over_max", {**fields, 3: fields[3] + chunks.CHUNK_MAX, 6: [fields[6][0] + chunks.CHUNK_MAX, fields[6][1]]}),
        ("unknown_version", {**fields, 1: 2}),
        ("extra_field", {**fields, 7: 0}),
    ]
    invalid_manifests = []
    for name, obj in bad_manifests:
        data = codec.pack(obj)
        err, code = _fails(lambda: chunks.decode_manifest(data))
        invalid_manifests.append({"name": name, "manifest": data.hex(), "expected_error": err, "expected_code": code})

    return {
        "meta": {
            "zstandard_version": zstandard.__version__,
            "zstd_version": ".".join(map(str, zstandard.ZSTD_VERSION)),
            "note": "the sealed bytes of the zstd chunk are reproducible only with this zstd; opening is not "
                    "version-dependent (PROTOCOL.md §18d).",
        },
        "team_key": {"epoch": KEY.epoch, "secret": KEY.secret.hex(), "id_key": keys.id_key.hex(),
                     "seal_key": keys.seal_key.hex()},
        "chunks": good,
        "manifest": {"bytes": manifest.hex(), "epoch": m.epoch, "size": m.size, "sha256": m.sha256.hex(),
                     "ids": [c.hex() for c in m.ids], "sizes": list(m.sizes), "file": file.hex()},
        "invalid_chunks": invalid_chunks,
        "invalid_manifests": invalid_manifests,
    }
