"""Synthetic devices and pre-built batches for ``scripts/bench_relay.py``.

A benchmark of the relay needs tens of thousands of valid batches from up to
1,000 devices. ``hbw_sync.batch.encode_batch`` compresses both sections at the
client's level (zstd 19), about 5 ms per 100-op batch, which would make the
set-up take minutes. The compressed sections depend only on the ops, not on the
device or the sequence number, so this module compresses each distinct op chunk
*once* (exactly as ``encode_batch`` does) and then frames, seals and signs it
per (device, seq) exactly as ``encode_batch`` does. ``self_check`` proves the
output is byte-identical to ``encode_batch`` for the same nonce, so the relay
sees real, valid, decryptable batches of realistic size and content.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
for p in (_ROOT, _ROOT / "scripts"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from hbw_sync import batch as wire  # noqa: E402
from hbw_sync import codec, crypto, enroll  # noqa: E402
from hbw_sync.codec import BATCH_LEVEL  # noqa: E402
from hbw_sync.ops import Op, canonical, routing_row  # noqa: E402

import workload  # noqa: E402


@dataclass(frozen=True)
class Template:
    """One chunk of ops, compressed once: the parts of a batch that do not depend on device or seq."""

    ops: tuple[Op, ...]
    routing: bytes
    content_z: bytes


def compress_chunk(ops: tuple[Op, ...], level: int = BATCH_LEVEL) -> Template:
    # The same two calls as hbw_sync.batch.encode_batch (dict_id 0).
    routing = codec.compress(codec.pack([routing_row(op) for op in ops]), level=level)
    content_z = codec.compress(codec.pack([canonical(op.content) for op in ops]), level=level)
    return Template(ops, routing, content_z)


def make_templates(count: int, ops_per_batch: int, seed: int = 2024, level: int = BATCH_LEVEL) -> list[Template]:
    """``count`` distinct op chunks from the realistic workload, each in strictly increasing HLC order."""
    n_changes = max(1000, int(count * ops_per_batch * 1.15) + 500)
    per_dev = workload.by_device(workload.generate(seed=seed, n_changes=n_changes))
    chunks: list[tuple[Op, ...]] = []
    for ops in per_dev.values():
        for i in range(0, len(ops) - ops_per_batch + 1, ops_per_batch):
            chunks.append(tuple(ops[i : i + ops_per_batch]))
    if not chunks:
        raise ValueError("workload too small for one chunk")
    return [compress_chunk(chunks[i % len(chunks)], level) for i in range(min(count, len(chunks)))]


def frame_batch(team: bytes, author: crypto.DeviceKey, device_id: bytes, seq: int, epoch: int, t: Template,
                content_key: bytes, nonce: bytes | None = None) -> bytes:
    """What ``encode_batch`` does after compressing: header, seal (AAD = header + routing), sign."""
    s_len = crypto.NONCE_LEN + len(t.content_z) + crypto.TAG_LEN
    header = wire.HEADER.pack(wire.MAGIC, wire.TYPE_BATCH, bytes([wire.VERSION]), 0, team, device_id, seq, epoch, 0,
                              len(t.routing), s_len)
    aad = header + t.routing
    signed = aad + crypto.seal(content_key, t.content_z, aad, nonce=nonce)
    return signed + author.sign(signed)


@dataclass
class SynthDevice:
    """An enrolled device without a client store: its keys, its batches to send, its sync state."""

    index: int
    author: crypto.DeviceKey
    transport: crypto.DeviceKey
    device_id: bytes
    author_pub: bytes
    transport_pub: bytes
    x25519_pub: bytes
    batches: list[bytes] = field(default_factory=list)
    next: int = 0  # index into batches of the next batch to send
    cursor: int = 0
    roster_v: int | None = None

    @classmethod
    def generate(cls, index: int) -> "SynthDevice":
        author, transport = crypto.DeviceKey.generate(), crypto.DeviceKey.generate()
        a_pub = author.public
        return cls(index, author, transport, crypto.device_id_for(a_pub), a_pub, transport.public,
                   enroll.x25519_public(enroll.new_x25519()))

    def enroll_args(self, token: bytes) -> dict:
        """The args ``hbw_sync.client.sync.join`` sends with an invite."""
        return {"token": token, "author_pub": self.author_pub, "transport_pub": self.transport_pub,
                "x25519_pub": self.x25519_pub, "label": f"bench-{self.index}"}

    def build(self, team: bytes, team_key: crypto.TeamKey, templates: list[Template], n: int) -> None:
        """Append ``n`` batches with the next sequence numbers (from 1), cycling through the templates."""
        ck = team_key.subkey(wire.CONTENT_PURPOSE)
        start = len(self.batches)
        for k in range(start, start + n):
            t = templates[(self.index * 7 + k) % len(templates)]
            self.batches.append(frame_batch(team, self.author, self.device_id, k + 1, team_key.epoch, t, ck))


def self_check(team: bytes, templates: list[Template]) -> None:
    """frame_batch(template) must equal encode_batch(ops) byte for byte, and decode back to the ops."""
    author, tk = crypto.DeviceKey.generate(), crypto.TeamKey.generate(1)
    t = templates[0]
    nonce = bytes(range(12))
    mine = frame_batch(team, author, author.device_id, 42, 1, t, tk.subkey(wire.CONTENT_PURPOSE), nonce)
    ref = wire.encode_batch(wire.Batch(team, author.device_id, 42, 1, t.ops), author, tk, level=BATCH_LEVEL,
                            nonce=nonce)
    if mine != ref:
        raise AssertionError("bench batch framing differs from hbw_sync.batch.encode_batch")
    back = wire.decode_batch(mine, author.public, tk, team=team)
    if back.ops != t.ops:
        raise AssertionError("bench batch does not decode to its ops")
