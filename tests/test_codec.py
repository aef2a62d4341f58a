"""Strict msgpack and bounded zstd: every hostile input is a ProtocolError, never a library error."""

from __future__ import annotations

import os
import random
import tracemalloc

import msgpack
import pytest
import zstandard
from conftest import rle_bomb, scaled_examples, with_content_size, zstd_header_fields
from hypothesis import given, settings
from hypothesis import strategies as st

from hbw_sync import codec
from hbw_sync.codec import Limits
from hbw_sync.errors import HbwError, LimitError, ProtocolError, VersionError

SAMPLE = [
    [1, b"task-1", 123456789, None, {1: "anna.k", 2: 3, 3: None}],
    {32: "Überprüfung ✓ 市役所", 33: "x" * 300, 34: b"\x00\xff" * 10},
    [True, False, None, -1, 2**63, 1.5, "", b""],
]
VALUE = codec.pack(SAMPLE)


def _varied(n: int, seed: int = 7) -> bytes:
    """Compressible but not trivially repetitive text: multi-block, mostly compressed blocks."""
    rng = random.Random(seed)
    words = [b"task", b"status", b"Bezirksamt", b"note", b"due", b"\xc3\xbcber", b"report", b"2024"]
    out = bytearray()
    while len(out) < n:
        out += rng.choice(words) + bytes([rng.randrange(32, 127)])
    return bytes(out[:n])


# -- msgpack -----------------------------------------------------------------------------------


def test_pack_unpack_round_trip_keeps_bin_and_str_apart():
    assert codec.unpack(VALUE) == SAMPLE
    assert type(codec.unpack(codec.pack(b"abc"))) is bytes
    assert type(codec.unpack(codec.pack("abc"))) is str
    assert codec.unpack(codec.pack({1: 2})) == {1: 2}  # integer map keys are allowed


def test_unpack_every_proper_prefix_is_refused():
    for i in range(len(VALUE)):
        with pytest.raises(ProtocolError):
            codec.unpack(VALUE[:i])


def test_unpack_trailing_data_is_refused():
    for extra in (b"\x00", b"\xc0", VALUE, b"garbage"):
        with pytest.raises(ProtocolError) as ei:
            codec.unpack(VALUE + extra)
        assert ei.value.code == "protocol.trailing"


@pytest.mark.parametrize(
    "raw",
    [
        msgpack.packb(msgpack.ExtType(5, b"abc")),
        msgpack.packb(msgpack.ExtType(5, b"")),  # zero length slips under max_ext_len: the hook refuses it
        b"\xd6\xff\x00\x00\x00\x00",  # the timestamp extension (type -1)
        msgpack.packb(msgpack.Timestamp(1, 0), datetime=False),
        b"\xc7\x00\xff",  # timestamp ext of length 0
        msgpack.packb([1, msgpack.ExtType(1, b"x")]),
        msgpack.packb({1: msgpack.ExtType(1, b"x")}),
    ],
)
def test_unpack_refuses_extension_types(raw):
    with pytest.raises(ProtocolError) as ei:
        codec.unpack(raw)
    assert ei.value.code == "protocol.msgpack"


@pytest.mark.parametrize("depth", [2_000, 100_000])
def test_unpack_deep_nesting_is_a_protocol_error_not_recursion(depth):
    for opener in (b"\x91", b"\x81\x00"):  # array of one, map of one
        with pytest.raises(ProtocolError):
            codec.unpack(opener * depth + b"\x00")


@pytest.mark.parametrize(
    "raw",
    [
        b"\xc1",  # never-used byte
        b"\xdd\xff\xff\xff\xff",  # array32 of 4 G elements, no body
        b"\xdf\xff\xff\xff\xff",  # map32 of 4 G pairs, no body
        b"\xdb\xff\xff\xff\xff",  # str32 of 4 GiB, no body
        b"\xc6\xff\xff\xff\xff",  # bin32 of 4 GiB, no body
        b"\xa3\xff\xfe\xfd",  # str that is not UTF-8
        b"\x81\x91\x00\x00",  # map key that is an array (unhashable)
        b"",
    ],
)
def test_unpack_malformed_is_protocol_error(raw):
    with pytest.raises(ProtocolError):
        codec.unpack(raw)


