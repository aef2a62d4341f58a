"""protocol/vectors/cdc.json: chunker 1 (PROTOCOL.md §18d), the cut points every implementation must find.

Why vectors: a reader of a derived manifest (§18e) cuts the rebuilt file itself and must find the
writer's cut points byte for byte, so the chunker is part of the protocol. The inputs are not
stored (they total about 12 MiB); each case lists the *pieces* its input is made of, in order,
each from a rule an implementation can follow in a few lines:

* ``random``: bytes ``offset .. offset + length`` of the stream ``S(seed)`` =
  SHA-256(seed ‖ u32 BE 0) ‖ SHA-256(seed ‖ u32 BE 1) ‖ ... (``seed`` is the UTF-8 of the string);
* ``zeros``: ``length`` zero bytes;
* ``words``: for each byte ``b`` of ``S(seed)`` in order, ``WORDS[b mod 16]`` then one space,
  cut to ``length`` bytes (text-like: low entropy, no period);
* ``text``: ``text`` (UTF-8) repeated, cut to ``length`` bytes.

Each case gives the input's length and SHA-256 (check the generator first), then
``chunk_lengths``; the three largest also the chunk ids (HMAC-SHA256(``id_key``, chunk)[0:16],
``id_key`` from chunks.json's team key) and the SHA-256 of the manifest's encoding (§18d), as a
derived manifest (§18e) is checked. ``edit`` counts how many chunks of a 2 MiB input survive 5
bytes inserted at 1 MiB. ``gear`` is the GEAR table of §18d's appendix.

The reference cutter is ``chunks.Splitter`` (pyfastcdc); ``cut_lengths`` below is the spec's
one-byte-per-step form, written from §18d, and every case is asserted to agree.
"""

from __future__ import annotations

import hashlib
import io
import struct
from typing import Any

from hbw_sync import chunks

from .chunk_delta import KEY

#: §18d chunker 1's parameters (the spec's names).
MIN, AVG, MAX = 16384, 65536, 262144
MASK_S, MASK_L = 0x0000D90703537000, 0x0000D90F03530000
WORDS = ("ward", "ledger", "permit", "budget", "clinic", "road", "water", "audit", "tender", "receipt",
         "quarter", "office", "the", "of", "and", "to")
_U64 = (1 << 64) - 1
KiB, MiB = 1024, 1024 * 1024


def gear_table() -> list[int]:
    """The 256 GEAR values (the library's table; §18d lists them and the tests compare)."""
    from pyfastcdc.py.constants import GEAR

    return list(GEAR)


def stream(seed: str, offset: int, length: int) -> bytes:
    """Bytes ``offset .. offset + length`` of S(seed)."""
    first, last = offset // 32, (offset + length + 31) // 32
    s = seed.encode()
    out = b"".join(hashlib.sha256(s + struct.pack(">I", i)).digest() for i in range(first, last))
    return out[offset - 32 * first:offset - 32 * first + length]


