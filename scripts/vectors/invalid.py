"""protocol/vectors/invalid.json: batches that must fail, each with the stage and code of §9's order.

Each is one change from a valid batch of ``batches.py``; the ones that must fail behind the
signature are assembled by hand and signed properly (``_kit.assemble``).
"""

from __future__ import annotations

from typing import Any

import msgpack
import zstandard

from hbw_sync import batch as B
from hbw_sync import codec, crypto, hlc
from hbw_sync.ops import routing_row

from ._kit import DEVICES, LEVEL, OTHER_TEAM_ID, T0, TEAM_ID, assemble, decode_args, packb, z, zstd_meta
from .batches import encode_spec, valid_batch_specs

# -- invalid batches ----------------------------------------------------------------------


def build() -> dict[str, Any]:
    P = hlc.pack
    specs = {s["name"]: s for s in valid_batch_specs()}
    good = encode_spec(specs["single_task"])
    other = encode_spec(specs["unicode_text"])
    gframe = B.parse_batch(good)
    r_len, s_len = len(gframe.routing), len(gframe.sealed)
    op1 = specs["single_task"]["ops"][0]
    row = routing_row(op1)
    content = [dict(op1.content or {})]
    good_rz, good_cz = z(codec.pack([row])), z(codec.pack(content))
    bomb = z(bytes(codec.DEFAULT_LIMITS.max_plain + 1))
    vectors: list[dict[str, Any]] = []

    def flip(data: bytes, i: int) -> bytes:
        return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]

    def add(name: str, description: str, data: bytes, cls: str, code: str, stage: str, **decode: Any) -> None:
        vectors.append(
            {
                "name": name,
                "description": description,
                "stage": stage,
                "batch": data.hex(),
                "decode": decode_args(**decode),
                "expected_error_class": cls,
                "expected_code": code,
            }
        )

    def signed(name: str, rows: Any, contents: Any = None, *, raw_routing: bytes | None = None,
               raw_content: bytes | None = None, **kw: Any) -> bytes:  # fmt: skip
        rz = raw_routing if raw_routing is not None else z(packb(rows))
        cz = raw_content if raw_content is not None else z(packb(content if contents is None else contents))
        return assemble(rz, cz, name=name, **kw)

    def with_fields(fields: dict[Any, Any]) -> list:
        r = list(row)
        r[4] = fields
        return [r]

    PE, IE, LE, VE = "ProtocolError", "IntegrityError", "LimitError", "VersionError"

    # framing (parse)
    add("empty", "No bytes at all.", b"", PE, "protocol.truncated", "parse")
    add("magic_prefix_only", "The first two magic bytes, then nothing.", b"HB", PE, "protocol.truncated", "parse")
    add("bad_magic", "Magic 'HBX' instead of 'HBW'.", b"HBX" + good[3:], PE, "protocol.magic", "parse")
    add("bad_type", "Message type 'X' instead of 'B'.", good[:3] + b"X" + good[4:], PE, "protocol.magic", "parse")
    add("bad_type_short", "Four bytes 'HBWX': the type byte is already wrong, so it is not a truncated batch.",
        b"HBWX", PE, "protocol.magic", "parse")  # fmt: skip
    add("unknown_version_2", "Format version 2, validly signed.",
        signed("unknown_version_2", [row], version=2), VE, "protocol.version", "parse")  # fmt: skip
    add("version_0", "Format version 0.", signed("version_0", [row], version=0), VE, "protocol.version", "parse")
    add("unknown_flag_bit0", "Flags 0x01, validly signed.",
        signed("unknown_flag_bit0", [row], flags=0x01), VE, "protocol.version", "parse")  # fmt: skip
    add("unknown_flag_bit7", "Flags 0x80, validly signed.",
        signed("unknown_flag_bit7", [row], flags=0x80), VE, "protocol.version", "parse")  # fmt: skip
    add("truncated_in_header", "Cut after 20 bytes.", good[:20], PE, "protocol.truncated", "parse")
    add("truncated_header_minus_1", "Cut 1 byte short of the 46-byte header.", good[:45], PE, "protocol.truncated", "parse")
    add("truncated_after_header", "The header alone.", good[:46], PE, "protocol.truncated", "parse")
    add("truncated_in_routing", "Cut in the middle of the routing section.", good[: 46 + r_len // 2],
        PE, "protocol.truncated", "parse")  # fmt: skip
    add("truncated_in_sealed", "Cut 1 byte before the end of the sealed section.", good[: 46 + r_len + s_len - 1],
        PE, "protocol.truncated", "parse")  # fmt: skip
    add("truncated_no_signature", "The signature is missing.", good[:-64], PE, "protocol.truncated", "parse")
    add("truncated_in_signature", "The last byte of the signature is missing.", good[:-1], PE, "protocol.truncated", "parse")
    add("trailing_byte", "One zero byte after the signature.", good + b"\x00", PE, "protocol.trailing", "parse")
    add("seq_zero", "Sequence number 0 (they start at 1), validly signed.",
        signed("seq_zero", [row], seq=0), PE, "protocol.schema", "parse")  # fmt: skip
    add("over_max_message", "A valid batch decoded with max_message = 100 bytes.", good, LE, "protocol.limit", "parse",
        limits={"max_message": 100})  # fmt: skip

    # team and signature
    add("wrong_team", "A batch of another team, validly signed by an enrolled device.",
        signed("wrong_team", [row], team=OTHER_TEAM_ID), IE, "integrity.team", "team")  # fmt: skip
    add("tampered_team", "The team id byte flipped: refused as foreign before the signature is checked.",
        flip(good, 6), IE, "integrity.team", "team")  # fmt: skip
    add("flipped_seq", "One bit of the sequence number flipped (seq 1 -> 257).", flip(good, 28), IE, "integrity.signature", "signature")
    add("flipped_epoch", "One bit of the key epoch flipped.", flip(good, 33), IE, "integrity.signature", "signature")
    add("flipped_routing", "One bit flipped in the routing section.", flip(good, 46 + r_len // 2),
        IE, "integrity.signature", "signature")  # fmt: skip
    add("flipped_sealed", "One bit flipped in the sealed section.", flip(good, 46 + r_len + s_len // 2),
        IE, "integrity.signature", "signature")  # fmt: skip
    add("flipped_signature", "One bit flipped in the signature.", flip(good, len(good) - 10),
        IE, "integrity.signature", "signature")  # fmt: skip
    add("wrong_device_key", "A valid batch checked against another device's public key.", good,
        IE, "integrity.device", "signature", device="d2")  # fmt: skip
    add("forged_device_id", "Header names device d2 but d1 signed it; checked with d2's key.",
        signed("forged_device_id", [row], device_id=DEVICES["d2"].device_id), IE, "integrity.signature", "signature",
        device="d2")  # fmt: skip

    # keys and AEAD
    add("epoch_not_held", "A valid epoch-1 batch; the decoder holds only epoch 2.", good,
        "WrongKeyError", "access.wrong_key", "key", keys=("t2",))  # fmt: skip
    add("wrong_secret_same_epoch", "A valid batch opened with another epoch-1 secret.", good,
        IE, "integrity.aead", "content", keys=("impostor",))  # fmt: skip
    add("content_spliced", "The sealed section of another batch, re-signed: the AAD no longer matches.",
        assemble(good_rz, name="content_spliced", sealed=B.parse_batch(other).sealed),
        IE, "integrity.aead", "content")  # fmt: skip
    add("content_sealed_with_other_aad", "Content sealed with a different header's AAD (seq 2), signed as seq 1.",
        assemble(good_rz, good_cz, name="content_sealed_with_other_aad",
                 aad=B.HEADER.pack(B.MAGIC, B.TYPE_BATCH, b"\x01", 0, TEAM_ID, DEVICES["d1"].device_id, 2, 1, 0,
                                   len(good_rz), crypto.NONCE_LEN + len(good_cz) + crypto.TAG_LEN) + good_rz),
        IE, "integrity.aead", "content")  # fmt: skip
    add("sealed_too_short", "A 27-byte sealed section (shorter than nonce + tag), validly signed.",
        assemble(good_rz, name="sealed_too_short", sealed=bytes(27)), PE, "protocol.truncated", "content")  # fmt: skip

    # zstd
    add("routing_bomb", "Routing declares 64 MiB + 1 of plaintext (zeros): refused from the frame header.",
        signed("routing_bomb", None, raw_routing=bomb), LE, "protocol.bomb", "routing")  # fmt: skip
    add("content_bomb", "Content declares 64 MiB + 1 of plaintext: refused after the AEAD opens.",
        signed("content_bomb", [row], raw_content=bomb), LE, "protocol.bomb", "content")  # fmt: skip
    add("routing_not_zstd", "Routing is bare msgpack, not a zstd frame.",
        signed("routing_not_zstd", None, raw_routing=codec.pack([row])), PE, "protocol.zstd", "routing")  # fmt: skip
    add("routing_no_content_size", "Routing frame does not declare its decompressed size.",
        signed("routing_no_content_size", None,
               raw_routing=zstandard.ZstdCompressor(level=LEVEL, write_content_size=False, write_checksum=True)
               .compress(codec.pack([row]))),
        PE, "protocol.zstd", "routing")  # fmt: skip
    add("routing_no_checksum", "Routing frame without a content checksum (PROTOCOL.md §7: writers MUST set it).",
        signed("routing_no_checksum", None,
               raw_routing=zstandard.ZstdCompressor(level=LEVEL, write_checksum=False).compress(codec.pack([row]))),
        PE, "protocol.zstd", "routing")  # fmt: skip
    add("content_bad_checksum", "Content frame whose checksum's first byte is flipped, sealed and signed.",
        signed("content_bad_checksum", [row], raw_content=flip(z(codec.pack([{}])), len(z(codec.pack([{}]))) - 4)),
        PE, "protocol.zstd", "content")  # fmt: skip
    add("routing_zstd_trailing", "One byte after the routing zstd frame.",
        signed("routing_zstd_trailing", None, raw_routing=good_rz + b"\x00"), PE, "protocol.trailing", "routing")  # fmt: skip
    add("routing_zstd_truncated", "The routing zstd frame lacks its last byte.",
        signed("routing_zstd_truncated", None, raw_routing=good_rz[:-1]), PE, "protocol.truncated", "routing")  # fmt: skip
    add("unknown_dictionary", "Header names zstd dictionary 7, which no version ships.",
        signed("unknown_dictionary", [row], dict_id=7), VE, "protocol.version", "routing")  # fmt: skip

    # msgpack
    add("msgpack_ext_type", "An ext type (5) as a field value.",
        signed("msgpack_ext_type", with_fields({1: msgpack.ExtType(5, b"x")})), PE, "protocol.msgpack", "routing")  # fmt: skip
    add("msgpack_timestamp_ext", "A msgpack timestamp (ext -1) as the due date.",
        signed("msgpack_timestamp_ext", with_fields({3: msgpack.Timestamp(1_760_000_000, 0)})),
        PE, "protocol.msgpack", "routing")  # fmt: skip
    add("msgpack_trailing", "Routing msgpack followed by another object.",
        signed("msgpack_trailing", None, raw_routing=z(packb([row]) + b"\xc0")), PE, "protocol.trailing", "routing")  # fmt: skip
    add("msgpack_truncated", "Routing msgpack array missing its last element.",
        signed("msgpack_truncated", None, raw_routing=z(packb([row])[:-1])), PE, "protocol.msgpack", "routing")  # fmt: skip

    # schema and order (behind the signature and the AEAD)
    add("routing_not_array", "Routing is a map, not an array of ops.",
        signed("routing_not_array", {0: row}), PE, "protocol.schema", "routing")  # fmt: skip
    add("routing_empty", "Routing is an empty array.", signed("routing_empty", [], []), PE, "protocol.schema", "routing")
    add("too_many_ops", "Three ops decoded with max_ops = 2.",
        signed("too_many_ops", [routing_row(o) for o in specs["empty_sections"]["ops"]], [{}, {}, {}]),
        LE, "protocol.limit", "routing", limits={"max_ops": 2})  # fmt: skip
    add("content_count_mismatch", "One op in routing, two content maps.",
        signed("content_count_mismatch", [row], content + [{}]), PE, "protocol.schema", "content")  # fmt: skip
    add("op_wrong_arity", "An op array of 4 elements.", signed("op_wrong_arity", [row[:4]]), PE, "protocol.schema", "ops")
    add("unknown_kind", "Entity kind 9.", signed("unknown_kind", [[9, *row[1:]]]), PE, "protocol.schema", "ops")
    add("unknown_field_tag", "Task routing tag 7, which the registry does not define.",
        signed("unknown_field_tag", with_fields({7: 1})), PE, "protocol.schema", "ops")  # fmt: skip
    add("content_tag_in_routing", "Tag 32 (title, a content field) in the routing map.",
        signed("content_tag_in_routing", with_fields({32: "leaked"})), PE, "protocol.schema", "ops")  # fmt: skip
    add("routing_tag_in_content", "Tag 2 (status, a routing field) in the content map.",
        signed("routing_tag_in_content", [row], [{2: 1}]), PE, "protocol.schema", "ops")  # fmt: skip
    add("string_field_key", "A field keyed by its name instead of its tag.",
        signed("string_field_key", [[*row[:4], {"status": 1}]]), PE, "protocol.schema", "ops")  # fmt: skip
    add("bool_as_int", "status = true: booleans are not integers.",
        signed("bool_as_int", with_fields({2: True})), PE, "protocol.schema", "ops")  # fmt: skip
    add("int_as_bool", "pinned = 1: integers are not booleans.",
        signed("int_as_bool", with_fields({6: 1})), PE, "protocol.schema", "ops")  # fmt: skip
    add("float_value", "priority = 1.0: floats are never valid.",
        signed("float_value", with_fields({4: 1.0})), PE, "protocol.schema", "ops")  # fmt: skip
    add("value_out_of_range", "status = 4 (0-3 allowed).",
        signed("value_out_of_range", with_fields({2: 4})), PE, "protocol.schema", "ops")  # fmt: skip
    add("null_not_nullable", "status = nil: status is not nullable.",
        signed("null_not_nullable", with_fields({2: None})), PE, "protocol.schema", "ops")  # fmt: skip
    add("bad_member_name", "assignee 'Amina' (handles are lower case).",
        signed("bad_member_name", with_fields({1: "Amina"})), PE, "protocol.schema", "ops")  # fmt: skip
    add("text_as_bytes", "title sent as bin instead of str.",
        signed("text_as_bytes", [row], [{32: b"File the Q3 returns"}]), PE, "protocol.schema", "ops")  # fmt: skip
    add("entity_as_str", "Entity id sent as str instead of bin.",
        signed("entity_as_str", [[row[0], "task-1", *row[2:]]]), PE, "protocol.schema", "ops")  # fmt: skip
    add("entity_too_long", "A 33-byte entity id.",
        signed("entity_too_long", [[row[0], b"e" * 33, *row[2:]]]), PE, "protocol.schema", "ops")  # fmt: skip
    add("base_wrong_length", "A 15-byte base op id.",
        signed("base_wrong_length", [[*row[:3], b"b" * 15, row[4]]]), PE, "protocol.schema", "ops")  # fmt: skip
    add("hlc_zero", "HLC 0.", signed("hlc_zero", [[*row[:2], 0, *row[3:]]]), PE, "protocol.schema", "ops")
    add("hlc_equal", "Two ops with the same HLC.",
        signed("hlc_equal", [row, row], content * 2), PE, "protocol.order", "ops")  # fmt: skip
    add("hlc_decreasing", "The second op's HLC is lower than the first's.",
        signed("hlc_decreasing", [row, [*row[:2], P(T0 - 1, 0), *row[3:]]], content * 2),
        PE, "protocol.order", "ops")  # fmt: skip

    return {"meta": zstd_meta(), "invalid": vectors}