def test_unpack_maps_a_recursion_error_to_protocol_error(monkeypatch):
    # both msgpack implementations stop deep nesting themselves; should one ever recurse
    # instead, the Python limit must still surface as a ProtocolError
    def recursing(*a, **kw):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(codec.msgpack, "unpackb", recursing)
    with pytest.raises(ProtocolError) as ei:
        codec.unpack(b"\x91\x00")
    assert ei.value.code == "protocol.msgpack"


def test_hypothesis_profile_follows_the_environment():
    from hypothesis import settings as current

    assert current().max_examples == scaled_examples(100)
    assert current().deadline is None


@pytest.mark.parametrize("raw", [b"\x82\x01\x01\x01\x02", b"\x82\xa1a\x00\xa1a\x00", b"\x91\x82\x00\xc0\x00\xc3"])
def test_unpack_refuses_duplicate_map_keys(raw):
    # {1: 1, 1: 2} could mean either value to two decoders
    with pytest.raises(ProtocolError) as ei:
        codec.unpack(raw)
    assert ei.value.code == "protocol.msgpack"


def test_unpack_container_and_string_limits():
    small = Limits(max_container=3, max_str=4, max_plain=4)
    assert codec.unpack(codec.pack([1, 2, 3]), small) == [1, 2, 3]
    assert codec.unpack(codec.pack({1: 1, 2: 2, 3: 3}), small) == {1: 1, 2: 2, 3: 3}
    assert codec.unpack(codec.pack("abcd"), small) == "abcd"
    assert codec.unpack(codec.pack(b"abcd"), small) == b"abcd"
    for over in ([1, 2, 3, 4], {1: 1, 2: 2, 3: 3, 4: 4}, [[1, 2, 3, 4]], "abcde", b"abcde"):
        with pytest.raises(ProtocolError):
            codec.unpack(codec.pack(over), small)


def test_unpack_over_long_container_header_does_not_allocate():
    # A 5-byte header claiming 2**32-1 elements must be refused from the header.
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            codec.unpack(b"\xdd\xff\xff\xff\xff" + b"\x00" * 16)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * 1024 * 1024


@settings(max_examples=scaled_examples(300))
@given(st.binary(max_size=200))
def test_fuzz_unpack_only_protocol_errors(data):
    try:
        codec.unpack(data, Limits(max_container=100, max_str=100, max_plain=100))
    except ProtocolError:
        pass


# -- zstd framing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        _varied(300 * 1024),  # compressed blocks
        os.urandom(300 * 1024),  # raw blocks
        b"\x07" * (300 * 1024),  # RLE blocks
        _varied(130 * 1024) + os.urandom(130 * 1024) + b"\x00" * (130 * 1024),  # a mixture
    ],
    ids=["compressed", "raw", "rle", "mixed"],
)
@pytest.mark.parametrize("checksum", [False, True])
def test_zstd_frame_length_on_multi_block_frames(data, checksum):
    frame = zstandard.ZstdCompressor(level=1, write_content_size=True, write_checksum=checksum).compress(data)
    assert codec.zstd_frame_length(frame) == len(frame)
    assert codec.zstd_frame_length(frame + b"trailing garbage") == len(frame)
    if checksum:
        assert codec.decompress(frame, cap=len(data)) == data
    else:  # PROTOCOL.md §7: a frame without a content checksum is refused
        with pytest.raises(ProtocolError) as ei:
            codec.decompress(frame, cap=len(data))
        assert ei.value.code == "protocol.zstd"


def test_zstd_frame_length_counts_blocks_of_the_rle_bomb():
    frame = rle_bomb(5 * 128 * 1024 + 17, byte=0x41)
    assert codec.zstd_frame_length(frame) == len(frame)
    # the hand-made frame is a real zstd frame: the library inflates it to what it declares
    assert zstandard.ZstdDecompressor().decompress(frame) == b"A" * (5 * 128 * 1024 + 17)
    assert codec.decompress(frame, cap=1 << 20) == b"A" * (5 * 128 * 1024 + 17)


@pytest.mark.parametrize("data", [b"", b"x", b"hello " * 100, _varied(5000)])
def test_compress_decompress_round_trip(data):
    frame = codec.compress(data)
    assert zstandard.frame_content_size(frame) == len(data)
    assert zstd_header_fields(frame)["checksum"]  # writers MUST set it (PROTOCOL.md §7)
    assert codec.decompress(frame, cap=len(data)) == data


