"""Snapshots: the team's state as the few ops that still matter, sealed by a supervisor's device (sans-IO).

A device joining a team with a long history, or one that missed more than the
relay keeps, should not replay every batch. The relay cannot build a snapshot
(it cannot read content), so a client does, when the relay asks: for every
entity, the ops that still win a field or carry a note, as of a relay cursor.
Applying them with the ordinary merge rule gives the same state as replaying
everything, and batches after the cursor (or overlapping it) merge on top
idempotently, since ops are identified by op id.

A snapshot lets a device skip history, so it is trusted only as far as it can be
checked. Version 2 states, in the clear and under the author's signature, its
**coverage**: for every device with a batch at or below the cursor, the last seq
of that device's batches it includes. The relay compares the coverage with the
batches it holds before it keeps or serves a snapshot (``check_coverage``), and
only a supervisor's device may author one; a receiving device checks the author,
the signature and the cursor before it lets its cursor jump (``verify``), and
falls back to replaying history when any check fails. See PROTOCOL.md §18.

Layout (big-endian)::

    "HBW" "S" version(1)=2 flags(1)=0 team(8) device(8) cursor(8) epoch(4) N(4) S(4)     42-byte header
    coverage(16 N) = N x (device(8) last_seq(8)), device ids strictly ascending
    sealed(S) = nonce(12) || ChaCha20-Poly1305(zstd(msgpack([[device, received_ms, op row, content], ...])))
                key = HKDF(team key, "hbw-sync snapshot v1"), AAD = header || coverage
    signature(64) by the device's author key over everything before it
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Mapping

from . import codec, crypto
from .errors import IntegrityError, LimitError, ProtocolError, VersionError, WrongKeyError
from .ops import Op, canonical, op_from_row, routing_row

MAGIC = b"HBW"
TYPE = b"S"
VERSION = 2
HEADER = struct.Struct(">3scBB8s8sQIII")
COVER = struct.Struct(">8sQ")
PURPOSE = b"snapshot"
#: Coverage entries a snapshot may name (one per device that ever sent a batch).
MAX_COVERAGE = 65_536
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
    #: device id -> last seq of that device's batches the snapshot includes (all at rseq <= cursor).
    coverage: Mapping[bytes, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    """What a snapshot claims, readable without the team key: enough for the relay and an unattended device."""

    team: bytes
    device: bytes
    cursor: int
    epoch: int
    coverage: dict[bytes, int]


def _coverage_bytes(coverage: Mapping[bytes, int]) -> bytes:
    if len(coverage) > MAX_COVERAGE:
        raise LimitError(f"a snapshot may cover at most {MAX_COVERAGE} devices", code="protocol.limit")
    return b"".join(COVER.pack(d, s) for d, s in sorted(coverage.items()))


def encode(snap: Snapshot, author: crypto.DeviceKey, key: crypto.TeamKey, *, level: int = 9) -> bytes:
    rows = [[s.device, s.received_ms, routing_row(s.op), canonical(s.op.content)] for s in snap.ops]
    plain = codec.compress(codec.pack(rows), level=level)
    s_len = crypto.NONCE_LEN + len(plain) + crypto.TAG_LEN
    cover = _coverage_bytes(snap.coverage)
    header = HEADER.pack(MAGIC, TYPE, VERSION, 0, snap.team, snap.device, snap.cursor, key.epoch,
                         len(snap.coverage), s_len)
    signed = header + cover + crypto.seal(key.subkey(PURPOSE), plain, header + cover)
    return signed + author.sign(signed)


def _frame(data: bytes) -> tuple[Claim, int]:
    """The claim and the offset of the sealed part; framing checks only (no signature)."""
    if len(data) < HEADER.size + crypto.SIG_LEN or data[:4] != MAGIC + TYPE:
        raise ProtocolError("not an hbw-sync snapshot", code="protocol.magic")
    if data[4] != VERSION:
        raise VersionError(f"snapshot format version {data[4]} is not known", hint="upgrade hbw-sync")
    _, _, _, flags, team, device, cursor, epoch, n, s_len = HEADER.unpack_from(data)
    if n > MAX_COVERAGE:
        raise LimitError(f"a snapshot covering {n} devices is over the limit", code="protocol.limit")
    if flags:  # one rule for every message type (PROTOCOL.md §21): a set bit is a feature we lack
        raise VersionError(f"snapshot uses feature flags {flags:#04x} this version does not know",
                           hint="upgrade hbw-sync")
    sealed_at = HEADER.size + n * COVER.size
    if sealed_at + s_len + crypto.SIG_LEN != len(data):
        raise ProtocolError("malformed snapshot", code="protocol.schema")
    coverage: dict[bytes, int] = {}
    last = b""
    for i in range(n):
        d, seq = COVER.unpack_from(data, HEADER.size + i * COVER.size)
        if d <= last:
            raise ProtocolError("snapshot coverage not in ascending device order", code="protocol.order")
        coverage[d] = seq
        last = d
    return Claim(team, device, cursor, epoch, coverage), sealed_at


def peek(data: bytes) -> tuple[bytes, bytes, int, int]:
    """(team, device, cursor, epoch) from the header, to find the keys to open it with."""
    c, _ = _frame(data)
    return c.team, c.device, c.cursor, c.epoch


def verify(data: bytes, author_public: bytes, team: bytes) -> Claim:
    """Framing, team, author and signature: all that can be checked without the team key.

    The relay runs this before it keeps a snapshot, and a device before its cursor
    jumps past history on the snapshot's word (even a sync without the passphrase).
    Raises ProtocolError, VersionError, LimitError or IntegrityError (``integrity.team``,
    ``integrity.device``, ``integrity.signature``).
    """
    claim, _ = _frame(data)
    if claim.team != team:
        raise IntegrityError("this snapshot belongs to another team", code="integrity.team")
    if crypto.device_id_for(author_public) != claim.device:
        raise IntegrityError("snapshot checked against the wrong device key", code="integrity.device")
    crypto.verify(author_public, data[-crypto.SIG_LEN:], data[: -crypto.SIG_LEN], what="snapshot")
    return claim


def check_coverage(claim: Claim, held: Mapping[bytes, int], *, what: str = "the relay holds") -> None:
    """The coverage must name exactly the last seq of every device's batches at or below the cursor.

    ``held`` is device -> highest seq among that device's batches with rseq <= the claim's
    cursor, as the checker knows it. A snapshot that leaves a device out, or claims fewer
    (or more) of its batches, would let a cursor skip batches nobody replays: refused with
    ``integrity.coverage``.
    """
    if dict(claim.coverage) != dict(held):
        missing = sorted(d.hex()[:8] for d in held if claim.coverage.get(d) != held[d])
        extra = sorted(d.hex()[:8] for d in claim.coverage if d not in held)
        raise IntegrityError(
            f"the snapshot does not cover what {what} up to batch {claim.cursor}"
            + (f" (devices {', '.join(missing)} differ)" if missing else "")
            + (f" (names devices {', '.join(extra)} with no batches)" if extra else ""),
            code="integrity.coverage")


def check_contents(snap: Snapshot) -> None:
    """Every op in the snapshot comes from a device its coverage names (else it claims what it does not cover)."""
    for s in snap.ops:
        if s.device not in snap.coverage:
            raise IntegrityError(f"the snapshot holds ops of device {s.device.hex()[:8]}, which its coverage "
                                 "does not name", code="integrity.coverage")


def decode(data: bytes, author_public: bytes, keys: Mapping[int, crypto.TeamKey], team: bytes) -> Snapshot:
    claim = verify(data, author_public, team)
    sealed_at = HEADER.size + len(claim.coverage) * COVER.size
    key = keys.get(claim.epoch)
    if key is None:
        raise WrongKeyError(f"snapshot sealed with key epoch {claim.epoch}, which this device does not hold")
    plain = crypto.open_sealed(key.subkey(PURPOSE), data[sealed_at: -crypto.SIG_LEN], data[:sealed_at], "snapshot")
    rows = codec.unpack(codec.decompress(plain, cap=LIMITS.max_plain), LIMITS)
    if not isinstance(rows, list):
        raise ProtocolError("malformed snapshot", code="protocol.schema")
    out = []
    for r in rows:
        if not (isinstance(r, list) and len(r) == 4 and isinstance(r[0], bytes) and type(r[1]) is int):
            raise ProtocolError("malformed snapshot entry", code="protocol.schema")
        out.append(SnapOp(r[0], r[1], op_from_row(r[2], r[3], with_content=True)))
    snap = Snapshot(claim.team, claim.device, claim.cursor, claim.epoch, tuple(out), claim.coverage)
    check_contents(snap)
    return snap


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


__all__: list[Any] = ["Snapshot", "SnapOp", "Claim", "encode", "decode", "peek", "verify", "check_coverage",
                      "check_contents", "contributing", "MAX_COVERAGE"]
