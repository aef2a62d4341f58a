"""protocol/vectors/batches.json: valid batches, every op kind and field, decoded and re-sealed (PROTOCOL.md §8).

The batch specs here are shared: invalid.json mutates them, merge.json and snapshot.json reuse
their entity ids and op ids.
"""

from __future__ import annotations

import hashlib
from typing import Any

import zstandard

from hbw_sync import batch as B
from hbw_sync import chunks as chunks_mod
from hbw_sync import codec, crypto, hlc
from hbw_sync import delta as delta_mod
from hbw_sync.ops import Kind, Op, make_op, make_op_id, routing_row

from ._kit import (
    DAY, DEVICES, LEVEL, MIN, T0, TEAM_ID, TEAM_KEYS, assemble, decode_args, nonce_for, op_from_json,
    op_to_json, zstd_meta,
)

# -- valid batches ------------------------------------------------------------------------

E_TASK = bytes.fromhex("7461736b00000001")
E_TASK2 = bytes.fromhex("7461736b00000002")
E_DOC = bytes.fromhex("646f630000000001")
E_DOC2 = bytes.fromhex("646f630000000002")
# A chunked version: the manifest of a deterministic 300 KB "scan" cut under the epoch-1 team key.
_SCAN = b"".join(hashlib.sha256(b"scan %d" % i).digest() for i in range(300_000 // 32))
CHUNKED_MANIFEST = chunks_mod.split_bytes(chunks_mod.ChunkKeys.of(TEAM_KEYS["t1"]), _SCAN)[0]
# Its next version as a delta version (§18e): one place edited; the manifest as a delta against the first's.
_SCAN2 = _SCAN[:150_000] + b"signed by the director" + _SCAN[150_022:]
CHUNKED_MANIFEST2 = chunks_mod.split_bytes(chunks_mod.ChunkKeys.of(TEAM_KEYS["t1"]), _SCAN2)[0]
E_MEMBER = b"amina"


def op_id(device: str, ts: int) -> bytes:
    return make_op_id(ts, DEVICES[device].device_id)


def valid_batch_specs() -> list[dict[str, Any]]:
    specs = _valid_batch_specs()
    for spec in specs:
        spec["ops"] = [canonical(op) for op in spec["ops"]]
    return specs


def _valid_batch_specs() -> list[dict[str, Any]]:
    P = hlc.pack
    report = b"%PDF-1.4\n% quarterly report\n" + bytes(range(256))
    report_v2 = report.replace(b"quarterly", b"annual")
    # A fixed method-1 delta (patch-from) as the delta engine wrote it; decoding is checked by
    # tests/test_delta.py, here it is only bytes in a field.
    delta_v2 = delta_mod.make_delta(report, report_v2) or b"\x01" + zstandard.ZstdCompressor().compress(report_v2)
    return [
        {
            "name": "single_task",
            "description": "One op creating a task: routing and content fields of every type.",
            "device": "d1", "key": "t1", "seq": 1, "keys": ("t1",),
            "ops": [
                make_op(Kind.TASK, E_TASK, P(T0, 0), None,
                        assignee="amina", status=0, due=20_380, priority=2, needs=3, pinned=False,
                        title="File the Q3 returns", description="Collect the forms from the registry."),
            ],
        },
        {
            "name": "mixed_ops",
            "description": "Tasks, a document and a member profile; nulls, notes, bytes, bases.",
            "device": "d1", "key": "t1", "seq": 2, "keys": ("t1",),
            "ops": [
                make_op(Kind.TASK, E_TASK, P(T0 + MIN, 0), op_id("d1", P(T0, 0)),
                        assignee=None, status=1, due=None, note="Forms collected; two are missing."),
                make_op(Kind.TASK, E_TASK2, P(T0 + MIN, 1), None,
                        assignee="bosco", status=0, priority=1, needs=4, pinned=True,
                        title="Scan the paper files", description=""),
                make_op(Kind.DOC, E_DOC, P(T0 + MIN, 2), None,
                        task=E_TASK, size=len(report), name="report.pdf", data=report,
                        sha256=hashlib.sha256(report).digest()),
                make_op(Kind.DOC, E_DOC, P(T0 + 2 * MIN, 0), op_id("d1", P(T0 + MIN, 2)), task=None),
                # A new version as a delta against the one it was based on (hbw_sync/delta/, PROTOCOL.md §18c).
                make_op(Kind.DOC, E_DOC, P(T0 + 2 * MIN, 1), op_id("d1", P(T0 + 2 * MIN, 0)),
                        size=len(report_v2), sha256=hashlib.sha256(report_v2).digest(),
                        delta=delta_v2, base_sha256=hashlib.sha256(report).digest()),
                make_op(Kind.MEMBER, E_MEMBER, P(T0 + 3 * MIN, 0), None,
                        laptop=True, internet=True, office_days=0b0000101, away_until=None,
                        capacity=8, takes_work=False, display_name="Amina"),
                make_op(Kind.TASK, E_TASK, P(T0 + 4 * MIN, 0), op_id("d1", P(T0 + MIN, 0)), status=2),
                make_op(Kind.TASK, E_TASK2, P(T0 + 5 * MIN, 0), op_id("d1", P(T0 + MIN, 1)),
                        note="Boxes 1-4 done."),
            ],
        },
        {
            "name": "unicode_text",
            "description": "Non-ASCII text in every content string (UTF-8 on the wire; lengths count code points).",
            "device": "d2", "key": "t1", "seq": 1, "keys": ("t1",),
            "ops": [
                make_op(Kind.TASK, E_TASK2, P(T0 + 10 * MIN, 0), None,
                        title="Ripoti ya robo — Q3 ✓",
                        description="Ελέγξτε τα έντυπα · 检查表格 · تحقق من النماذج · 👩🏾‍💼 done",
                        note="Ñandú 🐦 ok"),
                make_op(Kind.MEMBER, b"chidi", P(T0 + 10 * MIN, 1), None, display_name="Chidi Okonkwo-Ñúñez 🚲"),
            ],
        },
        {
            "name": "chunked_doc",
            "description": "A document version whose bytes travel as chunks outside the batch (PROTOCOL.md §18d-e): "
                           "content carries the manifest, routing the chunk ids (for the relay's garbage collection). "
                           "Then its next version as a delta version (§18e): a delta against the first, the manifest "
                           "as SHA-256 + a delta against the first's, and no chunk ids in routing.",
            "device": "d2", "key": "t1", "seq": 2, "keys": ("t1",),
            "ops": [
                make_op(Kind.DOC, E_DOC2, P(T0 + 11 * MIN, 0), None,
                        size=CHUNKED_MANIFEST.size, name="scan.pdf", sha256=CHUNKED_MANIFEST.sha256,
                        manifest=CHUNKED_MANIFEST.encode(), chunks=b"".join(CHUNKED_MANIFEST.ids)),
                make_op(Kind.DOC, E_DOC2, P(T0 + 11 * MIN, 1), None,
                        size=CHUNKED_MANIFEST2.size, sha256=CHUNKED_MANIFEST2.sha256,
                        delta=delta_mod.make_delta(_SCAN, _SCAN2), base_sha256=CHUNKED_MANIFEST.sha256,
                        manifest_delta=hashlib.sha256(CHUNKED_MANIFEST2.encode()).digest() + bytes([1])
                        + delta_mod.patch.patch_frame(CHUNKED_MANIFEST.encode(), CHUNKED_MANIFEST2.encode())),
            ],
        },
        {
            "name": "empty_sections",
            "description": "An op with routing fields only, one with content only, one with neither.",
            "device": "d3", "key": "t1", "seq": 3, "keys": ("t1",),
            "ops": [
                make_op(Kind.TASK, E_TASK, P(T0 + 20 * MIN, 0), None, status=3),
                make_op(Kind.TASK, E_TASK, P(T0 + 20 * MIN, 1), None, note="blocked: needs a signature"),
                make_op(Kind.MEMBER, b"dana", P(T0 + 20 * MIN, 2), None),
            ],
        },
        {
            "name": "rotated_epoch",
            "description": "Sealed with the epoch-2 key after a rotation; the decoder holds epochs 1 and 2.",
            "device": "d2", "key": "t2", "seq": 9, "keys": ("t1", "t2"),
            "ops": [make_op(Kind.TASK, E_TASK, P(T0 + DAY, 0), None, assignee="chidi", title="Reassigned")],
        },
        {
            "name": "max_integers",
            "description": "Largest seq (2^64-1), epoch (2^32-1), HLC (2^64-1), doc size (2^40) and due day; "
            "32-byte entity. Catches signed 64-bit integer mistakes.",
            "device": "d3", "key": "tmax", "seq": (1 << 64) - 1, "keys": ("tmax",),
            "ops": [
                make_op(Kind.DOC, b"\xff" * 32, hlc.MAX_HLC - 1, None, task=b"\xee" * 32, size=1 << 40),
                make_op(Kind.TASK, b"\xff" * 32, hlc.MAX_HLC, op_id("d3", hlc.MAX_HLC - 1),
                        due=2_932_896, status=3, priority=3, needs=7),
            ],
        },
        {
            "name": "archive_and_delete",
            "description": "An imported task keyed by its spreadsheet ref, archived, brought back, then deleted "
            "(the tombstone: deleted admits only true).",
            "device": "d1", "key": "t1", "seq": 4, "keys": ("t1",),
            "ops": [
                make_op(Kind.TASK, E_TASK2, P(T0 + 30 * MIN, 0), None,
                        title="Budget review", ref="W49-07", status=0, priority=1, needs=0),
                make_op(Kind.TASK, E_TASK2, P(T0 + 31 * MIN, 0), op_id("d1", P(T0 + 30 * MIN, 0)), archived=True),
                make_op(Kind.TASK, E_TASK2, P(T0 + 32 * MIN, 0), op_id("d1", P(T0 + 31 * MIN, 0)), archived=False),
                make_op(Kind.TASK, E_TASK2, P(T0 + 33 * MIN, 0), op_id("d1", P(T0 + 32 * MIN, 0)), deleted=True),
            ],
        },
        {
            "name": "confidential_document",
            "description": "A document marked confidential, then exported with a reason (PROTOCOL.md §5a): "
            "exported admits only true; the reason is sealed.",
            "device": "d2", "key": "t1", "seq": 2, "keys": ("t1",),
            "ops": [
                make_op(Kind.DOC, E_DOC, P(T0 + 40 * MIN, 0), op_id("d1", P(T0 + 2 * MIN, 1)), confidential=True),
                make_op(Kind.DOC, E_DOC, P(T0 + 41 * MIN, 0), op_id("d2", P(T0 + 40 * MIN, 0)),
                        exported=True, export_reason="Printed for the council meeting on Thursday."),
            ],
        },
    ]  # fmt: skip


def canonical(op: Op) -> Op:
    """The same op with its fields in ascending tag order (the order the vectors' msgpack uses)."""
    return op_from_json(op_to_json(op))


def encode_spec(spec: dict[str, Any]) -> bytes:
    dk, tk = DEVICES[spec["device"]], TEAM_KEYS[spec["key"]]
    b = B.Batch(TEAM_ID, dk.device_id, spec["seq"], tk.epoch, tuple(spec["ops"]))
    return B.encode_batch(b, dk, tk, level=LEVEL, nonce=nonce_for(spec["name"]))


def build() -> dict[str, Any]:
    out = []
    for spec in valid_batch_specs():
        data = encode_spec(spec)
        ops = spec["ops"]
        routing_plain = codec.pack([routing_row(op) for op in ops])
        content_plain = codec.pack([dict(op.content or {}) for op in ops])
        frame = B.parse_batch(data)
        content_z = crypto.open_sealed(TEAM_KEYS[spec["key"]].subkey(B.CONTENT_PURPOSE), frame.sealed, frame.aad)
        # self-checks: the hand assembler agrees with encode_batch, and the stages agree
        assert assemble(frame.routing, content_z, name=spec["name"], device=spec["device"], seq=spec["seq"], key=spec["key"]) == data
        assert codec.decompress(frame.routing, cap=1 << 30) == routing_plain
        assert codec.decompress(content_z, cap=1 << 30) == content_plain
        assert [op_from_json(op_to_json(op)) for op in ops] == list(ops)
        assert codec.pack([routing_row(op_from_json(op_to_json(op))) for op in ops]) == routing_plain
        assert codec.pack([op_from_json(op_to_json(op)).content for op in ops]) == content_plain
        out.append(
            {
                "name": spec["name"],
                "description": spec["description"],
                "decode": decode_args(device=spec["device"], keys=spec["keys"]),
                "inputs": {
                    "team": TEAM_ID.hex(),
                    "device": spec["device"],
                    "device_id": DEVICES[spec["device"]].device_id.hex(),
                    "seq": spec["seq"],
                    "epoch": TEAM_KEYS[spec["key"]].epoch,
                    "dict_id": 0,
                    "level": LEVEL,
                    "nonce": nonce_for(spec["name"]).hex(),
                    "ops": [op_to_json(op) for op in ops],
                },
                "routing_plain": routing_plain.hex(),
                "content_plain": content_plain.hex(),
                "header": data[: B.HEADER_LEN].hex(),
                "routing": frame.routing.hex(),
                "content_zstd": content_z.hex(),
                "sealed": frame.sealed.hex(),
                "signature": frame.signature.hex(),
                "batch": data.hex(),
            }
        )
    return {"meta": zstd_meta(), "batches": out}