def test_decompress_every_proper_prefix_is_refused():
    frame = codec.compress(_varied(200 * 1024), level=1)
    step = max(1, len(frame) // 3000)
    cuts = sorted(set(range(0, len(frame), step)) | set(range(min(64, len(frame)))) | {len(frame) - 1})
    for i in cuts:
        with pytest.raises(ProtocolError):
            codec.decompress(frame[:i], cap=1 << 20)


def test_decompress_small_frame_every_prefix_byte_by_byte():
    frame = codec.compress(b"hello hbw " * 50)
    for i in range(len(frame)):
        with pytest.raises(ProtocolError):
            codec.decompress(frame[:i], cap=1 << 20)


@pytest.mark.parametrize("extra", [b"\x00", b"garbage", None])
def test_decompress_trailing_bytes_inside_a_section(extra):
    frame = codec.compress(b"payload " * 20)
    tail = frame if extra is None else extra  # a second whole frame is trailing too
    with pytest.raises(ProtocolError) as ei:
        codec.decompress(frame + tail, cap=1 << 20)
    assert ei.value.code == "protocol.trailing"


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x28\xb5\x2f", b"\x28\xb5\x2f\xfd", b"not zstd at all", b"\x50\x2a\x4d\x18" + b"\x00" * 8, os.urandom(64)],
)
def test_decompress_garbage(garbage):
    with pytest.raises(ProtocolError):
        codec.decompress(garbage, cap=1 << 20)