def piece(p: dict[str, Any]) -> bytes:
    """One piece of a case's input, from its JSON description."""
    n = p["length"]
    if p["kind"] == "random":
        return stream(p["seed"], p["offset"], n)
    if p["kind"] == "zeros":
        return bytes(n)
    if p["kind"] == "words":
        out = bytearray()
        for b in stream(p["seed"], 0, n):  # at least one byte per output byte's word: enough
            out += WORDS[b % 16].encode() + b" "
            if len(out) >= n:
                break
        return bytes(out[:n])
    if p["kind"] == "text":
        t = p["text"].encode()
        return (t * (n // len(t) + 1))[:n]
    raise ValueError(f"unknown piece {p['kind']!r}")


def case_input(case: dict[str, Any]) -> bytes:
    return b"".join(piece(p) for p in case["pieces"])


def cut_lengths(data: bytes | memoryview) -> list[int]:
    """Chunker 1 as §18d states it, one byte per step (slow: for the vectors and the tests only)."""
    gear = gear_table()
    out, at = [], 0
    while at < len(data):
        r = min(len(data) - at, MAX)
        n = r
        if r > MIN:
            h = 0
            for i in range(MIN, r - r % 2):
                h = (2 * h + gear[data[at + i]]) & _U64
                if h & (MASK_S if i < AVG else MASK_L) == 0:
                    n = i
                    break
        out.append(n)
        at += n
    return out


def _rand(seed: str, n: int, offset: int = 0) -> dict[str, Any]:
    return {"kind": "random", "seed": seed, "offset": offset, "length": n}


CASES: list[dict[str, Any]] = [
    {"name": "empty", "pieces": []},
    {"name": "one byte", "pieces": [_rand("cdc one", 1)]},
    {"name": "min (16 KiB): one chunk", "pieces": [_rand("cdc min", 16 * KiB)]},
    {"name": "min + 1: one chunk (no byte is hashed)", "pieces": [_rand("cdc min+1", 16 * KiB + 1)]},
    {"name": "max (256 KiB)", "pieces": [_rand("cdc max", 256 * KiB)]},
    {"name": "max + 1", "pieces": [_rand("cdc max+1", 256 * KiB + 1)]},
    {"name": "1 MiB random", "pieces": [_rand("cdc random", MiB)]},
    {"name": "1 MiB of zeros: all max-size chunks", "pieces": [{"kind": "zeros", "length": MiB}]},
    {"name": "text-like (words, low entropy)", "pieces": [{"kind": "words", "seed": "cdc words", "length": MiB}]},
    {"name": "3 MiB mixed", "pieces": [
        _rand("cdc mixed", 700 * KiB), {"kind": "zeros", "length": 300 * KiB + 7},
        {"kind": "words", "seed": "cdc mixed words", "length": 900 * KiB + 1},
        {"kind": "text", "text": "Ward 4 water permits, quarter 3: receipts checked. ", "length": 200 * KiB},
        _rand("cdc mixed", 3 * MiB - 2100 * KiB - 8, 700 * KiB)]},
    {"name": "edit base (2 MiB)", "pieces": [_rand("cdc edit", 2 * MiB)]},
    {"name": "edit: 5 bytes inserted at 1 MiB", "pieces": [
        _rand("cdc edit", MiB), {"kind": "text", "text": "EDIT!", "length": 5}, _rand("cdc edit", MiB, MiB)]},
]


def _tail_cases() -> list[dict[str, Any]]:
    """Two cases on §18d's tail rules: the first seed whose first cut ``k`` is even. Its first ``k + 1``
    bytes are one chunk (an odd remainder's last byte, the one that matches, is never hashed); its
    first ``k + 2`` bytes cut at ``k``, leaving a 2-byte last chunk."""
    for n in range(1000):
        seed = f"cdc tail {n}"
        k = cut_lengths(stream(seed, 0, MAX))[0]
        if k < MAX and k % 2 == 0:
            return [{"name": "odd remainder: its last byte (a match) is not hashed", "pieces": [_rand(seed, k + 1)]},
                    {"name": "a cut 2 bytes before the end: a 2-byte last chunk", "pieces": [_rand(seed, k + 2)]}]
    raise AssertionError("no seed with an even first cut")


CASES[6:6] = _tail_cases()
#: The cases whose ids and manifest hash are given (the three largest).
WITH_IDS = ("3 MiB mixed", "edit base (2 MiB)", "edit: 5 bytes inserted at 1 MiB")


def _reference(keys: chunks.ChunkKeys, data: bytes) -> chunks.Manifest:
    s = chunks.Splitter(keys)
    for _ in s.chunks(io.BytesIO(data)):
        pass
    return s.manifest()


def build() -> dict[str, Any]:
    keys = chunks.ChunkKeys.of(KEY)
    gear = gear_table()
    cases, manifests = [], {}
    for spec in CASES:
        data = case_input(spec)
        m = _reference(keys, data)
        assert list(m.sizes) == cut_lengths(data), f"{spec['name']}: the spec's form disagrees with pyfastcdc"
        case = {**spec, "length": len(data), "sha256": hashlib.sha256(data).hexdigest(), "chunk_lengths": list(m.sizes)}
        if spec["name"] in WITH_IDS:
            case["chunk_ids"] = [c.hex() for c in m.ids]
            case["manifest_sha256"] = hashlib.sha256(m.encode()).hexdigest()
        manifests[spec["name"]] = m
        cases.append(case)
    base, edited = manifests["edit base (2 MiB)"], manifests["edit: 5 bytes inserted at 1 MiB"]

    def cuts(m: chunks.Manifest, shift_after: int = -1, by: int = 0) -> set[int]:
        out, pos = set(), 0
        for n in m.sizes[:-1]:
            pos += n
            out.add(pos - by if pos > shift_after else pos)
        return out

    edit = {
        "base": "edit base (2 MiB)", "edited": "edit: 5 bytes inserted at 1 MiB", "inserted_at": MiB, "inserted": 5,
        "base_chunks": len(base.sizes), "edited_chunks": len(edited.sizes),
        "chunks_kept": len(set(edited.ids) & set(base.ids)),
        "cut_points_kept": len(cuts(base) & cuts(edited, MiB, 5)),
    }
    return {
        "meta": {
            "spec": "PROTOCOL.md §18d, chunker 1",
            "parameters": {"min_size": MIN, "avg_size": AVG, "max_size": MAX, "mask_s": f"{MASK_S:016x}",
                           "mask_l": f"{MASK_L:016x}"},
            "generator": "random: bytes offset..offset+length of S(seed) = SHA-256(seed || u32 BE 0) || "
                         "SHA-256(seed || u32 BE 1) || ... (seed: UTF-8); zeros: length zero bytes; words: for "
                         "each byte b of S(seed), WORDS[b mod 16] then one space, cut to length; text: the "
                         "UTF-8 text repeated, cut to length. A case's input is its pieces in order.",
            "ids": "chunk id = HMAC-SHA256(id_key, chunk)[0:16]; manifest_sha256 = SHA-256 of the manifest "
                   "encoding (§18d) with team_key's epoch, the input's size and SHA-256, these ids and lengths",
        },
        "team_key": {"epoch": KEY.epoch, "secret": KEY.secret.hex(), "id_key": keys.id_key.hex()},
        "words": list(WORDS),
        "gear": [f"{g:016x}" for g in gear],
        "gear_sha256": hashlib.sha256(b"".join(struct.pack(">Q", g) for g in gear)).hexdigest(),
        "cases": cases,
        "edit": edit,
    }
