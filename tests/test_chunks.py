"""Documents as sealed content-defined chunks (hbw_sync/chunks.py, PROTOCOL.md §18d)."""

from __future__ import annotations

import io
import os
import random

import pytest

from hbw_sync import chunks, codec, crypto
from hbw_sync.errors import IntegrityError, LimitError, ProtocolError

KEY = crypto.TeamKey(3, bytes(range(32)))
KEYS = chunks.ChunkKeys.of(KEY)


def _pdf_like(n: int, seed: int = 1) -> bytes:
    """Incompressible bytes with a little structure, like a scanned PDF."""
    return random.Random(seed).randbytes(n)


def test_chunk_sizes_stay_in_bounds_and_rejoin():
    data = _pdf_like(3_000_000)
    m, parts = chunks.split_bytes(KEYS, data)
    assert b"".join(p for _, p in parts) == data
    assert m.size == len(data) and len(m.ids) == len(parts) > 10
    assert all(n <= chunks.CHUNK_MAX for n in m.sizes)
    assert all(n >= chunks.CHUNK_MIN for n in m.sizes[:-1])


def test_an_edit_in_the_middle_changes_only_the_chunks_around_it():
    data = _pdf_like(8_000_000)
    edited = data[:4_000_000] + b"a paragraph typed in the middle" + data[4_000_000:]
    a, _ = chunks.split_bytes(KEYS, data)
    b, _ = chunks.split_bytes(KEYS, edited)
    new = [cid for cid in b.ids if cid not in set(a.ids)]
    assert 1 <= len(new) <= 2, len(new)
    sent = sum(n for cid, n in zip(b.ids, b.sizes) if cid in new)
    assert sent <= 2 * chunks.CHUNK_MAX


def test_ids_are_keyed_by_the_team():
    data = _pdf_like(200_000)
    other = chunks.ChunkKeys.of(crypto.TeamKey(3, bytes(32)))
    a, _ = chunks.split_bytes(KEYS, data)
    b, _ = chunks.split_bytes(other, data)
    assert a.sha256 == b.sha256 and not set(a.ids) & set(b.ids)
    # An id is not a plain hash of the bytes the relay could compute.
    import hashlib
    _m, parts = chunks.split_bytes(KEYS, data)
    assert all(hashlib.sha256(p).digest()[:16] != cid for cid, p in parts)


def test_seal_and_open_round_trip_compressing_when_it_pays():
    text = b"Minutes of the district meeting. " * 2000
    cid, sealed = chunks.seal_chunk(KEYS, text)
    assert len(sealed) < len(text) // 10  # compressed
    assert chunks.open_chunk(KEYS, cid, sealed, len(text)) == text
    noise = _pdf_like(100_000)
    cid2, sealed2 = chunks.seal_chunk(KEYS, noise)
    assert len(sealed2) == len(noise) + 1 + 28  # kept raw
    assert chunks.open_chunk(KEYS, cid2, sealed2) == noise
    # Deterministic: the same chunk seals to the same bytes (idempotent uploads, dedup).
    assert chunks.seal_chunk(KEYS, noise) == (cid2, sealed2)


def test_a_chunk_under_another_id_or_altered_does_not_open():
    cid, sealed = chunks.seal_chunk(KEYS, b"form 12 page 1" * 100)
    cid2, sealed2 = chunks.seal_chunk(KEYS, b"form 12 page 2" * 100)
    with pytest.raises(IntegrityError):
        chunks.open_chunk(KEYS, cid2, sealed)  # served under another id: AAD binds the id
    for i in (0, 12, len(sealed) - 1):
        bad = bytearray(sealed)
        bad[i] ^= 1
        with pytest.raises(IntegrityError):
            chunks.open_chunk(KEYS, cid, bytes(bad))
    with pytest.raises(ProtocolError):
        chunks.open_chunk(KEYS, cid, sealed[:20])
    with pytest.raises(LimitError):
        chunks.open_chunk(KEYS, cid, bytes(chunks.SEALED_MAX + 1))
    with pytest.raises(IntegrityError):
        chunks.open_chunk(KEYS, cid, sealed, size=5)  # the manifest says another size


def test_a_member_cannot_upload_junk_under_an_id():
    """A sealed chunk with a valid AEAD but bytes whose id differs is refused by the reader."""
    cid, _ = chunks.seal_chunk(KEYS, b"the real page")
    aad = chunks._SEAL_LABEL + KEY.epoch.to_bytes(4, "big") + cid
    forged = crypto.seal(KEYS.seal_key, b"\x00junk", aad)
    with pytest.raises(IntegrityError):
        chunks.open_chunk(KEYS, cid, forged)


def test_manifest_round_trip_and_join():
    data = _pdf_like(1_500_000, seed=7)
    m, parts = chunks.split_bytes(KEYS, data)
    m2 = chunks.decode_manifest(m.encode())
    assert m2 == m
    j = chunks.Joiner(KEYS, m2)
    out = io.BytesIO()
    for cid, p in parts:
        out.write(j.open(cid, chunks.seal_chunk(KEYS, p)[1]))
    j.finish()
    assert out.getvalue() == data
    # About 20 bytes per chunk: a 1.5 MB file's manifest is a few hundred bytes.
    assert len(m.encode()) < 80 + 21 * len(m.ids)