def test_decompress_frame_lying_about_its_size():
    data = _varied(5000)
    frame = codec.compress(data)
    assert codec.decompress(with_content_size(frame, len(data)), cap=1 << 20) == data  # the rebuild is faithful
    for lie in (len(data) - 1, len(data) // 2, 1, 0):
        with pytest.raises(ProtocolError):
            codec.decompress(with_content_size(frame, lie), cap=1 << 20)
    with pytest.raises(ProtocolError):
        codec.decompress(with_content_size(frame, len(data) + 1), cap=1 << 20)


def test_decompress_patched_size_field_in_place():
    data = _varied(3000)
    frame = bytearray(codec.compress(data))
    h = zstd_header_fields(bytes(frame))
    assert h["fcs_len"] == 2  # 256 + field
    pos = h["fcs_pos"]
    for field in (0, 1, len(data) - 256 - 1, len(data) - 256 + 1):
        patched = bytearray(frame)
        patched[pos : pos + 2] = field.to_bytes(2, "little")
        with pytest.raises(ProtocolError):
            codec.decompress(bytes(patched), cap=1 << 20)


def test_decompress_empty_frame_lying_size_zero_is_refused():
    # python-zstandard returns b"" for any frame that declares size 0 without decoding it
    frame = codec.compress(b"not empty at all")
    with pytest.raises(ProtocolError):
        codec.decompress(with_content_size(frame, 0), cap=1 << 20)
    assert codec.decompress(codec.compress(b""), cap=0) == b""


@pytest.mark.parametrize("how", ["compressobj", "no_content_size"])
def test_decompress_frame_without_content_size(how):
    data = _varied(4000)
    if how == "compressobj":
        cobj = zstandard.ZstdCompressor(write_checksum=True).compressobj()
        frame = cobj.compress(data) + cobj.flush()
    else:
        frame = zstandard.ZstdCompressor(write_content_size=False, write_checksum=True).compress(data)
    assert zstandard.frame_content_size(frame) == -1
    with pytest.raises(ProtocolError) as ei:
        codec.decompress(frame, cap=1 << 20)
    assert ei.value.code == "protocol.zstd"


@pytest.mark.parametrize("size", [(1 << 64) - 2, (1 << 64) - 1])
def test_decompress_content_size_sentinels(size):
    # 2**64-1 reads as "unknown", 2**64-2 as the library's error marker: both are refused cleanly
    frame = with_content_size(codec.compress(b"abc"), size)
    with pytest.raises(ProtocolError):
        codec.decompress(frame, cap=1 << 20)


def test_decompress_header_reserved_bit_and_huge_window():
    frame = codec.compress(b"abc" * 100)
    reserved = bytearray(frame)
    reserved[4] |= 0x08
    with pytest.raises(ProtocolError):
        codec.decompress(bytes(reserved), cap=1 << 20)
    huge_window = codec.ZSTD_MAGIC + bytes([0xC4, 0xF8]) + (300).to_bytes(8, "little") + frame[zstd_header_fields(frame)["header_len"]:]
    with pytest.raises(ProtocolError):
        codec.decompress(huge_window, cap=1 << 20)


def test_decompress_checksum_frames():
    data = _varied(10_000)
    frame = zstandard.ZstdCompressor(write_checksum=True, write_content_size=True).compress(data)
    assert zstd_header_fields(frame)["checksum"]
    assert codec.decompress(frame, cap=1 << 20) == data
    bad = bytearray(frame)
    bad[-1] ^= 0x01  # the checksum itself
    with pytest.raises(ProtocolError):
        codec.decompress(bytes(bad), cap=1 << 20)
    with pytest.raises(ProtocolError):
        codec.decompress(frame[:-2], cap=1 << 20)
    with pytest.raises(ProtocolError) as ei:
        codec.decompress(frame + b"\x00", cap=1 << 20)
    assert ei.value.code == "protocol.trailing"


def test_decompress_over_cap_is_a_bomb():
    data = b"a" * 1000
    frame = codec.compress(data)
    assert codec.decompress(frame, cap=1000) == data
    with pytest.raises(LimitError) as ei:
        codec.decompress(frame, cap=999)
    assert ei.value.code == "protocol.bomb"


def test_decompress_bomb_is_refused_without_allocating():
    bomb = rle_bomb(1 << 30)  # a genuine 1 GiB frame in 32 KiB
    assert zstandard.frame_content_size(bomb) == 1 << 30
    assert len(bomb) < 40_000
    tracemalloc.start()
    try:
        with pytest.raises(LimitError) as ei:
            codec.decompress(bomb, cap=64 * 1024 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ei.value.code == "protocol.bomb"
    assert peak < 50 * 1024 * 1024


def test_decompress_lying_small_header_on_a_bomb_body():
    # declares 1000 bytes, holds 1 GiB: the one-shot decoder stops at the declared size
    bomb = rle_bomb(1 << 30, declare=1000)
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            codec.decompress(bomb, cap=64 * 1024 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 1024 * 1024


def test_unknown_dictionary_is_a_version_error():
    frame = codec.compress(b"abc")
    with pytest.raises(VersionError) as ei:
        codec.decompress(frame, cap=100, dict_id=987654)
    assert ei.value.code == "protocol.version"
    with pytest.raises(VersionError):
        codec.compress(b"abc", dict_id=987654)


@settings(max_examples=scaled_examples(300))
@given(st.binary(max_size=300))
def test_fuzz_decompress_random_bytes(data):
    try:
        codec.decompress(data, cap=1 << 16)
    except ProtocolError:
        pass


_FUZZ_FRAMES = [
    codec.compress(b"hello " * 30),
    zstandard.ZstdCompressor(write_checksum=True).compress(_varied(2000)),
    rle_bomb(3 * 128 * 1024 + 5),
]


@settings(max_examples=scaled_examples(300))
@given(
    st.sampled_from(_FUZZ_FRAMES),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.sampled_from(["set", "xor", "ins", "del"])), min_size=1, max_size=4),
)
def test_fuzz_decompress_mutated_frames(frame, edits):
    data = bytearray(frame)
    for pos, b, how in edits:
        pos %= len(data) + 1
        if how == "ins":
            data[pos:pos] = bytes([b])
        elif pos < len(data):
            if how == "set":
                data[pos] = b
            elif how == "xor":
                data[pos] ^= b or 1
            else:
                del data[pos]
    try:
        out = codec.decompress(bytes(data), cap=1 << 20)
    except ProtocolError:
        return
    # what is accepted was fully described by its header
    assert len(out) == zstandard.frame_content_size(bytes(data))


@settings(max_examples=scaled_examples(300))
@given(st.sampled_from(_FUZZ_FRAMES), st.integers(4, 13), st.integers(0, 255))
def test_fuzz_decompress_frame_header_bytes(frame, pos, value):
    """Every value of every header byte: descriptor flags, window, content size."""
    data = bytearray(frame)
    data[pos] = value
    try:
        out = codec.decompress(bytes(data), cap=1 << 20)
    except ProtocolError:
        return
    assert len(out) == zstandard.frame_content_size(bytes(data))


def test_errors_are_hbw_errors():
    for bad in (b"\xc1", b"\x91"):
        with pytest.raises(HbwError):
            codec.unpack(bad)
