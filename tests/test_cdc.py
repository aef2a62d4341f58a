"""Chunker 1 (PROTOCOL.md §18d) against ``protocol/vectors/cdc.json``: the cut points are protocol.

Why: a reader of a derived manifest (§18e) cuts the rebuilt file itself, so ``chunks.Splitter``
(a stream read in pieces) and ``chunks.PushSplitter`` (bytes pushed by a delta's rebuild) must both
find exactly the cut points the vector file records, however the bytes arrive; and nobody may
change ``_cdc()``'s parameters, the GEAR table or the masks without these tests failing.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import struct
import sys
from itertools import cycle
from pathlib import Path
from typing import Any

import pytest

from hbw_sync import chunks, crypto

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from vectors import cdc as gen  # noqa: E402  (the input pieces and the spec's one-byte form)

CDC = json.loads((ROOT / "protocol" / "vectors" / "cdc.json").read_text(encoding="utf-8"))
SPEC = (ROOT / "protocol" / "PROTOCOL.md").read_text(encoding="utf-8")
KEYS = chunks.ChunkKeys.of(crypto.TeamKey(CDC["team_key"]["epoch"], bytes.fromhex(CDC["team_key"]["secret"])))
CASES = [pytest.param(c, id=c["name"]) for c in CDC["cases"]]
SMALL = [pytest.param(c, id=c["name"]) for c in CDC["cases"] if c["length"] <= chunks.CHUNK_MAX + 1]
_INPUTS: dict[str, bytes] = {}


def data_of(case: dict[str, Any]) -> bytes:
    if case["name"] not in _INPUTS:
        _INPUTS[case["name"]] = gen.case_input(case)
    return _INPUTS[case["name"]]


def check(case: dict[str, Any], m: chunks.Manifest, pieces: list[bytes]) -> None:
    """The manifest and chunks a splitter made are the case's, ids and manifest hash included."""
    data = data_of(case)
    assert list(m.sizes) == case["chunk_lengths"]
    assert b"".join(pieces) == data and m.sha256.hex() == case["sha256"] and m.size == case["length"]
    assert list(m.ids) == [KEYS.chunk_id(p) for p in pieces]
    if "chunk_ids" in case:
        assert [c.hex() for c in m.ids] == case["chunk_ids"]
        assert hashlib.sha256(m.encode()).hexdigest() == case["manifest_sha256"]


class Trickle(io.RawIOBase):
    """A stream that hands out at most the next of ``sizes`` bytes per read (a slow link, a pipe)."""

    def __init__(self, data: bytes, sizes: list[int]):
        self.data, self.at, self.sizes = data, 0, cycle(sizes)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), next(self.sizes), len(self.data) - self.at)
        b[:n] = self.data[self.at:self.at + n]
        self.at += n
        return n


def splitter(data: bytes, reads: list[int] | None = None) -> tuple[chunks.Manifest, list[bytes]]:
    s = chunks.Splitter(KEYS)
    src = io.BytesIO(data) if reads is None else Trickle(data, reads)
    pieces = [bytes(view) for _cid, view in s.chunks(src)]  # type: ignore[arg-type]
    return s.manifest(), pieces


def pusher(data: bytes, sizes: list[int]) -> tuple[chunks.Manifest, list[bytes]]:
    s = chunks.PushSplitter(KEYS)
    out: list[bytes] = []
    at, it = 0, cycle(sizes)
    while at < len(data):
        n = next(it)
        out += [p for _cid, p in s.feed(data[at:at + n])]
        at += n
    out += [p for _cid, p in s.finish()]
    return s.manifest(), out


#: Odd piece sizes around the chunker's bounds (so pieces end inside, at and across chunks).
ODD = [1, 4093, 16385, 3, 65537, 262143, 262145, 777_777, 7]


@pytest.mark.parametrize("case", CASES)
def test_every_input_is_what_its_pieces_say(case: dict[str, Any]) -> None:
    data = data_of(case)
    assert len(data) == case["length"] and hashlib.sha256(data).hexdigest() == case["sha256"]


@pytest.mark.parametrize("case", CASES)
def test_splitter_finds_the_cut_points_read_whole_and_in_odd_reads(case: dict[str, Any]) -> None:
    check(case, *splitter(data_of(case)))
    check(case, *splitter(data_of(case), [7919, 1, 300_007, 65_535]))