def test_join_refuses_missing_reordered_or_wrong_chunks():
    data = _pdf_like(600_000, seed=9)
    m, parts = chunks.split_bytes(KEYS, data)
    sealed = [(cid, chunks.seal_chunk(KEYS, p)[1]) for cid, p in parts]
    j = chunks.Joiner(KEYS, m)
    with pytest.raises(ProtocolError):
        j.open(*sealed[1])
    j = chunks.Joiner(KEYS, m)
    for s in sealed[:-1]:
        j.open(*s)
    with pytest.raises(IntegrityError):
        j.finish()
    lying = chunks.Manifest(m.epoch, m.size, bytes(32), m.ids, m.sizes)
    j = chunks.Joiner(KEYS, lying)
    for s in sealed:
        j.open(*s)
    with pytest.raises(IntegrityError):
        j.finish()


@pytest.mark.parametrize("mutate", [
    lambda m: {**m, 1: 2},
    lambda m: {k: v for k, v in m.items() if k != 4},
    lambda m: {**m, 3: m[3] + 1},
    lambda m: {**m, 5: m[5][:-1]},
    lambda m: {**m, 6: m[6][:-1] + [m[6][-1] + chunks.CHUNK_MAX]},
    lambda m: {**m, 6: [0] + m[6]},
    lambda m: {**m, 2: 0},
    lambda m: {**m, 4: "not bytes"},
    lambda m: {**m, 3: chunks.MANIFEST_MAX_SIZE + 1},
    lambda m: {**m, 7: 1},
])
def test_malformed_manifests_are_refused(mutate):
    m, _ = chunks.split_bytes(KEYS, _pdf_like(300_000))
    raw = codec.unpack(m.encode())
    with pytest.raises(ProtocolError):
        chunks.decode_manifest(codec.pack(mutate(raw)))


def test_manifest_decoding_is_bounded():
    with pytest.raises(ProtocolError):
        chunks.decode_manifest(b"\xdd\xff\xff\xff\xff")  # an array claiming 4 billion items
    with pytest.raises(ProtocolError):
        chunks.decode_manifest(os.urandom(64))


def test_an_empty_file_has_an_empty_manifest():
    m, parts = chunks.split_bytes(KEYS, b"")
    assert parts == [] and m.size == 0 and m.ids == ()
    j = chunks.Joiner(KEYS, chunks.decode_manifest(m.encode()))
    j.finish()


def test_splitter_streams_a_file_larger_than_it_holds(tmp_path):
    """A 40 MB file goes through in chunks; the splitter never holds more than one."""
    p = tmp_path / "scan.pdf"
    with p.open("wb") as f:
        for i in range(40):
            f.write(random.Random(i).randbytes(1_000_000))
    s = chunks.Splitter(KEYS)
    biggest = 0
    with p.open("rb") as f:
        for _cid, view in s.chunks(f):
            biggest = max(biggest, len(view))
    m = s.manifest()
    assert m.size == 40_000_000 and biggest <= chunks.CHUNK_MAX
    import hashlib
    assert m.sha256 == hashlib.sha256(p.read_bytes()).digest()


# -- vectors (protocol/vectors/chunks.json, scripts/vectors/chunks.py) ------------------------

def _vectors() -> dict:
    import json
    from pathlib import Path
    return json.loads((Path(__file__).parent.parent / "protocol/vectors/chunks.json").read_text(encoding="utf-8"))


def test_chunk_vectors_open_and_rebuild():
    v = _vectors()
    tk = crypto.TeamKey(v["team_key"]["epoch"], bytes.fromhex(v["team_key"]["secret"]))
    keys = chunks.ChunkKeys.of(tk)
    assert keys.id_key.hex() == v["team_key"]["id_key"] and keys.seal_key.hex() == v["team_key"]["seal_key"]
    sealed = {}
    for c in v["chunks"]:
        plain = chunks.open_chunk(keys, bytes.fromhex(c["id"]), bytes.fromhex(c["sealed"]))
        assert plain.hex() == c["plain"] and keys.chunk_id(plain).hex() == c["id"]
        sealed[c["id"]] = bytes.fromhex(c["sealed"])
    mv = v["manifest"]
    m = chunks.decode_manifest(bytes.fromhex(mv["bytes"]))
    assert (m.epoch, m.size, m.sha256.hex(), [i.hex() for i in m.ids], list(m.sizes)) == \
        (mv["epoch"], mv["size"], mv["sha256"], mv["ids"], mv["sizes"])
    j = chunks.Joiner(keys, m)
    assert b"".join(j.open(cid, sealed[cid.hex()]) for cid in m.ids).hex() == mv["file"]
    j.finish()


def test_bad_chunk_vectors_fail_with_their_code():
    v = _vectors()
    keys = chunks.ChunkKeys.of(crypto.TeamKey(v["team_key"]["epoch"], bytes.fromhex(v["team_key"]["secret"])))
    for c in v["invalid_chunks"]:
        with pytest.raises((IntegrityError, ProtocolError)) as e:
            chunks.open_chunk(keys, bytes.fromhex(c["id"]), bytes.fromhex(c["sealed"]))
        assert (type(e.value).__name__, e.value.code) == (c["expected_error"], c["expected_code"]), c["name"]
    for c in v["invalid_manifests"]:
        with pytest.raises(ProtocolError) as e:
            chunks.decode_manifest(bytes.fromhex(c["manifest"]))
        assert e.value.code == c["expected_code"], c["name"]
