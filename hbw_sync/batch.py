"""The batch: one device's ops, framed, compressed, sealed and signed once.

Crypto and framing are paid per batch, not per op (138 bytes in all), and the
layout keeps apart what the relay may read (routing) and what it must not
(content). Byte by byte (all integers big-endian)::

    off  len  field
    0    3    magic "HBW"
    3    1    message type "B"
    4    1    format version (1)
    5    1    flags (0; any set bit is a feature this version does not know)
    6    8    team id
    14   8    device id (author)
    22   8    batch sequence number (per device, from 1)
    30   4    key epoch of the team key that sealed the content
    34   4    zstd dictionary id (0: none)
    38   4    R: routing section length
    42   4    S: sealed section length
    46   R    routing: zstd(msgpack([op, ...])), op = [kind, entity, hlc, base, {tag: value}]
    46+R S    sealed: nonce(12) || ChaCha20-Poly1305(zstd(msgpack([{tag: value}, ...])))
                      key = HKDF(team key, "hbw-sync batch content v1"), AAD = bytes[0:46+R]
    46+R+S 64 Ed25519 signature by the device over bytes[0:46+R+S]

The AAD binds the content to the header and the routing, so content cannot be
moved to another batch, another device or another epoch; the signature (over
the ciphertext) lets the relay check authorship without the team key.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from . import codec, crypto
from .errors import IntegrityError, LimitError, ProtocolError, VersionError, WrongKeyError
from .ops import DEVICE_ID_LEN, Op, canonical, check_routing_rows, op_from_row, routing_row

MAGIC = b"HBW"
TYPE_BATCH = b"B"
VERSION = 1
HEADER = struct.Struct(">3sccB8s8sQIIII")
HEADER_LEN = HEADER.size  # 46
TEAM_ID_LEN = 8
CONTENT_PURPOSE = b"batch content"
OVERHEAD = HEADER_LEN + crypto.NONCE_LEN + crypto.TAG_LEN + crypto.SIG_LEN

KeyRing = Mapping[int, crypto.TeamKey]


@dataclass(frozen=True)
class Batch:
    """A device's ops in author order (strictly increasing HLC)."""

    team: bytes
    device: bytes
    seq: int
    epoch: int
    ops: tuple[Op, ...]

    def op_ids(self) -> list[bytes]:
        return [op.op_id(self.device) for op in self.ops]


@dataclass(frozen=True)
class Frame:
    """A structurally valid batch whose signature and content are not checked yet.

    ``routing``, ``sealed`` and ``signed`` are memoryviews into the message, not copies: a
    batch may carry a 20 MB document. Use ``bytes(...)`` to keep one beyond the message.
    """

    team: bytes
    device: bytes
    seq: int
    epoch: int
    dict_id: int
    routing: bytes
    sealed: bytes
    signed: bytes  # everything the signature covers
    signature: bytes

    @property
    def aad(self) -> bytes:
        return self.signed[: HEADER_LEN + len(self.routing)]

    def verify(self, public_key: bytes) -> None:
        """Check that the batch was signed by ``public_key`` and that it is that device's key."""
        if crypto.device_id_for(public_key) != self.device:
            raise IntegrityError("the batch names a different device than the key given to check it", code="integrity.device")
        crypto.verify(public_key, self.signature, self.signed, what="batch")

    def routing_ops(self, limits: codec.Limits = codec.DEFAULT_LIMITS) -> list[Op]:
        """The ops without content: what the relay sees."""
        return _ops(self._routing_rows(limits), None, limits)

    def routing_summary(self, limits: codec.Limits = codec.DEFAULT_LIMITS) -> tuple[int, list[bytes]]:
        """The routing section checked as ``routing_ops`` checks it, without its ops: (number of ops,
        the document versions' chunk id lists). The relay's form (``ops.check_routing_rows``)."""
        return check_routing_rows(self._routing_rows(limits))

    def _routing_rows(self, limits: codec.Limits) -> list[Any]:
        rows = codec.unpack(codec.decompress(self.routing, cap=limits.max_plain, dict_id=self.dict_id), limits)
        if not isinstance(rows, list) or not rows:
            raise ProtocolError("a batch must hold a non-empty array of ops", code="protocol.schema")
        if len(rows) > limits.max_ops:
            raise LimitError(f"batch holds {len(rows)} ops, over the limit of {limits.max_ops}", code="protocol.limit")
        return rows

    def open(self, keys: KeyRing | crypto.TeamKey, limits: codec.Limits = codec.DEFAULT_LIMITS) -> Batch:
        """Decrypt and decode everything. Verify the signature first (``verify``)."""
        key = keys if isinstance(keys, crypto.TeamKey) else keys.get(self.epoch)
        if key is None or key.epoch != self.epoch:
            raise WrongKeyError(
                f"this batch was sealed with team key epoch {self.epoch}, which this device does not hold",
                hint="sync with the relay to receive the current team key",
            )
        rows = self._routing_rows(limits)
        plain = crypto.open_sealed(key.subkey(CONTENT_PURPOSE), self.sealed, self.aad, what="batch content")
        raw = codec.decompress(plain, cap=limits.max_plain, dict_id=self.dict_id)
        del plain
        content = codec.unpack(raw, limits)
        del raw
        if not isinstance(content, list) or len(content) != len(rows):
            raise ProtocolError("content section does not match the routing section", code="protocol.schema")
        return Batch(self.team, self.device, self.seq, self.epoch, tuple(_ops(rows, content, limits)))


