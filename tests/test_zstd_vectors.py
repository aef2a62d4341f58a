"""protocol/vectors/zstd.json: the reference reader gives every labelled frame its label.

The corpus is what makes the zstd rule of PROTOCOL.md §7 library-independent: a second
implementation (protocol/conformance/) must reach the same accept/reject and code on every
case and every one-bit flip. These tests hold the Python reader to it, and check that the
corpus keeps covering each rule, so a generator change cannot quietly drop one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from hbw_sync import codec
from hbw_sync.errors import HbwError

CORPUS = json.loads((Path(__file__).resolve().parent.parent / "protocol" / "vectors" / "zstd.json").read_text())


def _read(frame: bytes, cap: int) -> dict[str, Any]:
    try:
        plain = codec.decompress(frame, cap=cap)
    except HbwError as e:
        return {"expected": "reject", "expected_error": type(e).__name__, "expected_code": e.code}
    out = {"expected": "accept", "plain_size": len(plain), "plain_sha256": hashlib.sha256(plain).hexdigest()}
    return out | ({"plain": plain.hex()} if len(plain) <= 4096 else {})


@pytest.mark.parametrize("case", CORPUS["cases"], ids=lambda c: c["name"])
def test_every_case_gets_its_label(case: dict[str, Any]) -> None:
    got = _read(bytes.fromhex(case["frame"]), case["cap"])
    assert got == {k: case[k] for k in case if k not in ("name", "reason", "frame", "cap")}


@pytest.mark.parametrize("base", CORPUS["bases"], ids=lambda b: b["name"])
def test_every_flip_gets_its_label(base: dict[str, Any]) -> None:
    frame = bytes.fromhex(base["frame"])
    assert codec.decompress(frame, cap=CORPUS["meta"]["cap"]).hex() == base["plain"]
    letters = CORPUS["flips"][base["name"]]
    assert len(letters) == len(frame) * 8, "every bit is labelled once"
    for bit, letter in enumerate(letters):
        label = CORPUS["meta"]["letters"][letter]
        bad = bytearray(frame)
        bad[bit >> 3] ^= 1 << (bit & 7)
        got = _read(bytes(bad), CORPUS["meta"]["cap"])
        if label == "accept":  # the checksum guarantees an accepted flip reads the same bytes
            assert got.get("plain") == base["plain"], bit
        else:
            assert got.get("expected_code") == label, bit


def test_the_corpus_covers_each_rule() -> None:
    outcomes = {c["name"]: (c["expected"], c.get("expected_code")) for c in CORPUS["cases"]}
    assert {code for _, code in outcomes.values()} >= {
        "protocol.zstd", "protocol.bomb", "protocol.truncated", "protocol.trailing"}
    for name in ("no_checksum", "no_content_size", "dictionary_id", "reserved_bit", "skippable_frame",
                 "window_too_large", "block_over_window", "rle_over_size", "checksum_wrong"):
        assert outcomes[name] == ("reject", "protocol.zstd"), name
    for name in ("unused_bit_set", "size_in_8_bytes", "window_8_mib", "single_segment_1_byte_size"):
        assert outcomes[name] == ("accept", None), name


def test_writers_set_size_and_checksum() -> None:
    for data in (b"", b"x", b"abc" * 1000):
        frame = codec.compress(data)
        info = codec.check_frame(frame, cap=len(data))
        assert frame[4] & 0x04 and info.content_size == len(data)
