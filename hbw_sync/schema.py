"""Typed msgpack decoding: each value's type and size are read from its header before anything is built.

Why not ``codec.unpack`` and check afterwards: the generic decoder builds the
whole object first, so a peer that has not yet proven who it is chooses how
much memory the relay spends. A msgpack integer where bytes were expected is
harmless to decode but ``bytes(4_000_000_000)`` is not; 31 MiB of empty arrays
decode to 2 GB of Python lists. Here a ``Spec`` says what each field may be
(``Bin(32)``, ``ListOf(Bin(8), 64)``); the decoder reads the 1-9 byte header,
refuses a wrong type or an over-long length, and only then copies the
payload, so the memory spent is bounded by the spec, never by the peer.
Unknown map keys are skipped header by header, building and copying nothing.

Sans-IO: bytes in, values or a ``ProtocolError``/``LimitError`` out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Union

from .errors import LimitError, ProtocolError


@dataclass(frozen=True)
class Bin:
    """msgpack bin of ``min``..``max`` bytes."""

    max: int
    min: int = 0


@dataclass(frozen=True)
class Str:
    """msgpack str of at most ``max`` code points (UTF-8, strict)."""

    max: int


@dataclass(frozen=True)
class Int:
    """msgpack int (not bool) in [lo, hi]."""

    lo: int = 0
    hi: int = 2**63 - 1


@dataclass(frozen=True)
class Bool:
    """msgpack true or false."""


@dataclass(frozen=True)
class ListOf:
    """An array of at most ``max`` items of one spec."""

    item: "Spec"
    max: int


@dataclass(frozen=True)
class Tuple:
    """An array of exactly these specs, in order."""

    items: tuple["Spec", ...]


@dataclass(frozen=True)
class Opt:
    """``inner`` or nil."""

    inner: "Spec"


@dataclass(frozen=True)
class Soft:
    """``inner``; a value of another shape becomes ``Refused`` (skipped unbuilt), not an error.

    For args whose refusal is an outcome, not a failed request (a snapshot the relay
    refuses while the sync goes on, PROTOCOL.md §18).
    """

    inner: "Spec"


@dataclass(frozen=True)
class Refused:
    """What a ``Soft`` arg held instead of its spec; ``error`` is the refusal as a dict."""

    error: dict[str, Any]


Spec = Union[Bin, Str, Int, Bool, ListOf, Tuple, Opt, Soft]

#: What the decoders read: a memoryview too, so that a large request is read in place, not copied.
Buffer = Union[bytes, bytearray, memoryview]

_ERR = "protocol.schema"


def _need(buf: Buffer, pos: int, n: int) -> None:
    if pos + n > len(buf):
        raise ProtocolError("truncated msgpack", code="protocol.msgpack")


def header(buf: Buffer, pos: int) -> tuple[str, int, int]:
    """(kind, value or length, position after the header) of the msgpack object at ``pos``.

    kind is one of int, nil, bool, float, bin, str, array, map, ext. For int and
    bool the second item is the value; for the others a length or count. No
    payload is read or copied.
    """
    _need(buf, pos, 1)
    b = buf[pos]
    pos += 1
    if b <= 0x7F:
        return "int", b, pos
    if b >= 0xE0:
        return "int", b - 0x100, pos
    if 0x80 <= b <= 0x8F:
        return "map", b & 0x0F, pos
    if 0x90 <= b <= 0x9F:
        return "array", b & 0x0F, pos
    if 0xA0 <= b <= 0xBF:
        return "str", b & 0x1F, pos
    if b == 0xC0:
        return "nil", 0, pos
    if b in (0xC2, 0xC3):
        return "bool", b - 0xC2, pos
    fixed = {0xC4: ("bin", ">B"), 0xC5: ("bin", ">H"), 0xC6: ("bin", ">I"),
             0xCC: ("int", ">B"), 0xCD: ("int", ">H"), 0xCE: ("int", ">I"), 0xCF: ("int", ">Q"),
             0xD0: ("int", ">b"), 0xD1: ("int", ">h"), 0xD2: ("int", ">i"), 0xD3: ("int", ">q"),
             0xD9: ("str", ">B"), 0xDA: ("str", ">H"), 0xDB: ("str", ">I"),
             0xDC: ("array", ">H"), 0xDD: ("array", ">I"), 0xDE: ("map", ">H"), 0xDF: ("map", ">I"),
             0xCA: ("float", ">I"), 0xCB: ("float", ">Q")}
    if b in fixed:
        kind, fmt = fixed[b]
        n = struct.calcsize(fmt)
        _need(buf, pos, n)
        (v,) = struct.unpack_from(fmt, buf, pos)
        if kind == "float":
            return "float", 0, pos + n
        return kind, v, pos + n
    return "ext", 0, pos  # ext types (0xC7-0xC9, 0xD4-0xD8) and 0xC1 are never valid here


def skip(buf: Buffer, pos: int, max_objects: int = 100_000) -> int:
    """Position after the object at ``pos``, walked header by header: nothing is built or copied.

    A bin or str is skipped by its length; containers count their items. An unknown arg
    is meant to be small (an optional field a newer device sends), so a value of more than
    ``max_objects`` objects is refused rather than walked.
    """
    pending = 1
    seen = 0
    while pending:
        kind, v, pos = header(buf, pos)
        pending -= 1
        seen += 1
        if seen > max_objects:
            raise LimitError(f"an unknown value of more than {max_objects} objects", code="protocol.limit")
        if kind in ("bin", "str"):
            _need(buf, pos, v)
            pos += v
        elif kind == "array":
            pending += v
        elif kind == "map":
            pending += 2 * v
        elif kind == "ext":
            raise ProtocolError("msgpack extension types are not allowed", code="protocol.msgpack")
        if pending > len(buf) - pos:  # each pending object needs at least one byte
            raise ProtocolError("truncated msgpack", code="protocol.msgpack")
    return pos


def decode(spec: Spec, buf: Buffer, pos: int, what: str) -> tuple[Any, int]:
    """Decode one value of ``spec`` at ``pos``: (value, position after it)."""
    if isinstance(spec, Soft):
        try:
            return decode(spec.inner, buf, pos, what)
        except ProtocolError as e:
            if e.code not in (_ERR, "protocol.limit"):
                raise  # not msgpack at all: the request is malformed, not this value
            return Refused(e.to_dict()), skip(buf, pos)
    kind, v, at = header(buf, pos)
    if isinstance(spec, Opt):
        if kind == "nil":
            return None, at
        return decode(spec.inner, buf, pos, what)
    if isinstance(spec, Int):
        if kind != "int":
            raise ProtocolError(f"{what} must be an integer", code=_ERR)
        if not spec.lo <= v <= spec.hi:
            raise ProtocolError(f"{what} is out of range", code=_ERR)
        return v, at
    if isinstance(spec, Bool):
        if kind != "bool":
            raise ProtocolError(f"{what} must be true or false", code=_ERR)
        return bool(v), at
    if isinstance(spec, Bin):
        if kind != "bin":
            raise ProtocolError(f"{what} must be bytes", code=_ERR)
        if spec.min == spec.max and v != spec.max:
            raise ProtocolError(f"{what} must be {spec.max} bytes", code=_ERR)
        if v > spec.max:
            raise LimitError(f"{what} of {v} bytes is over the {spec.max}-byte limit", code="protocol.limit")
        if v < spec.min:
            raise ProtocolError(f"{what} is too short", code=_ERR)
        _need(buf, at, v)
        return bytes(buf[at:at + v]), at + v
    if isinstance(spec, Str):
        if kind != "str":
            raise ProtocolError(f"{what} must be text", code=_ERR)
        if v > 4 * spec.max:
            raise LimitError(f"{what} is over the {spec.max}-character limit", code="protocol.limit")
        _need(buf, at, v)
        try:
            s = bytes(buf[at:at + v]).decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(f"{what} is not valid UTF-8", code="protocol.msgpack") from None
        if len(s) > spec.max:
            raise LimitError(f"{what} is over the {spec.max}-character limit", code="protocol.limit")
        return s, at + v
    if isinstance(spec, ListOf):
        if kind != "array":
            raise ProtocolError(f"{what} must be a list", code=_ERR)
        if v > spec.max:
            raise LimitError(f"{what} has {v} items, over the limit of {spec.max}", code="protocol.limit")
        out = []
        for i in range(v):
            item, at = decode(spec.item, buf, at, f"{what}[{i}]")
            out.append(item)
        return out, at
    if isinstance(spec, Tuple):
        if kind != "array" or v != len(spec.items):
            raise ProtocolError(f"{what} must be a list of {len(spec.items)}", code=_ERR)
        out = []
        for i, sub in enumerate(spec.items):
            item, at = decode(sub, buf, at, f"{what}[{i}]")
            out.append(item)
        return out, at
    raise TypeError(f"unknown spec {spec!r}")  # a programming error, not a peer's


def decode_map(fields: dict[str, Spec], buf: Buffer, pos: int, what: str, max_keys: int = 64) -> tuple[dict[str, Any], int]:
    """A map with str keys: known keys decoded by their spec, unknown ones skipped unbuilt."""
    kind, n, at = header(buf, pos)
    if kind != "map":
        raise ProtocolError(f"{what} must be a map", code=_ERR)
    if n > max_keys:
        raise LimitError(f"{what} has {n} keys, over the limit of {max_keys}", code="protocol.limit")
    out: dict[str, Any] = {}
    seen: set[str] = set()
    for _ in range(n):
        key, at = decode(Str(64), buf, at, f"a key of {what}")
        if key in seen:
            raise ProtocolError("duplicate key in a msgpack map", code="protocol.msgpack")
        seen.add(key)
        spec = fields.get(key)
        if spec is None:
            at = skip(buf, at)  # optional keys may be added without a version change
        else:
            out[key], at = decode(spec, buf, at, f"{what} '{key}'")
    return out, at