@pytest.mark.parametrize("case", CASES)
def test_push_splitter_finds_the_cut_points_fed_whole_and_in_odd_pieces(case: dict[str, Any]) -> None:
    data = data_of(case)
    check(case, *pusher(data, [max(1, len(data))]))
    check(case, *pusher(data, ODD))


@pytest.mark.parametrize("case", SMALL)
def test_push_splitter_finds_the_cut_points_fed_one_byte_at_a_time(case: dict[str, Any]) -> None:
    check(case, *pusher(data_of(case), [1]))


@pytest.mark.parametrize("case", [c for c in CASES if c.values[0]["length"]])
def test_trailing_data_changes_only_the_last_chunk(case: dict[str, Any]) -> None:
    """A cut depends only on the bytes from its chunk's start: more data after a case leaves every
    chunk but its last, which was cut by the end of the data."""
    want = case["chunk_lengths"]
    for tail in (b"\x00", gen.stream("cdc trailing", 0, 300_000)):
        m, _ = pusher(data_of(case) + tail, ODD)
        assert list(m.sizes[:len(want) - 1]) == want[:-1]
        assert sum(m.sizes[len(want) - 1:]) == want[-1] + len(tail)


@pytest.mark.parametrize("case", CASES)
def test_the_reference_chunker_keeps_chunker_1s_parameters(case: dict[str, Any]) -> None:
    """Fails when someone changes ``_cdc()`` (sizes, normalization, seed) or the library's tables."""
    got = [c.length for c in chunks._cdc().cut_buf(data_of(case))]
    assert got == case["chunk_lengths"]


@pytest.mark.parametrize("case", CASES)
def test_the_spec_one_byte_form_finds_the_cut_points(case: dict[str, Any]) -> None:
    assert gen.cut_lengths(data_of(case)) == case["chunk_lengths"]


def test_the_edit_pair_keeps_all_but_the_edited_chunk() -> None:
    e = CDC["edit"]
    by = {c["name"]: c for c in CDC["cases"]}
    base, edited = by[e["base"]], by[e["edited"]]
    kept = set(base["chunk_ids"]) & set(edited["chunk_ids"])
    assert len(kept) == e["chunks_kept"] == e["base_chunks"] - 1 == len(edited["chunk_ids"]) - 1
    assert data_of(edited) == data_of(base)[:e["inserted_at"]] + b"EDIT!" + data_of(base)[e["inserted_at"]:]


def _spec_hex(name: str) -> int:
    m = re.search(rf"`{name}` = `0x([0-9a-f]{{16}})`", SPEC)
    assert m, f"PROTOCOL.md §18d does not state {name}"
    return int(m[1], 16)


def test_the_spec_the_vectors_and_the_library_agree_on_gear_and_masks() -> None:
    from pyfastcdc.py import constants

    gear = [int(g, 16) for g in CDC["gear"]]
    assert gear == list(constants.GEAR)
    assert [(g << 1) & (1 << 64) - 1 for g in gear] == list(constants.GEAR_LS)
    assert hashlib.sha256(b"".join(struct.pack(">Q", g) for g in gear)).hexdigest() == CDC["gear_sha256"]
    appendix = SPEC[SPEC.index("### Chunker 1: the GEAR table"):]
    appendix = appendix[:appendix.index("\n## ")]
    assert [int(g, 16) for g in re.findall(r"\b[0-9a-f]{16}\b", appendix)] == gear
    assert CDC["gear_sha256"] in appendix
    assert (_spec_hex("MASK_S"), _spec_hex("MASK_L")) == (constants.MASKS[17], constants.MASKS[15])
    assert (int(CDC["meta"]["parameters"]["mask_s"], 16), int(CDC["meta"]["parameters"]["mask_l"], 16)) == (
        gen.MASK_S, gen.MASK_L) == (constants.MASKS[17], constants.MASKS[15])
    assert bin(gen.MASK_S).count("1") == 17 and bin(gen.MASK_L).count("1") == 15
    cdc = chunks._cdc()
    assert (cdc.min_size, cdc.avg_size, cdc.max_size) == (gen.MIN, gen.AVG, gen.MAX) == (
        chunks.CHUNK_MIN, chunks.CHUNK_AVG, chunks.CHUNK_MAX)