def _ops(rows: list[Any], content: list[Any] | None, limits: codec.Limits) -> list[Op]:
    ops = []
    last = 0
    for i, row in enumerate(rows):
        op = op_from_row(row, None if content is None else content[i], with_content=content is not None)
        if op.hlc <= last:
            raise ProtocolError("ops in a batch must have strictly increasing timestamps", code="protocol.order")
        last = op.hlc
        ops.append(op)
    return ops


def parse_batch(data: bytes, limits: codec.Limits = codec.DEFAULT_LIMITS) -> Frame:
    """Check the framing of a batch and split it into its parts. No crypto yet."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError("a batch must be bytes", code="protocol.type")
    data = bytes(data)
    if len(data) > limits.max_message:
        raise LimitError(f"batch of {len(data)} bytes is over the {limits.max_message}-byte limit", code="protocol.limit")
    if len(data) < 5 or data[:3] != MAGIC or data[3:4] != TYPE_BATCH:
        if len(data) < 5 and (MAGIC + TYPE_BATCH).startswith(data[:4]):
            raise ProtocolError("batch is truncated", code="protocol.truncated")
        raise ProtocolError("not an hbw-sync batch (bad magic)", code="protocol.magic")
    if data[4] != VERSION:
        raise VersionError(
            f"batch uses format version {data[4]}; this hbw-sync reads version {VERSION}",
            hint="upgrade hbw-sync" if data[4] > VERSION else None,
        )
    if len(data) < HEADER_LEN:
        raise ProtocolError("batch is truncated", code="protocol.truncated")
    _, _, _, flags, team, device, seq, epoch, dict_id, r_len, s_len = HEADER.unpack_from(data)
    if flags:
        raise VersionError(f"batch uses feature flags {flags:#04x} this version does not know", hint="upgrade hbw-sync")
    end = HEADER_LEN + r_len + s_len
    if len(data) < end + crypto.SIG_LEN:
        raise ProtocolError("batch is truncated", code="protocol.truncated")
    if len(data) > end + crypto.SIG_LEN:
        raise ProtocolError("trailing bytes after the batch signature", code="protocol.trailing")
    if seq == 0:
        raise ProtocolError("batch sequence numbers start at 1", code="protocol.schema")
    mv = memoryview(data)  # slices without copies: a batch may hold a 20 MB document
    return Frame(
        team=team,
        device=device,
        seq=seq,
        epoch=epoch,
        dict_id=dict_id,
        routing=mv[HEADER_LEN : HEADER_LEN + r_len],  # type: ignore[arg-type]
        sealed=mv[HEADER_LEN + r_len : end],  # type: ignore[arg-type]
        signed=mv[:end],  # type: ignore[arg-type]
        signature=bytes(mv[end:]),
    )


def encode_batch(
    batch: Batch,
    device_key: crypto.DeviceKey,
    team_key: crypto.TeamKey,
    *,
    dict_id: int = 0,
    level: int = codec.BATCH_LEVEL,
    nonce: bytes | None = None,
) -> bytes:
    """Frame, compress, seal and sign a batch. ``nonce`` is fixed only by the vector generator."""
    if len(batch.team) != TEAM_ID_LEN or len(batch.device) != DEVICE_ID_LEN:
        raise ValueError("team and device ids are 8 bytes")
    if batch.device != device_key.device_id:
        raise ValueError("batch device id does not match the signing key")
    if batch.epoch != team_key.epoch:
        raise ValueError("batch epoch does not match the team key")
    if not batch.ops:
        raise ValueError("a batch holds at least one op")
    last = 0
    for op in batch.ops:
        if op.hlc <= last or op.content is None:
            raise ValueError("ops must have content and strictly increasing timestamps")
        last = op.hlc
    routing = codec.compress(codec.pack([routing_row(op) for op in batch.ops]), level=level, dict_id=dict_id)
    content_z = codec.compress(codec.pack([canonical(op.content) for op in batch.ops]), level=level, dict_id=dict_id)
    s_len = crypto.NONCE_LEN + len(content_z) + crypto.TAG_LEN
    header = HEADER.pack(
        MAGIC, TYPE_BATCH, bytes([VERSION]), 0, batch.team, batch.device, batch.seq, batch.epoch, dict_id, len(routing), s_len
    )
    aad = header + routing
    out = bytearray(aad)
    crypto.seal_into(out, team_key.subkey(CONTENT_PURPOSE), content_z, aad, nonce=nonce)
    del content_z
    out += device_key.sign(memoryview(out))
    return bytes(out)


def decode_batch(
    data: bytes,
    public_key: bytes,
    keys: KeyRing | crypto.TeamKey,
    limits: codec.Limits = codec.DEFAULT_LIMITS,
    *,
    team: bytes | None = None,
) -> Batch:
    """Parse, verify and open a batch in the one safe order; ``team`` refuses foreign batches."""
    frame = parse_batch(data, limits)
    if team is not None and frame.team != team:
        raise IntegrityError("this batch belongs to another team", code="integrity.team")
    frame.verify(public_key)
    return frame.open(keys, limits)


def batch_sizes(ops: Sequence[Op]) -> int:
    """Rough plaintext size of ops, to cut an outbox into batches under a byte budget."""
    return sum(len(codec.pack(routing_row(op))) + len(codec.pack(canonical(op.content))) for op in ops)
