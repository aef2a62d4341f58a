"""protocol/vectors/zstd.json: which zstd frames a reader accepts (PROTOCOL.md §7), labelled.

Why this file exists: one-bit flips in 600 copies of the vector frames showed a pure-JS zstd
decoder accepting 33 frames that libzstd rejects, and rejecting 1 it accepts (issue 15). A
member's signed batch could then be applied by one client and dropped by another. §7 makes the
rule ours, not the library's; this corpus pins it down.

Library-independent by construction: the base frames are fixed bytes (two written by libzstd
1.5.7 at level 19, kept here as hex so a new zstd release changes nothing; the rest built by
hand from raw and RLE blocks), and every label comes from ``codec.decompress``, the reference
reader. ``cases``: hand-made frames, each with the reason it is accepted or refused. ``flips``:
every single-bit flip of every base frame (bit ``i`` is ``frame[i >> 3] ^= 1 << (i & 7)``),
as a string with one letter per bit: ``a`` still accepted (with the same plaintext: the checksum
would catch any other), or the code it is refused with (``meta.letters``).
"""

from __future__ import annotations

import hashlib
from typing import Any

import xxhash

from hbw_sync import codec
from hbw_sync.errors import HbwError

CAP = 1 << 20  # the cap every case is read with unless it names its own
TEXT = b"Ward 4 water permits: receipts checked, receipts filed, receipts sent. Ward 4 water."
# codec.compress(TEXT) and codec.compress(b"") with libzstd 1.5.7, level 19: one compressed block.
TEXT_FRAME = bytes.fromhex(
    "28b52ffd2454d5010012030b11b0eb0052becd869e49f6311d2c80c95404c161d99dca03cc131ea1ddb63c5e3ddce6d237ebb7"
    "3c0b1b2d2403004ae0cacc335edb7c027c944281"
)
EMPTY_FRAME = bytes.fromhex("28b52ffd240001000099e9d851")


def _checksum(plain: bytes) -> bytes:
    return (xxhash.xxh64_intdigest(plain) & 0xFFFFFFFF).to_bytes(4, "little")


def _block(kind: str, payload: bytes, size: int | None = None, last: bool = False) -> bytes:
    """A block header and its content: raw (``payload``), RLE (one byte, ``size`` times) or compressed."""
    btype = {"raw": 0, "rle": 1, "compressed": 2, "reserved": 3}[kind]
    n = len(payload) if size is None else size
    return (int(last) | btype << 1 | n << 3).to_bytes(3, "little") + payload


def _frame(blocks: bytes, plain: bytes, *, fhd: int | None = None, window: int | None = 0x00, fcs: bytes | None = None,
           checksum: bytes | None = None) -> bytes:
    """magic, header (default: 4-byte content size, window descriptor, checksum flag), blocks, checksum."""
    fhd = 0x84 if fhd is None else fhd
    wd = b"" if window is None else bytes([window])
    fcs = len(plain).to_bytes(4, "little") if fcs is None else fcs
    return codec.ZSTD_MAGIC + bytes([fhd]) + wd + fcs + blocks + (_checksum(plain) if checksum is None else checksum)


def _outcome(frame: bytes, cap: int) -> dict[str, Any]:
    try:
        plain = codec.decompress(frame, cap=cap)
    except HbwError as e:
        return {"expected": "reject", "expected_error": type(e).__name__, "expected_code": e.code}
    out = {"expected": "accept", "plain_size": len(plain), "plain_sha256": hashlib.sha256(plain).hexdigest()}
    return out | ({"plain": plain.hex()} if len(plain) <= 4096 else {})


def _bases() -> dict[str, tuple[bytes, bytes]]:
    """name -> (frame, plaintext); each one accepted."""
    raw_a, raw_b = b"receipts: 12 of 14 ", b"filed."
    blocks_plain = raw_a + b"\x2e" * 300 + raw_b
    blocks = _block("raw", raw_a) + _block("rle", b"\x2e", 300) + _block("raw", raw_b, last=True)
    # TEXT_FRAME's blocks under a header with a window descriptor (1 KiB) and a 4-byte size field
    text_windowed = _frame(TEXT_FRAME[6:-4], TEXT, window=0x00, checksum=TEXT_FRAME[-4:])
    bases = {
        "text": (TEXT_FRAME, TEXT),
        "text_windowed": (text_windowed, TEXT),
        "blocks": (_frame(blocks, blocks_plain), blocks_plain),
        "empty": (EMPTY_FRAME, b""),
    }
    for name, (frame, plain) in bases.items():
        assert codec.decompress(frame, cap=CAP) == plain, name
    return bases


