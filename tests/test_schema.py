"""Typed msgpack decoding (hbw_sync/schema.py): the same values msgpack gives, refused from the header otherwise."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hbw_sync import schema
from hbw_sync.errors import LimitError, ProtocolError
from hbw_sync.schema import Bin, Int, ListOf, Opt, Refused, Soft, Str, Tuple

SPEC = {"a": Int(), "b": Bin(64), "c": Opt(Str(10)), "d": ListOf(Tuple((Bin(8, 8), Int(1, 9))), 5)}


@given(a=st.integers(0, 2**63 - 1), b=st.binary(max_size=64), c=st.none() | st.text(max_size=10),
       d=st.lists(st.tuples(st.binary(min_size=8, max_size=8), st.integers(1, 9)), max_size=5),
       extra=st.dictionaries(st.text(min_size=2, max_size=5), st.recursive(
           st.none() | st.integers(-(2**63), 2**64 - 1) | st.binary() | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c))))
def test_valid_maps_decode_as_msgpack_does_and_unknown_keys_are_skipped(a, b, c, d, extra):
    value = {"a": a, "b": b, "c": c, "d": [list(t) for t in d], **extra}
    raw = msgpack.packb(value)
    got, end = schema.decode_map(SPEC, raw, 0, "args")
    assert end == len(raw)
    assert got == {k: value[k] for k in SPEC}


@pytest.mark.parametrize("spec,raw,err,code", [
    (Bin(32), b"\xc6\xff\xff\xff\xff", LimitError, "protocol.limit"),  # a 4 GiB bin header, 5 bytes sent
    (Bin(32), msgpack.packb(4_000_000_000), ProtocolError, "protocol.schema"),
    (Bin(8, 8), msgpack.packb(bytes(7)), ProtocolError, "protocol.schema"),
    (Str(4), b"\xdb\xff\xff\xff\xff", LimitError, "protocol.limit"),
    (Str(4), msgpack.packb("ééééé"), LimitError, "protocol.limit"),
    (Str(4), b"\xa2\xff\xfe", ProtocolError, "protocol.msgpack"),
    (Int(), msgpack.packb(True), ProtocolError, "protocol.schema"),
    (Int(), msgpack.packb(-1), ProtocolError, "protocol.schema"),
    (Int(), msgpack.packb(1.0), ProtocolError, "protocol.schema"),
    (ListOf(Int(), 3), b"\xdd\xff\xff\xff\xff", LimitError, "protocol.limit"),
    (Tuple((Int(), Int())), msgpack.packb([1]), ProtocolError, "protocol.schema"),
    (Bin(32), b"\xc4\x10abc", ProtocolError, "protocol.msgpack"),  # truncated payload
    (Int(), b"\xd4\x01\x00", ProtocolError, "protocol.schema"),  # ext
])
def test_wrong_types_and_huge_lengths_are_refused_from_the_header(spec, raw, err, code):
    with pytest.raises(err) as e:
        schema.decode(spec, raw, 0, "x")
    assert e.value.code == code


def test_unknown_keys_holding_huge_or_deep_values_are_skipped_or_refused_without_building():
    deep = b"\x81\xa1z" + b"\x91" * 100_000 + b"\xc0"  # 100,000 nested arrays
    with pytest.raises(ProtocolError):
        schema.decode_map(SPEC, deep, 0, "args")
    wide = b"\x81\xa1z" + b"\xdd" + (1 << 31).to_bytes(4, "big")  # an array header claiming 2**31 items
    with pytest.raises(ProtocolError):
        schema.decode_map(SPEC, wide, 0, "args")
    dup = b"\x82\xa1a\x01\xa1a\x02"
    with pytest.raises(ProtocolError) as e:
        schema.decode_map(SPEC, dup, 0, "args")
    assert e.value.code == "protocol.msgpack"


def test_a_soft_arg_of_another_shape_is_a_refusal_value_and_the_rest_still_decodes():
    spec = {"snap": Soft(Tuple((Int(), Bin(8)))), "a": Int()}
    raw = msgpack.packb({"snap": ["top", [[1, 2], {"x": b"y"}]], "a": 5})
    got, end = schema.decode_map(spec, raw, 0, "args")
    assert end == len(raw) and got["a"] == 5
    assert isinstance(got["snap"], Refused) and got["snap"].error["code"] == "protocol.schema"
    assert schema.decode_map(spec, msgpack.packb({"snap": [1, b"x"]}), 0, "args")[0] == {"snap": [1, b"x"]}
    with pytest.raises(ProtocolError):  # not msgpack at all: the request fails, not just the value
        schema.decode_map(spec, b"\x81\xa4snap\xc1", 0, "args")
