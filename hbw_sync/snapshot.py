"""Snapshots: the team's state as the few ops that still matter, sealed by a client (sans-IO).

A device joining a team with a long history, or one that missed more than the
relay keeps, should not replay every batch. The relay cannot build a snapshot
(it cannot read content), so a client does, when the relay asks: for every
entity, the ops that still win a field or carry a note, as of a relay cursor.
Applying them with the ordinary merge rule gives the same state as replaying
everything, and batches after the cursor (or overlapping it) merge on top
idempotently, since ops are identified by op id.

Layout (big-endian)::

    "HBW" "S" version(1) flags(1)=0 team(8) device(8) cursor(8) epoch(4) S(4)
    sealed(S) = nonce(12) || ChaCha20-Poly1305(zstd(msgpack([[device, received_ms, op row, content], ...])))
                key = HKDF(team key, "hbw-sync snapshot v1"), AAD = the 38-byte header
    signature(64) by the device's author key over everything before it
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Mapping

from . import codec, crypto
from .errors import IntegrityError, ProtocolError, VersionError, WrongKeyError
from .ops import Op, canonical, op_from_row, routing_row

MAGIC = b"HBW"
TYPE = b"S"
VERSION = 1
HEADER = struct.Struct(">3scBB8s8sQII")
PURPOSE = b"snapshot"
LIMITS = codec.Limits(max_container=2_000_000, max_plain=512 * 1024 * 1024, max_message=512 * 1024 * 1024)


@dataclass(frozen=True)
class SnapOp:
    device: bytes
    received_ms: int
    op: Op


@dataclass(frozen=True)
class Snapshot:
    team: bytes
    device: bytes
    cursor: int
    epoch: int
    ops: tuple[SnapOp, ...]


def encode(snap: Snapshot, author: crypto.DeviceKey, key: crypto.TeamKey, *, level: int = 9) -> bytes:
    rows = [[s.device, s.received_ms, routing_row(s.op), canonical(s.op.content)] for s in snap.ops]
    plain = codec.compress(codec.pack(rows), level=level)
    s_len = crypto.NONCE_LEN + len(plain) + crypto.TAG_LEN
    header = HEADER.pack(MAGIC, TYPE, VERSION, 0, snap.team, snap.device, snap.cursor, key.epoch, s_len)
    signed = header + crypto.seal(key.subkey(PURPOSE), plain, header)
    return signed + author.sign(signed)


def peek(data: bytes) -> tuple[bytes, bytes, int, int]:
    """(team, device, cursor, epoch) from the header, to find the keys to open it with."""
    if len(data) < HEADER.size + crypto.SIG_LEN or data[:4] != MAGIC + TYPE:
        raise ProtocolError("not an hbw-sync snapshot", code="protocol.magic")
    if data[4] != VERSION:
        raise VersionError(f"snapshot format version {data[4]} is not known", hint="upgrade hbw-sync")
    _, _, _, flags, team, device, cursor, epoch, s_len = HEADER.unpack_from(data)
    if flags or HEADER.size + s_len + crypto.SIG_LEN != len(data):
        raise ProtocolError("malformed snapshot", code="protocol.schema")
    return team, device, cursor, epoch


def decode(data: bytes, author_public: bytes, keys: Mapping[int, crypto.TeamKey], team: bytes) -> Snapshot:
    t, device, cursor, epoch = peek(data)
    if t != team:
        raise IntegrityError("this snapshot belongs to another team", code="integrity.team")
    if crypto.device_id_for(author_public) != device:
        raise IntegrityError("snapshot checked against the wrong device key", code="integrity.device")
    crypto.verify(author_public, data[-crypto.SIG_LEN:], data[: -crypto.SIG_LEN], what="snapshot")
    key = keys.get(epoch)
    if key is None:
        raise WrongKeyError(f"snapshot sealed with key epoch {epoch}, which this device does not hold")
    plain = crypto.open_sealed(key.subkey(PURPOSE), data[HEADER.size: -crypto.SIG_LEN], data[:HEADER.size], "snapshot")
    rows = codec.unpack(codec.decompress(plain, cap=LIMITS.max_plain), LIMITS)
    if not isinstance(rows, list):
        raise ProtocolError("malformed snapshot", code="protocol.schema")
    out = []
    for r in rows:
        if not (isinstance(r, list) and len(r) == 4 and isinstance(r[0], bytes) and type(r[1]) is int):
            raise ProtocolError("malformed snapshot entry", code="protocol.schema")
        out.append(SnapOp(r[0], r[1], op_from_row(r[2], r[3], with_content=True)))
    return Snapshot(t, device, cursor, epoch, tuple(out))


def contributing(ops: list[tuple[bytes, int, Op]]) -> list[tuple[bytes, int, Op]]:
    """Of one entity's received ops, those that still decide its state (field winners and notes)."""
    from . import merge

    st = None
    by_id: dict[bytes, tuple[bytes, int, Op]] = {}
    for device, rcv, op in ops:
        stamp = merge.stamp_for(op, device, rcv)
        by_id[stamp.op_id] = (device, rcv, op)
        st = merge.apply_op(st, op, stamp)
    if st is None:
        return []
    keep: set[bytes] = {s.op_id for _, s in st.registers.values()}
    for items in st.appends.values():
        keep |= set(items)
    for hist in st.history.values():  # policy fields are decided by their whole history
        keep |= set(hist)
    if st.head is not None:
        keep.add(st.head.op_id)
    return [by_id[k] for k in sorted(keep)]


__all__: list[Any] = ["Snapshot", "SnapOp", "encode", "decode", "peek", "contributing"]