def _cases(bases: dict[str, tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    text, plain = bases["text"]
    blocks, bplain = bases["blocks"]
    one = _block("raw", b"hello", last=True)
    cases: list[tuple[str, str, bytes, int]] = [
        # accepted shapes a writer may choose
        ("single_segment_1_byte_size", "Single segment, 1-byte content size, raw block: the shape of a small frame.",
         _frame(one, b"hello", fhd=0x24, window=None, fcs=b"\x05"), CAP),
        ("size_in_8_bytes", "Content size in an 8-byte field (longer than needed is allowed).",
         _frame(one, b"hello", fhd=0xC4, fcs=(5).to_bytes(8, "little")), CAP),
        ("size_in_2_bytes", "Content size in the 2-byte field (value + 256): 300 bytes of one RLE block.",
         _frame(_block("rle", b"x", 300, last=True), b"x" * 300, fhd=0x44, fcs=(300 - 256).to_bytes(2, "little")), CAP),
        ("unused_bit_set", "Frame header bit 4 (Unused_bit, RFC 8878) set: not interpreted, accepted.",
         _frame(one, b"hello", fhd=0x94), CAP),
        ("window_8_mib", "A window of 8 MiB (the floor of the bound) for 5 bytes.", _frame(one, b"hello", window=0x68), CAP),
        ("window_twice_the_size", "Window 3 MiB (mantissa 4 of 2 MiB) for 1.5 MiB of RLE: within 2 x the size.",
         _frame(b"".join(_block("rle", b"z", 1 << 17, last=i == 11) for i in range(12)), b"z" * (12 << 17),
                window=(11 << 3) | 4), 2 << 20),
        ("empty_raw_block_then_data", "An empty raw block before the last block.",
         _frame(_block("raw", b"") + one, b"hello"), CAP),
        ("at_the_cap", "Content size exactly the cap.", _frame(one, b"hello"), 5),
        # refused
        ("no_checksum", "Checksum flag clear (and no checksum bytes): writers MUST set it.",
         _frame(one, b"hello", fhd=0x80, checksum=b""), CAP),
        ("no_content_size", "Neither a content size nor single segment: the size is not declared.",
         _frame(one, b"hello", fhd=0x04, fcs=b""), CAP),
        ("dictionary_id", "Dictionary id flag set (1-byte id 1): the message header carries the dictionary.",
         codec.ZSTD_MAGIC + bytes([0x85, 0x00, 0x01]) + (5).to_bytes(4, "little") + one + _checksum(b"hello"), CAP),
        ("reserved_bit", "Frame header bit 3 (Reserved_bit) set.", _frame(one, b"hello", fhd=0x8C), CAP),
        ("skippable_frame", "A skippable frame (magic 0x184D2A50) before the data frame.",
         bytes.fromhex("502a4d18") + (4).to_bytes(4, "little") + b"skip" + _frame(one, b"hello"), CAP),
        ("not_zstd", "Not a zstd frame at all.", b"hello world, plain text", CAP),
        ("two_frames", "Two frames back to back: one section is one frame.", _frame(one, b"hello") * 2, CAP),
        ("trailing_byte", "One byte after the checksum.", text + b"\x00", CAP),
        ("checksum_cut", "The last checksum byte missing.", text[:-1], CAP),
        ("magic_only", "The magic number and nothing else.", codec.ZSTD_MAGIC, CAP),
        ("magic_cut", "Three bytes of the magic number.", codec.ZSTD_MAGIC[:3], CAP),
        ("header_cut", "The header ends inside the content size field.", text[:6], CAP),
        ("block_cut", "The stream ends inside the last block.", blocks[:30], CAP),
        ("checksum_wrong", "The right frame with its checksum's first byte flipped.",
         text[:-4] + bytes([text[-4] ^ 1]) + text[-3:], CAP),
        ("size_says_more", "Declares one byte more than the blocks hold.",
         _frame(one, b"hello", fcs=(6).to_bytes(4, "little"), checksum=_checksum(b"hello")), CAP),
        ("size_says_less", "Declares one byte less than the blocks hold.",
         _frame(one, b"hello", fcs=(4).to_bytes(4, "little"), checksum=_checksum(b"hello")), CAP),
        ("rle_over_size", "An RLE block of 1 MiB in a frame that declares 10 bytes: refused before inflating.",
         _frame(b"".join(_block("rle", b"a", 1 << 17, last=i == 7) for i in range(8)), b"a" * 10,
                fcs=(10).to_bytes(4, "little"), window=0x38), 64 << 20),
        ("over_the_cap", "Declares one byte over the cap: a bomb, refused from the header.", _frame(one, b"hello"), 4),
        ("bomb_1_gib", "Declares 1 GiB (RLE blocks of 128 KiB): refused from the header.",
         _frame(_block("rle", b"\x00", 1 << 17), b"", fcs=(1 << 30).to_bytes(8, "little"), fhd=0xC4, window=0x38,
                checksum=b"\x00" * 4), 64 << 20),
        ("window_too_large", "A 16 MiB window for 5 bytes: over max(8 MiB, 2 x size).",
         _frame(one, b"hello", window=0x70), CAP),
        ("block_over_window", "A 2 KiB RLE block in a frame whose window is 1 KiB.",
         _frame(_block("rle", b"w", 2048, last=True), b"w" * 2048), CAP),
        ("block_over_128_kib", "An RLE block of 128 KiB + 1 in a frame with an 8 MiB window.",
         _frame(_block("rle", b"v", (1 << 17) + 1, last=True), b"v" * ((1 << 17) + 1), window=0x68), CAP),
        ("reserved_block_type", "A block of the reserved type 3.",
         _frame(_block("reserved", b"hello", last=True), b"hello"), CAP),
        ("compressed_garbage", "A compressed block holding bytes that are no valid block content.",
         _frame(_block("compressed", b"\xff" * 8, last=True), b"hello"), CAP),
        ("single_segment_raw_over_size", "Single segment of 5 bytes holding a 6-byte raw block.",
         _frame(_block("raw", b"hello!", last=True), b"hello!", fhd=0x24, window=None, fcs=b"\x05"), CAP),
    ]
    out = []
    for name, reason, frame, cap in cases:
        out.append({"name": name, "reason": reason, "frame": frame.hex(), "cap": cap, **_outcome(frame, cap)})
    return out


#: One letter per outcome in ``flips`` (kept to one string per frame: the corpus stays small).
LETTERS = {"accept": "a", "protocol.zstd": "z", "protocol.bomb": "b", "protocol.truncated": "t",
           "protocol.trailing": "r"}


def _flips(frame: bytes) -> str:
    out = []
    for bit in range(len(frame) * 8):
        bad = bytearray(frame)
        bad[bit >> 3] ^= 1 << (bit & 7)
        try:
            codec.decompress(bytes(bad), cap=CAP)
        except HbwError as e:
            out.append(LETTERS[e.code])
        else:
            out.append(LETTERS["accept"])
    return "".join(out)


def build() -> dict[str, Any]:
    bases = _bases()
    return {
        "meta": {
            "rule": "PROTOCOL.md §7; reference codec.decompress. Library-independent: the base frames are fixed bytes",
            "cap": CAP,
            "flip": "bit i flips frame[i >> 3] ^= 1 << (i & 7); every flipped frame is read with cap; "
                    "flips[base] has one letter per bit i, its outcome",
            "letters": {v: k for k, v in LETTERS.items()},
        },
        "bases": [{"name": n, "frame": f.hex(), "plain": p.hex(), "plain_sha256": hashlib.sha256(p).hexdigest()}
                  for n, (f, p) in bases.items()],
        "cases": _cases(bases),
        "flips": {n: _flips(f) for n, (f, _) in bases.items()},
    }
