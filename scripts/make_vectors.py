#!/usr/bin/env python3
"""Write the protocol test vectors to ``protocol/vectors/`` (deterministically).

Usage: ``.venv/bin/python scripts/make_vectors.py [OUT_DIR]``

Every input is fixed: device keys come from fixed seeds, team keys from fixed
secrets, AEAD nonces are derived from the vector's name. Ed25519 signatures and
ChaCha20-Poly1305 are deterministic for fixed inputs, and msgpack encoding is
canonical for the values used here, so everything except the zstd output is
reproducible with any library version. zstd output at a fixed level is stable
for one zstd release only; the zstandard version that produced the files is
recorded in ``meta`` of ``batches.json``, ``invalid.json`` and ``snapshot.json``, and the tests
compare the zstd-dependent bytes only when the installed version matches.

Invalid batches that must fail *behind* the signature (schema, order, bombs,
dictionaries...) are assembled here by hand and signed properly, so that a
decoder reaches the stage the vector is about; each invalid vector names that
stage.

Importable: ``generate(out_dir)`` writes the files and returns their paths.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import msgpack  # noqa: E402
import zstandard  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey  # noqa: E402

from hbw_sync import batch as B  # noqa: E402
from hbw_sync import bundle as BU  # noqa: E402
from hbw_sync import codec, crypto, enroll, envelope, hlc, merge, snapshot, wordcode  # noqa: E402
from hbw_sync import delta as delta_mod  # noqa: E402
from hbw_sync import chunks as chunks_mod  # noqa: E402

if str(ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(ROOT / "scripts"))
from vectors import delta as delta_vectors  # noqa: E402  (scripts/vectors/: one module per family)
from vectors import chunks as chunk_vectors  # noqa: E402
from vectors import chunk_delta as chunk_delta_vectors  # noqa: E402
from vectors import zstd as zstd_vectors  # noqa: E402
from vectors import policy as policy_vectors  # noqa: E402
from vectors import sync as sync_vectors  # noqa: E402
from vectors import evidence as evidence_vectors  # noqa: E402

DELTA_V2 = b""


def expected_error(what: str, fn) -> tuple[str, str]:
    """Run ``fn``, which must fail with one of our errors: its (class name, code) for the vector."""
    try:
        fn()
    except HbwError as e:
        return type(e).__name__, e.code
    raise AssertionError(f"{what} was accepted, but the vector says it must fail")
from hbw_sync.errors import HbwError, UsageError  # noqa: E402
from hbw_sync.ops import FIELDS, NAMES, Kind, Op, make_op, make_op_id, routing_row  # noqa: E402

DEFAULT_OUT = ROOT / "protocol" / "vectors"
LEVEL = 19

# -- fixed keys ---------------------------------------------------------------------------

DEVICE_SEEDS = {"d1": b"\x01" * 32, "d2": b"\x11" * 32, "d3": b"\x21" * 32}
DEVICES = {name: crypto.DeviceKey(seed) for name, seed in DEVICE_SEEDS.items()}
TEAM_KEYS = {
    "t1": crypto.TeamKey(1, b"\x02" * 32),  # the team key, epoch 1
    "t2": crypto.TeamKey(2, b"\x12" * 32),  # after a rotation, epoch 2
    "tmax": crypto.TeamKey(0xFFFFFFFF, b"\x22" * 32),  # the largest epoch
    "impostor": crypto.TeamKey(1, b"\x0f" * 32),  # epoch 1 but the wrong secret
}
TEAM_ID = bytes.fromhex("0a0b0c0d0e0f1011")
OTHER_TEAM_ID = bytes.fromhex("f0f1f2f3f4f5f6f7")
T0 = 1_760_000_000_000  # 2025-10-09T08:53:20Z, the vectors' "now"
DAY = 86_400_000
MIN = 60_000


def nonce_for(name: str) -> bytes:
    return hashlib.sha256(b"hbw-sync test vector nonce\x00" + name.encode()).digest()[: crypto.NONCE_LEN]


# -- JSON forms ---------------------------------------------------------------------------


def jval(v: Any) -> Any:
    if isinstance(v, bytes):
        return {"hex": v.hex()}
    return v


def unjval(v: Any) -> Any:
    if isinstance(v, dict):
        return bytes.fromhex(v["hex"])
    return v


def op_to_json(op: Op) -> dict[str, Any]:
    specs = FIELDS[op.kind]
    values = {**op.fields, **(op.content or {})}
    return {
        "kind": op.kind.name.lower(),
        "entity": op.entity.hex(),
        "hlc": op.hlc,
        "base": None if op.base is None else op.base.hex(),
        "fields": {specs[t].name: jval(values[t]) for t in sorted(values)},
    }


def op_from_json(d: dict[str, Any]) -> Op:
    """The op a JSON form describes. Fields go in ascending tag order (the canonical order)."""
    kind = Kind[d["kind"].upper()]
    named = {k: unjval(v) for k, v in d["fields"].items()}
    ordered = dict(sorted(named.items(), key=lambda kv: NAMES[kind][kv[0]].tag))
    base = None if d["base"] is None else bytes.fromhex(d["base"])
    return make_op(kind, bytes.fromhex(d["entity"]), d["hlc"], base, **ordered)


def team_key_json(k: crypto.TeamKey) -> dict[str, Any]:
    return {"epoch": k.epoch, "secret": k.secret.hex()}


def decode_args(
    *, device: str = "d1", keys: tuple[str, ...] = ("t1",), team: bytes = TEAM_ID, limits: dict | None = None
) -> dict[str, Any]:
    d: dict[str, Any] = {
        "public_key": DEVICES[device].public.hex(),
        "team_keys": [team_key_json(TEAM_KEYS[k]) for k in keys],
        "team": team.hex(),
    }
    if limits:
        d["limits"] = limits
    return d


# -- hand assembly of (possibly bad but validly signed) batches ---------------------------


def assemble(
    routing_z: bytes,
    content_z: bytes | None = None,
    *,
    name: str,
    device: str = "d1",
    device_id: bytes | None = None,
    team: bytes = TEAM_ID,
    seq: int = 1,
    key: str = "t1",
    epoch: int | None = None,
    dict_id: int = 0,
    version: int = B.VERSION,
    flags: int = 0,
    magic: bytes = B.MAGIC,
    mtype: bytes = B.TYPE_BATCH,
    sealed: bytes | None = None,
    aad: bytes | None = None,
) -> bytes:
    """Header + routing + sealed + signature, with every part overridable; always validly signed."""
    dk, tk = DEVICES[device], TEAM_KEYS[key]
    s_len = len(sealed) if sealed is not None else crypto.NONCE_LEN + len(content_z or b"") + crypto.TAG_LEN
    header = B.HEADER.pack(
        magic, mtype, bytes([version]), flags, team, device_id or dk.device_id, seq,
        tk.epoch if epoch is None else epoch, dict_id, len(routing_z), s_len,
    )  # fmt: skip
    signed_aad = header + routing_z
    if sealed is None:
        sealed = crypto.seal(tk.subkey(B.CONTENT_PURPOSE), content_z or b"", aad or signed_aad, nonce=nonce_for(name))
    signed = signed_aad + sealed
    return signed + dk.sign(signed)


def z(obj_bytes: bytes) -> bytes:
    return codec.compress(obj_bytes, level=LEVEL)


def packb(obj: Any) -> bytes:
    """msgpack that may hold things ``codec.pack`` would (ext types, floats): for bad inputs."""
    return msgpack.packb(obj, use_bin_type=True)


# -- keys ---------------------------------------------------------------------------------


def keys_vectors() -> dict[str, Any]:
    return {
        "meta": {
            "device_id": "SHA-256('hbw-sync device id v1' || 0x00 || public_key)[0:8]",
            "key_id": "HMAC-SHA256(secret, 'hbw-sync key id v1' || 0x00 || epoch as u32 BE)[0:8]",
            "content_key": "HKDF-SHA256(ikm=secret, salt=none, info='hbw-sync batch content v1', L=32)",
        },
        "devices": [
            {"name": n, "seed": DEVICE_SEEDS[n].hex(), "public_key": k.public.hex(), "device_id": k.device_id.hex()}
            for n, k in DEVICES.items()
        ],
        "team_id": TEAM_ID.hex(),
        "other_team_id": OTHER_TEAM_ID.hex(),
        "team_keys": [
            {
                "name": n,
                "epoch": k.epoch,
                "secret": k.secret.hex(),
                "key_id": k.key_id.hex(),
                "content_key": k.subkey(B.CONTENT_PURPOSE).hex(),
            }
            for n, k in TEAM_KEYS.items()
        ],
    }


# -- hlc ----------------------------------------------------------------------------------


def hlc_vectors() -> dict[str, Any]:
    P = hlc.pack
    S = hlc.DEFAULT_MAX_SKEW_MS
    cases: list[dict[str, Any]] = []

    def add(fn: str, args: dict[str, Any], note: str) -> None:
        f = getattr(hlc, fn)
        try:
            result: Any = f(**args)
        except ValueError:
            result = "ValueError"
        if isinstance(result, tuple):
            result = list(result)
        cases.append({"fn": fn, "args": args, "expected": result, "note": note})

    add("pack", {"ms": 0, "logical": 0}, "zero")
    add("pack", {"ms": 1, "logical": 0}, "1 ms is 2^16")
    add("pack", {"ms": T0, "logical": 5}, "a 2025 time")
    add("pack", {"ms": hlc.MAX_MS, "logical": hlc.LOGICAL_MASK}, "the largest HLC, 2^64-1")
    add("pack", {"ms": -1, "logical": 0}, "negative ms is refused")
    add("pack", {"ms": hlc.MAX_MS + 1, "logical": 0}, "ms over 48 bits is refused")
    add("pack", {"ms": T0, "logical": 65536}, "logical over 16 bits is refused")
    add("unpack", {"ts": P(T0, 5)}, "(ms, logical)")
    add("unpack", {"ts": hlc.MAX_HLC}, "largest")
    add("tick", {"last": 0, "now_ms": T0}, "first event: the wall time, logical 0")
    add("tick", {"last": P(T0, 3), "now_ms": T0}, "same millisecond: logical + 1")
    add("tick", {"last": P(T0, 3), "now_ms": T0 + 1}, "wall clock moved on: logical resets")
    add("tick", {"last": P(T0 + 5000, 0), "now_ms": T0}, "wall clock set back 5 s: stay ahead of last")
    add("tick", {"last": P(T0, hlc.LOGICAL_MASK), "now_ms": T0}, "logical overflow carries into ms")
    add("tick", {"last": 0, "now_ms": -5}, "negative wall time clamps to 0, still > last")
    add("tick", {"last": 0, "now_ms": hlc.MAX_MS + 10}, "wall time past 48 bits clamps to MAX_MS")
    add("skew_bound", {"now_ms": T0}, "now + 10 min, logical all ones")
    add("skew_bound", {"now_ms": T0, "max_skew_ms": 0}, "no skew allowed")
    add("observe", {"last": P(T0, 0), "remote": P(T0 + 1000, 7), "now_ms": T0}, "peer 1 s ahead: adopted")
    add("observe", {"last": P(T0, 9), "remote": P(T0 - 1000, 0), "now_ms": T0}, "peer behind: keep last")
    add("observe", {"last": P(T0, 0), "remote": P(T0 + 3 * DAY, 0), "now_ms": T0}, "peer 3 days ahead: capped at now+skew")
    add("observe", {"last": P(T0, 0), "remote": P(T0 + 2000, 0), "now_ms": T0, "max_skew_ms": 1000}, "custom skew bound")
    add("effective", {"ts": P(T0 + 3 * DAY, 0), "received_ms": None}, "not yet at the relay: face value")
    add("effective", {"ts": P(T0 + 5 * MIN, 2), "received_ms": T0}, "within the bound: unchanged")
    add("effective", {"ts": P(T0 + 3 * DAY, 0), "received_ms": T0}, "3 days ahead of the relay: capped")
    add("effective", {"ts": P(T0 + 2000, 0), "received_ms": T0, "max_skew_ms": 1000}, "custom bound")
    return {
        "meta": {
            "layout": "hlc = ms << 16 | logical; all values are exact integers up to 2^64-1",
            "default_max_skew_ms": S,
            "errors": "'ValueError' means the arguments must be refused",
        },
        "cases": cases,
    }


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
    global DELTA_V2
    DELTA_V2 = delta_mod.make_delta(report, report_v2) or b"\x01" + zstandard.ZstdCompressor().compress(report_v2)
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
                        delta=DELTA_V2, base_sha256=hashlib.sha256(report).digest()),
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


def batch_vectors() -> dict[str, Any]:
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


def zstd_meta() -> dict[str, Any]:
    return {
        "zstandard_version": zstandard.__version__,
        "zstd_version": ".".join(map(str, zstandard.ZSTD_VERSION)),
        "level": LEVEL,
        "note": "zstd-compressed bytes (header lengths, routing, content_zstd, sealed, signature, batch) "
        "are reproducible only with this zstd version; decoding them is not version-dependent",
    }


# -- invalid batches ----------------------------------------------------------------------


def invalid_vectors() -> dict[str, Any]:
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


# -- merge --------------------------------------------------------------------------------


def merge_items() -> list[tuple[str, int | None, Op]]:
    """(device name, received_ms, op) of the merge scenario; the snapshot vector reuses it."""
    P = hlc.pack
    return [
        ("d1", T0 + 1000, make_op(Kind.TASK, E_TASK, P(T0, 0), None,
                                  assignee="amina", status=0, due=20_380, priority=1, needs=2,
                                  title="Quarterly report", description="v1", note="created")),
        ("d2", T0 + MIN + 1000, make_op(Kind.TASK, E_TASK, P(T0 + MIN, 0), op_id("d1", P(T0, 0)),
                                        status=1, description="v2 (d2)", note="started")),
        ("d3", T0 + MIN + 9000, make_op(Kind.TASK, E_TASK, P(T0 + MIN, 0), op_id("d1", P(T0, 0)),
                                        status=3, description="v2 (d3)", note="needs a signature")),
        ("d3", T0 + 2 * MIN, make_op(Kind.TASK, E_TASK, P(T0 + 3 * DAY, 0), None,
                                     assignee="chidi", priority=3, note="sent from a clock 3 days fast")),
        ("d1", T0 + 15 * MIN + 500, make_op(Kind.TASK, E_TASK, P(T0 + 15 * MIN, 0), op_id("d3", P(T0 + 3 * DAY, 0)),
                                            assignee="bosco", due=None)),
        ("d2", T0 + 2 * MIN, make_op(Kind.MEMBER, E_MEMBER, P(T0 + 2 * MIN, 0), None,
                                     laptop=True, internet=False, office_days=0b0011111, away_until=20_383,
                                     display_name="Amina")),
        ("d2", T0 + 30 * MIN, make_op(Kind.MEMBER, E_MEMBER, P(T0 + 30 * MIN, 0), op_id("d2", P(T0 + 2 * MIN, 0)),
                                      away_until=None, internet=True)),
        ("d1", None, make_op(Kind.MEMBER, E_MEMBER, P(T0 + 40 * MIN, 0), None, display_name="Amina K.")),
    ]  # fmt: skip


def merge_vectors() -> dict[str, Any]:
    ids = {n: DEVICES[n].device_id for n in DEVICES}
    tie_winner = max(("d2", "d3"), key=lambda n: ids[n])
    items = merge_items()
    stamped = [(op, merge.stamp_for(op, ids[dev], rec)) for dev, rec, op in items]
    states = merge.fold(stamped)
    task = states[(Kind.TASK, E_TASK)].values()
    # The scenario must exercise what it claims.
    assert task["assignee"] == "bosco", "far-future op must be capped by effective()"
    assert task["priority"] == 3 and task["due"] is None
    assert task["status"] == {"d2": 1, "d3": 3}[tie_winner], "HLC tie must fall to the greater device id"
    assert len(task["note"]) == 4
    assert states[(Kind.MEMBER, E_MEMBER)].values()["display_name"] == "Amina K."

    def stamp_json(s: merge.Stamp) -> dict[str, Any]:
        return {"ts": s.ts, "op_id": s.op_id.hex()}

    return {
        "meta": {
            "max_skew_ms": hlc.DEFAULT_MAX_SKEW_MS,
            "rule": "stamp = (effective(hlc, received_ms), hlc(8 BE) || device_id); LWW keeps the greatest "
            "stamp per field; APPEND (note) keeps every value, listed in op-id order; the result must not "
            "depend on the order the ops are applied in, nor on applying an op twice",
            "tie": f"ops 2 and 3 share an HLC; {tie_winner} has the greater device id and wins 'status' and 'description'",
            "far_future": "op 4 (d3) claims an HLC 3 days ahead; the relay received it at T0+2min, so its effective "
            "time is T0+12min and op 5 (d1, T0+15min) wins 'assignee' although op 4's raw HLC is greater",
            "unsent": "op 8 has received_ms null: not yet at the relay, its HLC is taken at face value",
        },
        "devices": {n: ids[n].hex() for n in DEVICES},
        "ops": [
            {"device": dev, "received_ms": rec, "op": op_to_json(op), "stamp": stamp_json(s)}
            for (dev, rec, op), (_, s) in zip(items, stamped)
        ],
        "expected": [
            {
                "kind": k.name.lower(),
                "entity": e.hex(),
                "values": {name: ([jval(x) for x in v] if isinstance(v, list) else jval(v)) for name, v in st.values().items()},
                "head": stamp_json(st.head),  # type: ignore[arg-type]
            }
            for (k, e), st in sorted(states.items())
        ],
    }


# -- typed JSON for msgpack values (envelope args and results) ------------------------------


def tjson(v: Any) -> Any:
    """A msgpack value as JSON: bytes {"hex"}, maps with non-string keys {"map": [[k, v], ...]}."""
    if isinstance(v, bytes):
        return {"hex": v.hex()}
    if isinstance(v, (list, tuple)):
        return [tjson(x) for x in v]
    if isinstance(v, dict):
        if all(isinstance(k, str) for k in v):
            assert set(v) not in ({"hex"}, {"map"}), "ambiguous typed JSON"
            return {k: tjson(x) for k, x in v.items()}
        return {"map": [[tjson(k), tjson(x)] for k, x in v.items()]}
    return v


def untjson(v: Any) -> Any:
    if isinstance(v, dict):
        if set(v) == {"hex"}:
            return bytes.fromhex(v["hex"])
        if set(v) == {"map"}:
            return {untjson(k): untjson(x) for k, x in v["map"]}
        return {k: untjson(x) for k, x in v.items()}
    if isinstance(v, list):
        return [untjson(x) for x in v]
    return v


# -- enrollment: invites and key grants --------------------------------------------------------

TRANSPORT_SEEDS = {"d1": b"\x31" * 32, "d2": b"\x32" * 32, "d3": b"\x33" * 32}
TRANSPORT = {n: crypto.DeviceKey(s) for n, s in TRANSPORT_SEEDS.items()}
X25519_PRIVATE = {"d1": b"\x51" * 32, "d2": b"\x52" * 32, "d3": b"\x53" * 32}
X25519_PUBLIC = {n: enroll.x25519_public(k) for n, k in X25519_PRIVATE.items()}
RELAY_SEED = b"\x41" * 32
RELAY = crypto.DeviceKey(RELAY_SEED)
EPHEMERAL_PRIVATE = b"\x61" * 32
INVITE_TOKEN = bytes.fromhex("00112233445566778899aabbccddeeff")
RELAY_URL = "http://192.168.1.20:8765"
GRANT_LABEL = b"hbw-sync key grant v1\x00"
RELAY_X25519_PRIVATE = crypto.hkdf(RELAY_SEED, b"hbw-sync relay x25519 v1")  # = bundle.relay_x25519(RELAY)
RELAY_X25519_PUBLIC = enroll.x25519_public(RELAY_X25519_PRIVATE)


def x25519(private: bytes, public: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(public))


def build_grant(key: crypto.TeamKey, recipient: str, granter: str, *, name: str, seal_to: str | None = None,
                key_id: bytes | None = None) -> dict[str, Any]:
    """A key grant assembled step by step as the spec describes, with a fixed ephemeral key and nonce."""
    rdev = DEVICES[recipient].device_id
    rpub = X25519_PUBLIC[seal_to or recipient]
    kid = key.key_id if key_id is None else key_id
    eph_pub = enroll.x25519_public(EPHEMERAL_PRIVATE)
    shared = x25519(EPHEMERAL_PRIVATE, rpub)
    salt = eph_pub + rpub
    grant_key = crypto.hkdf(shared, GRANT_LABEL, salt=salt)
    aad = GRANT_LABEL + rdev + key.epoch.to_bytes(4, "big") + kid
    nonce = nonce_for(name)
    sealed = crypto.seal(grant_key, key.secret, aad, nonce=nonce)
    body = codec.pack([key.epoch, kid, eph_pub, sealed, DEVICES[granter].device_id])
    signed = GRANT_LABEL + rdev + body
    signature = DEVICES[granter].sign(signed)
    return {
        "ephemeral_public": eph_pub, "shared": shared, "salt": salt, "grant_key": grant_key, "aad": aad,
        "nonce": nonce, "sealed": sealed, "body": body, "signed": signed, "signature": signature,
        "grant": body + signature,
    }  # fmt: skip


def enroll_vectors() -> dict[str, Any]:
    # invites
    inv = enroll.Invite(RELAY_URL, RELAY.public, TEAM_ID, INVITE_TOKEN, "chidi", "member")
    text = inv.encode()
    raw = codec.pack([inv.url, inv.relay_public, inv.team, inv.token, inv.member, inv.role])
    assert text == "hbw1-" + base64.b32encode(raw).decode().rstrip("=").lower()
    assert enroll.Invite.decode(text) == inv
    sup = enroll.Invite(RELAY_URL, RELAY.public, TEAM_ID, bytes(range(16)), "amina", "supervisor")

    def invite_json(i: enroll.Invite) -> dict[str, Any]:
        r = codec.pack([i.url, i.relay_public, i.team, i.token, i.member, i.role])
        return {
            "url": i.url, "relay_public": i.relay_public.hex(), "team": i.team.hex(), "token": i.token.hex(),
            "member": i.member, "role": i.role, "msgpack": r.hex(), "text": i.encode(),
            "token_hash": enroll.token_hash(i.token).hex(),
        }  # fmt: skip

    body = text[len("hbw1-"):]
    spaced = "  " + "HBW1-" + " ".join(body[i : i + 8].upper() for i in range(0, len(body), 8)) + "\n"
    assert enroll.Invite.decode(spaced) == inv
    bad_role = "hbw1-" + base64.b32encode(codec.pack([RELAY_URL, RELAY.public, TEAM_ID, INVITE_TOKEN, "chidi", "admin"])).decode().rstrip("=").lower()
    short_key = "hbw1-" + base64.b32encode(codec.pack([RELAY_URL, RELAY.public[:31], TEAM_ID, INVITE_TOKEN, "chidi", "member"])).decode().rstrip("=").lower()
    invalid_invites = [
        {"name": "wrong_prefix", "description": "Starts 'hbw2-'.", "text": "hbw2-" + body},
        {"name": "truncated", "description": "The last 10 characters are missing.", "text": text[:-10]},
        {"name": "not_base32", "description": "A '1' (not in the base32 alphabet) in the body.", "text": text[:12] + "1" + text[13:]},
        {"name": "unknown_role", "description": "role 'admin'.", "text": bad_role},
        {"name": "short_relay_key", "description": "A 31-byte relay public key.", "text": short_key},
    ]  # fmt: skip
    for v in invalid_invites:
        try:
            enroll.Invite.decode(v["text"])
        except UsageError as e:
            v["expected_error_class"], v["expected_code"] = type(e).__name__, e.code
        else:
            raise AssertionError(f"invite {v['name']} decodes")

    # grants
    tk = TEAM_KEYS["t2"]
    g = build_grant(tk, "d2", "d1", name="grant")
    d2 = DEVICES["d2"].device_id
    assert enroll.open_grant(g["grant"], d2, X25519_PRIVATE["d2"], DEVICES["d1"].public) == tk
    assert enroll.grant_sender(g["grant"]) == DEVICES["d1"].device_id
    # make_grant (random ephemeral key and nonce) must follow the same layout
    real = enroll.make_grant(tk, d2, X25519_PUBLIC["d2"], DEVICES["d1"])
    assert enroll.open_grant(real, d2, X25519_PRIVATE["d2"], DEVICES["d1"].public) == tk
    rb = codec.unpack(real[:-64])
    assert (rb[0], rb[1], rb[4], len(rb[2]), len(rb[3])) == (tk.epoch, tk.key_id, DEVICES["d1"].device_id, 32, 60)
    assert len(real) == len(g["grant"])

    def opener(device: str = "d2", granter: str = "d1") -> dict[str, Any]:
        return {"my_device": DEVICES[device].device_id.hex(), "my_x25519_private": X25519_PRIVATE[device].hex(),
                "granter_public": DEVICES[granter].public.hex()}

    def flip(data: bytes, i: int) -> bytes:
        return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]

    good = g["grant"]
    invalid_grants = [
        ("truncated", "73 bytes: shorter than a signature + 10.", good[:73], opener()),
        ("flipped_in_sealed", "One bit flipped in the sealed secret (inside the signed body).",
         flip(good, len(g["body"]) - 20), opener()),
        ("flipped_signature", "One bit flipped in the signature.", flip(good, len(good) - 5), opener()),
        ("for_another_device", "d2's grant opened by d3: the signature binds the recipient's device id.", good,
         opener("d3")),
        ("other_granter_key", "Checked with d3's author key instead of the granter's.", good, opener(granter="d3")),
        ("sealed_to_other_x25519", "Signed for d2, but wrapped to d3's X25519 key.",
         build_grant(tk, "d2", "d1", name="sealed_to_other_x25519", seal_to="d3")["grant"], opener()),
        ("wrong_key_id", "Signed and sealed consistently, but the key id is epoch 1's, not the secret's.",
         build_grant(tk, "d2", "d1", name="wrong_key_id", key_id=TEAM_KEYS["t1"].key_id)["grant"], opener()),
    ]  # fmt: skip
    grants_bad = []
    for name, desc, data, op in invalid_grants:
        cls, code = expected_error(f"grant {name}", lambda: enroll.open_grant(
            data, bytes.fromhex(op["my_device"]), bytes.fromhex(op["my_x25519_private"]),
            bytes.fromhex(op["granter_public"])))
        grants_bad.append({"name": name, "description": desc, "grant": data.hex(), "open": op,
                           "expected_error_class": cls, "expected_code": code})

    return {
        "meta": {
            "invite": "'hbw1-' || lowercase(base32(msgpack([url, relay_public, team, token, member, role]))) "
            "without '=' padding (RFC 4648 alphabet); decoders drop all whitespace and ignore case",
            "token_hash": "SHA-256('hbw-sync invite token v1' || 0x00 || token)",
            "grant": "body = msgpack([epoch, key_id, ephemeral_public, sealed, granter_device_id]); "
            "grant = body || Ed25519(granter author key, label || recipient_device_id || body)",
            "grant_key": "HKDF-SHA256(ikm=X25519(ephemeral, recipient), salt=ephemeral_public || recipient_x25519_public, "
            "info=label, L=32); label = 'hbw-sync key grant v1' || 0x00",
            "grant_sealed": "nonce(12) || ChaCha20-Poly1305(grant_key, nonce, team secret, "
            "AAD = label || recipient_device_id || u32(epoch) || key_id)",
        },
        "devices": [
            {"name": n, "device_id": DEVICES[n].device_id.hex(), "author_public": DEVICES[n].public.hex(),
             "transport_seed": TRANSPORT_SEEDS[n].hex(), "transport_public": TRANSPORT[n].public.hex(),
             "x25519_private": X25519_PRIVATE[n].hex(), "x25519_public": X25519_PUBLIC[n].hex()}
            for n in DEVICES
        ],  # fmt: skip
        "relay": {"seed": RELAY_SEED.hex(), "public": RELAY.public.hex()},
        "invites": [invite_json(inv), invite_json(sup)],
        "invite_spaced": {"text": spaced, "decodes_to": 0},
        "invalid_invites": invalid_invites,
        "grant": {
            "team_key": {"epoch": tk.epoch, "secret": tk.secret.hex(), "key_id": tk.key_id.hex()},
            "recipient": "d2",
            "recipient_device_id": d2.hex(),
            "recipient_x25519_public": X25519_PUBLIC["d2"].hex(),
            "granter": "d1",
            "granter_device_id": DEVICES["d1"].device_id.hex(),
            "ephemeral_private": EPHEMERAL_PRIVATE.hex(),
            "label": GRANT_LABEL.hex(),
            **{k: v.hex() for k, v in g.items()},
        },
        "invalid_grants": grants_bad,
        "word_code": word_code_vector(invite_json(inv)["text"]),
    }


def word_code_vector(invite_text: str) -> dict[str, Any]:
    """An invite read out by phone (PROTOCOL.md §14a): the words' keys, the sealed invite, the fetch request."""
    slot = 4821
    words = tuple(wordcode.WORDS[i] for i in (1234, 42, 777, 2000, 5))
    proof, seal_key = wordcode.derive(slot, words)
    nonce = bytes(range(12))
    typed = f"{slot} " + " ".join(w[:4].upper() for w in words)
    assert wordcode.parse_code(typed) == (slot, words)
    return {
        "description": "slot and five words from the BIP-39 English list; any word may be typed by its first four "
                       "letters, in any case",
        "slot": slot, "words": list(words), "code": wordcode.format_code(slot, words), "typed": typed,
        "scrypt": {"password": " ".join(words), "salt": ("hbw-sync word code v1\x00".encode() + slot.to_bytes(2, "big")).hex(),
                   "n": wordcode.SCRYPT_N, "r": wordcode.SCRYPT_R, "p": wordcode.SCRYPT_P, "length": 64},
        "proof": proof.hex(), "seal_key": seal_key.hex(), "proof_digest": wordcode.proof_digest(proof).hex(),
        "invite_text": invite_text, "nonce": nonce.hex(),
        "sealed": wordcode.seal_invite(seal_key, slot, invite_text, nonce).hex(),
        "fetch_request": wordcode.fetch_request(slot, proof).hex(),
    }  # fmt: skip


# -- envelopes ---------------------------------------------------------------------------------


def _envelope(kind: bytes, body: Any, key: crypto.DeviceKey, version: int = envelope.VERSION,
              magic: bytes = envelope.MAGIC) -> bytes:
    signed = magic + kind + bytes([version]) + packb(body)
    return signed + key.sign(signed)


def envelope_vectors() -> dict[str, Any]:
    d1, d3 = DEVICES["d1"].device_id, DEVICES["d3"].device_id
    t1, t2 = TEAM_KEYS["t1"], TEAM_KEYS["t2"]
    grant = build_grant(t2, "d2", "d1", name="grant")["grant"]
    requests_in = [
        ("sync", "A supervisor's device d1 syncs: pull cursor, budget, roster version, a new key to publish "
         "and a key grant for d2. No batches (their bytes depend on zstd).", "d1", T0, "sync",
         {"cursor": 1041, "budget": 200_000, "batches": [], "roster_v": 3, "key": [2, t2.key_id],
          "grants": [[DEVICES["d2"].device_id, 2, grant]]}),
        ("enroll", "Device d3 joins with the invite token of enroll.json; its transport key signs.", "d3", T0 + 5000,
         "enroll", {"token": INVITE_TOKEN, "author_pub": DEVICES["d3"].public, "transport_pub": TRANSPORT["d3"].public,
                    "x25519_pub": X25519_PUBLIC["d3"], "label": "registry-laptop-3"}),
        ("download", "d1 resumes a by-reference batch at offset 65 536, asking for up to 64 KiB.", "d1", T0 + 9000,
         "download",
         {"rseq": 1040, "offset": 65536, "length": 65536}),
    ]  # fmt: skip
    requests, by_name = [], {}
    for name, desc, dev, t, action, args in requests_in:
        nonce = nonce_for("envelope " + name) + nonce_for("envelope2 " + name)[:4]
        data, n = envelope.make_request(TRANSPORT[dev], DEVICES[dev].device_id, action, args, t, nonce=nonce)
        assert n == nonce and len(nonce) == envelope.NONCE_LEN
        body = codec.pack([DEVICES[dev].device_id, t, nonce, action, args])
        assert data[:5] == b"HBWQ\x01" and data[5:-64] == body
        req = envelope.parse_request(data)
        req.verify(TRANSPORT[dev].public)
        by_name[name] = (data, nonce)
        requests.append({
            "name": name, "description": desc, "device": dev, "device_id": DEVICES[dev].device_id.hex(),
            "transport_public": TRANSPORT[dev].public.hex(), "time_ms": t, "nonce": nonce.hex(), "action": action,
            "args": tjson(args), "body_msgpack": body.hex(), "signature": data[-64:].hex(), "envelope": data.hex(),
        })  # fmt: skip

    roster = {
        d1: ["amina", DEVICES["d1"].public, X25519_PUBLIC["d1"], None, "supervisor"],
        DEVICES["d2"].device_id: ["bosco", DEVICES["d2"].public, X25519_PUBLIC["d2"], None, "member"],
        d3: ["chidi", DEVICES["d3"].public, X25519_PUBLIC["d3"], T0 - DAY, "member"],
    }
    responses_in = [
        ("sync", "The relay answers d1's sync: one ack, one reject, a by-reference batch, the roster, keys, "
         "pending grants (d1 is a supervisor).", "sync", T0 + 40,
         {"acks": [[12, 1042, T0 + 40]],
          "rejects": [[13, {"error": "ProtocolError", "code": "protocol.seq_reuse",
                            "message": "batch 13 was already received with other content"}]],
          "batches": [[1040, DEVICES["d2"].device_id, T0 - MIN, None, 65_792]],
          "cursor": 1042, "more": False, "roster": roster, "roster_v": 4, "keys": {1: t1.key_id, 2: t2.key_id},
          "grants": [], "pending": [[DEVICES["d2"].device_id, X25519_PUBLIC["d2"], [2]]], "rotate": False,
          "want_snapshot": False}),
        ("enroll", "The relay enrolls d3 as member 'chidi'; the team already has keys (so d3 waits for grants).",
         "enroll", T0 + 5010,
         {"team": TEAM_ID, "team_name": "Registry office", "member": "chidi", "role": "member",
          "keys": {1: t1.key_id, 2: t2.key_id}, "relay_x25519": RELAY_X25519_PUBLIC}),
        ("download", "The last piece of batch 1040 (65 792 bytes): the 256 bytes from offset 65 536 (a stand-in "
         "pattern, not real batch bytes).", "download", T0 + 9010,
         {"size": 65_792, "offset": 65536, "chunk": bytes(range(256))}),
    ]  # fmt: skip
    responses = []
    for name, desc, req_name, t, result in responses_in:
        _, nonce = by_name[req_name]
        data = envelope.make_response(RELAY, nonce, result, t)
        body = codec.pack([nonce, t, result])
        assert data[:5] == b"HBWR\x01" and data[5:-64] == body
        assert envelope.parse_response(data, RELAY.public, nonce).result == result
        responses.append({
            "name": name, "description": desc, "request": req_name, "nonce": nonce.hex(), "time_ms": t, "result": tjson(result),
            "body_msgpack": body.hex(), "signature": data[-64:].hex(), "envelope": data.hex(),
        })  # fmt: skip

    sync_req, sync_nonce = by_name["sync"]
    sync_resp = bytes.fromhex(responses[0]["envelope"])
    S = envelope.MAX_REQUEST_SKEW_MS
    freshness = [
        {"time_ms": T0, "now_ms": T0, "expected_code": None},
        {"time_ms": T0, "now_ms": T0 + S, "expected_code": None},
        {"time_ms": T0, "now_ms": T0 - S, "expected_code": None},
        {"time_ms": T0, "now_ms": T0 + S + 1, "expected_code": "access.clock"},
        {"time_ms": T0, "now_ms": T0 - S - 1, "expected_code": "access.clock"},
    ]
    sync_args = requests_in[0][5]
    body_ok = [d1, T0, sync_nonce, "sync", sync_args]

    def resign(body: Any, **kw: Any) -> bytes:
        return _envelope(b"Q", body, TRANSPORT["d1"], **kw)

    def flip(data: bytes, i: int) -> bytes:
        return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]

    altered = envelope.MAGIC + b"Q\x01" + packb([d1, T0, sync_nonce, "sync", {**sync_args, "cursor": 0}]) + sync_req[-64:]
    PE, IE, VE, AE = "ProtocolError", "IntegrityError", "VersionError", "AccessError"
    bad_requests = [
        ("request_bad_magic", "Magic 'HBX'.", b"HBX" + sync_req[3:], PE, "protocol.magic", "parse"),
        ("request_too_short", "68 bytes: shorter than header + signature.", sync_req[:68], PE, "protocol.magic", "parse"),
        ("request_is_a_response", "A response envelope (type 'R') where a request is expected.", sync_resp,
         PE, "protocol.magic", "parse"),
        ("request_unknown_version", "Version byte 2, validly signed.", resign(body_ok, version=2), VE, "protocol.version", "parse"),
        ("request_trailing_byte", "One byte after the signature (the body then ends with a stray byte).",
         sync_req + b"\x00", PE, "protocol.trailing", "parse"),
        ("request_ext_type", "An ext type in args, validly signed.",
         resign([d1, T0, sync_nonce, "sync", {"cursor": msgpack.ExtType(1, b"x")}]), PE, "protocol.msgpack", "parse"),
        ("request_body_4_elements", "Body without args, validly signed.", resign(body_ok[:4]), PE, "protocol.schema", "parse"),
        ("request_nonce_15_bytes", "A 15-byte nonce, validly signed.",
         resign([d1, T0, sync_nonce[:15], "sync", sync_args]), PE, "protocol.schema", "parse"),
        ("request_time_is_bool", "time = true, validly signed.", resign([d1, True, sync_nonce, "sync", sync_args]),
         PE, "protocol.schema", "parse"),
        ("request_device_id_7_bytes", "A 7-byte device id, validly signed.",
         resign([d1[:7], T0, sync_nonce, "sync", sync_args]), PE, "protocol.schema", "parse"),
        ("request_args_not_map", "args is an array, validly signed.", resign([d1, T0, sync_nonce, "sync", []]),
         PE, "protocol.schema", "parse"),
        ("request_bad_signature", "One bit of the signature flipped.", flip(sync_req, len(sync_req) - 3),
         IE, "integrity.signature", "verify"),
        ("request_args_altered", "cursor changed to 0 after signing (signature kept).", altered,
         IE, "integrity.signature", "verify"),
        ("request_signed_by_author_key", "Signed by d1's author key, not its transport key.",
         _envelope(b"Q", body_ok, DEVICES["d1"]), IE, "integrity.signature", "verify"),
        ("request_stale", "Validly signed at T0, received at T0 + skew + 1 ms.", sync_req, AE, "access.clock", "fresh"),
        ("request_stale_bad_signature", "Stale and with a flipped signature bit: freshness is checked first.",
         flip(sync_req, len(sync_req) - 3), AE, "access.clock", "fresh"),
    ]  # fmt: skip
    invalid: list[dict[str, Any]] = []
    for name, desc, data, cls, code, stage in bad_requests:
        now = T0 + S + 1 if name.startswith("request_stale") else T0
        invalid.append({"name": name, "description": desc, "kind": "request", "stage": stage, "envelope": data.hex(),
                        "transport_public": TRANSPORT["d1"].public.hex(), "now_ms": now,
                        "expected_error_class": cls, "expected_code": code})

    resp_body = [sync_nonce, T0 + 40, responses_in[0][4]]
    bad_responses = [
        ("response_bad_magic", "Magic 'HBX'.", b"HBX" + sync_resp[3:], PE, "protocol.magic"),
        ("response_is_a_request", "A request envelope (type 'Q') where a response is expected.", sync_req,
         PE, "protocol.magic"),
        ("response_unknown_version", "Version byte 2, signed by the relay.",
         _envelope(b"R", resp_body, RELAY, version=2), VE, "protocol.version"),
        ("response_bad_signature", "One bit of the signature flipped.", flip(sync_resp, len(sync_resp) - 3),
         IE, "integrity.signature"),
        ("response_forged_ack", "An ack for seq 14 added, signed by another key than the pinned relay's.",
         _envelope(b"R", [sync_nonce, T0 + 40, {**resp_body[2], "acks": [[14, 1043, T0 + 40]]}], DEVICES["d2"]),
         IE, "integrity.signature"),
        ("response_other_nonce", "A valid relay response to another request (the enroll request's nonce).",
         bytes.fromhex(responses[1]["envelope"]), PE, "protocol.replay"),
        ("response_result_not_map", "result is an array, signed by the relay.",
         _envelope(b"R", [sync_nonce, T0 + 40, []], RELAY), PE, "protocol.schema"),
    ]  # fmt: skip
    for name, desc, data, cls, code in bad_responses:
        invalid.append({"name": name, "description": desc, "kind": "response", "envelope": data.hex(),
                        "relay_public": RELAY.public.hex(), "nonce": sync_nonce.hex(),
                        "expected_error_class": cls, "expected_code": code})

    # self-check: every invalid vector fails as recorded
    for v in invalid:
        data = bytes.fromhex(v["envelope"])
        try:
            if v["kind"] == "request":
                req = envelope.parse_request(data)  # the relay's order (PROTOCOL.md §12): freshness first
                envelope.check_fresh(req, v["now_ms"])
                req.verify(bytes.fromhex(v["transport_public"]))
            else:
                envelope.parse_response(data, RELAY.public, sync_nonce)
        except HbwError as e:
            assert (type(e).__name__, e.code) == (v["expected_error_class"], v["expected_code"]), (v["name"], e)
        else:
            raise AssertionError(f"{v['name']} passes")

    relay_order = _relay_order_vectors(d1, sync_nonce)

    return {
        "meta": {
            "layout": "'HBW' || type ('Q' request, 'R' response) || version (1) || msgpack(body) || "
            "Ed25519 signature (64) over every byte before it",
            "request_body": "[device_id (bin 8), time_ms (uint), nonce (bin 16), action (str), args (map)]; "
            "signed by the device's transport key",
            "response_body": "[request nonce (bin 16), time_ms (uint), result (map)]; signed by the relay key the "
            "invite pinned",
            "max_request_skew_ms": envelope.MAX_REQUEST_SKEW_MS,
            "values": "args and result in typed JSON: bytes {'hex': ...}, maps with non-string keys "
            "{'map': [[key, value], ...]}; map order is the order of body_msgpack",
        },
        "relay": {"seed": RELAY_SEED.hex(), "public": RELAY.public.hex()},
        "transport_keys": [
            {"device": n, "device_id": DEVICES[n].device_id.hex(), "seed": TRANSPORT_SEEDS[n].hex(),
             "public": TRANSPORT[n].public.hex()} for n in DEVICES
        ],  # fmt: skip
        "requests": requests,
        "responses": responses,
        "freshness": freshness,
        "invalid": invalid,
        "relay_order": relay_order,
    }


def _relay_order_vectors(d1: bytes, nonce: bytes) -> list[dict[str, Any]]:
    """Requests as the relay reads them (PROTOCOL.md §12 "Bounded before trusted"): d1 is enrolled.

    Each names the first check that fails when the signature is verified before the args are
    decoded, and the args by their spec: a junk signature wins over malformed args; a
    wrong type or an over-long value is refused from its header; unknown args are dropped.
    """
    from hbw_sync.server import relay

    S = envelope.MAX_REQUEST_SKEW_MS

    def raw(device: bytes, action: str, args: bytes, t: int = T0, sig: bytes = bytes(64)) -> bytes:
        return envelope.MAGIC + b"Q\x01" + b"\x95" + packb(device) + packb(t) + packb(nonce) + packb(action) + args + sig

    def signed(device: bytes, action: str, args: Any) -> bytes:
        return _envelope(b"Q", [device, T0, nonce, action, args], TRANSPORT["d1"])

    enroll_keys = {"author_pub": bytes(32), "transport_pub": bytes(32), "x25519_pub": bytes(32)}
    PE, IE, AE, LE = "ProtocolError", "IntegrityError", "AccessError", "LimitError"
    cases = [
        ("junk_signature_before_bad_args", "Args that are not msgpack (0xc1) under a junk signature.",
         raw(d1, "sync", b"\xc1"), IE, "integrity.signature"),
        ("unknown_device_before_bad_args", "A device id nobody enrolled, args not msgpack.",
         raw(bytes(8), "sync", b"\xc1"), AE, "access.unknown_device"),
        ("stale_before_signature", "A junk signature on a request 1 ms outside the skew window.",
         raw(d1, "sync", b"\x80", t=T0 - S - 1), AE, "access.clock"),
        ("unknown_action", "Action 'launch'.", raw(d1, "launch", b"\x80"), PE, "protocol.action"),
        ("enroll_token_as_int", "enroll with token = 4e9 (the relay once allocated that many bytes).",
         signed(d1, "enroll", {"token": 4_000_000_000, **enroll_keys}), PE, "protocol.schema"),
        ("enroll_over_body_limit", "enroll of more than 16 KiB (a 20,000-character label).",
         signed(d1, "enroll", {"token": bytes(16), **enroll_keys, "label": "x" * 20_000}), LE, "protocol.limit"),
        ("enroll_token_over_limit", "enroll with a 65-byte token.",
         signed(d1, "enroll", {"token": bytes(65), **enroll_keys}), LE, "protocol.limit"),
        ("sync_cursor_as_text", "cursor = '0', validly signed.", signed(d1, "sync", {"cursor": "0"}),
         PE, "protocol.schema"),
        ("sync_grant_device_7_bytes", "A grant for a 7-byte device id, validly signed.",
         signed(d1, "sync", {"grants": [[bytes(7), 1, b"g"]]}), PE, "protocol.schema"),
        ("download_over_body_limit", "A download request of more than 4 KiB.",
         signed(d1, "download", {"rseq": 1, "pad": bytes(5000)}), LE, "protocol.limit"),
        ("sync_unknown_args_dropped", "An unknown arg beside cursor: accepted, dropped.",
         signed(d1, "sync", {"cursor": 7, "x-future": [[1, 2], {"a": b"b"}]}), None, None),
    ]  # fmt: skip
    out = []
    for name, desc, data, cls, code in cases:
        v: dict[str, Any] = {"name": name, "description": desc, "envelope": data.hex(), "now_ms": T0,
                             "enrolled": {d1.hex(): TRANSPORT["d1"].public.hex()}}
        try:
            req = relay.open_request(data, T0, {d1: TRANSPORT["d1"].public}.get)
        except HbwError as e:
            assert (type(e).__name__, e.code) == (cls, code), (name, e)
            v.update(expected_error_class=cls, expected_code=code)
        else:
            assert cls is None, f"{name} passes"
            v.update(expected_error_class=None, expected_code=None, expected_arg_names=sorted(req.args))
        out.append(v)
    return out


# -- snapshots -----------------------------------------------------------------------------------

SNAP_LEVEL = 9


def snapshot_vectors() -> dict[str, Any]:
    ids = {n: DEVICES[n].device_id for n in DEVICES}
    P = hlc.pack
    extra = [  # a task whose first op is overwritten field by field: a snapshot leaves it out
        ("d1", T0 + 3000, make_op(Kind.TASK, E_TASK2, P(T0 + 2000, 0), None, priority=1, due=20_390, title="Draft")),
        ("d2", T0 + 5 * MIN, make_op(Kind.TASK, E_TASK2, P(T0 + 4 * MIN, 0), op_id("d1", P(T0 + 2000, 0)),
                                     priority=2, due=20_391, title="Scan the paper files")),
    ]  # fmt: skip
    history = [(dev, rec, canonical(op)) for dev, rec, op in merge_items() + extra if rec is not None]
    by_entity: dict[tuple[int, bytes], list[tuple[bytes, int, Op]]] = {}
    for dev, rec, op in history:
        by_entity.setdefault((op.kind, op.entity), []).append((ids[dev], rec, op))
    names = {v: k for k, v in ids.items()}
    chosen = [(d, r, o) for key in sorted(by_entity) for d, r, o in snapshot.contributing(by_entity[key])]
    assert len(chosen) < len(history), "the scenario must leave some op out"
    snap_ops = tuple(snapshot.SnapOp(d, r, o) for d, r, o in chosen)
    author, key, cursor = DEVICES["d2"], TEAM_KEYS["t1"], 1042
    # the last seq of each device's batches at or below the cursor, as the relay would count them
    coverage = {ids["d1"]: 17, ids["d2"]: 9, ids["d3"]: 4}
    cover = b"".join(snapshot.COVER.pack(d, s) for d, s in sorted(coverage.items()))
    rows = [[s.device, s.received_ms, routing_row(s.op), dict(s.op.content or {})] for s in snap_ops]
    plain = codec.pack(rows)
    plain_z = codec.compress(plain, level=SNAP_LEVEL)
    nonce = nonce_for("snapshot")
    s_len = crypto.NONCE_LEN + len(plain_z) + crypto.TAG_LEN

    def header(**kw: Any) -> bytes:
        f = {"magic": b"HBW", "type": b"S", "version": 2, "flags": 0, "team": TEAM_ID, "device": author.device_id,
             "cursor": cursor, "epoch": key.epoch, "n": len(coverage), "s_len": s_len} | kw
        return snapshot.HEADER.pack(*f.values())

    hdr = header()
    sealed = crypto.seal(key.subkey(b"snapshot"), plain_z, hdr + cover, nonce=nonce)
    signature = author.sign(hdr + cover + sealed)
    data = hdr + cover + sealed + signature
    got = snapshot.decode(data, author.public, {key.epoch: key}, TEAM_ID)
    assert got.ops == snap_ops and (got.cursor, got.epoch, got.device) == (cursor, key.epoch, author.device_id)
    assert got.coverage == coverage
    # snapshot.encode (random nonce) must agree with this assembly on everything but the nonce
    real = snapshot.encode(snapshot.Snapshot(TEAM_ID, author.device_id, cursor, key.epoch, snap_ops, coverage),
                           author, key)
    at = snapshot.HEADER.size + len(cover)
    assert real[:at] == hdr + cover and len(real) == len(data)
    assert crypto.open_sealed(key.subkey(b"snapshot"), real[at:-64], hdr + cover) == plain_z
    # folding the snapshot gives the state of folding the whole history
    full = merge.fold([(op, merge.stamp_for(op, ids[dev], rec)) for dev, rec, op in history])
    part = merge.fold([(s.op, merge.stamp_for(s.op, s.device, s.received_ms)) for s in snap_ops])
    assert {k: (v.values(), v.head) for k, v in full.items()} == {k: (v.values(), v.head) for k, v in part.items()}

    def dec(keys: tuple[str, ...] = ("t1",), device: str = "d2", team: bytes = TEAM_ID) -> dict[str, Any]:
        return decode_args(device=device, keys=keys, team=team)

    def flip(b: bytes, i: int) -> bytes:
        return b[:i] + bytes([b[i] ^ 0x01]) + b[i + 1 :]

    def resigned(h: bytes, c: bytes = cover, body: bytes | None = None) -> bytes:
        body = sealed if body is None else body
        return h + c + body + author.sign(h + c + body)

    def resealed(c: dict[bytes, int], ops: tuple[snapshot.SnapOp, ...] = snap_ops) -> bytes:
        """A validly sealed and signed snapshot with another coverage (and ops)."""
        rows_ = [[s.device, s.received_ms, routing_row(s.op), dict(s.op.content or {})] for s in ops]
        z = codec.compress(codec.pack(rows_), level=SNAP_LEVEL)
        cb = b"".join(snapshot.COVER.pack(d, s) for d, s in sorted(c.items()))
        h = header(n=len(c), s_len=crypto.NONCE_LEN + len(z) + crypto.TAG_LEN)
        body = crypto.seal(key.subkey(b"snapshot"), z, h + cb, nonce=nonce)
        return h + cb + body + author.sign(h + cb + body)

    unordered = b"".join(snapshot.COVER.pack(d, s) for d, s in sorted(coverage.items(), reverse=True))
    without_d3 = {d: s for d, s in coverage.items() if d != ids["d3"]}
    PE, IE, VE = "ProtocolError", "IntegrityError", "VersionError"
    bad = [
        ("bad_magic", "Type byte 'B' instead of 'S'.", b"HBWB" + data[4:], dec(), PE, "protocol.magic"),
        ("too_short", "Shorter than header + signature (105 bytes).", data[:105], dec(), PE, "protocol.magic"),
        ("unknown_version", "Version 3, validly signed.", resigned(header(version=3)), dec(), VE, "protocol.version"),
        ("version_1", "Version 1 (no coverage): no longer accepted, validly signed.", resigned(header(version=1)),
         dec(), VE, "protocol.version"),
        ("flags_set", "Flags 0x01, validly signed.", resigned(header(flags=1)), dec(), VE, "protocol.version"),
        ("trailing_byte", "One byte after the signature.", data + b"\x00", dec(), PE, "protocol.schema"),
        ("coverage_count_over_limit", f"N = {snapshot.MAX_COVERAGE + 1}, validly signed.",
         resigned(header(n=snapshot.MAX_COVERAGE + 1)), dec(), "LimitError", "protocol.limit"),
        ("coverage_count_wrong", "N one more than the entries present, validly signed.",
         resigned(header(n=len(coverage) + 1)), dec(), PE, "protocol.schema"),
        ("coverage_unordered", "Coverage entries in descending device order, validly signed.",
         resigned(hdr, unordered), dec(), PE, "protocol.order"),
        ("other_team", "Decoded by a member of another team.", data, dec(team=OTHER_TEAM_ID), IE, "integrity.team"),
        ("wrong_author_key", "Checked with d1's key; the header names d2.", data, dec(device="d1"), IE, "integrity.device"),
        ("flipped_cursor", "One bit of the cursor flipped.", flip(data, 29), dec(), IE, "integrity.signature"),
        ("flipped_coverage", "One bit of a covered seq flipped.", flip(data, snapshot.HEADER.size + 15), dec(), IE,
         "integrity.signature"),
        ("flipped_sealed", "One bit flipped in the sealed part.", flip(data, len(data) - 100), dec(), IE,
         "integrity.signature"),
        ("epoch_not_held", "The decoder holds only epoch 2.", data, dec(keys=("t2",)), "WrongKeyError",
         "access.wrong_key"),
        ("wrong_secret_same_epoch", "Opened with another epoch-1 secret.", data, dec(keys=("impostor",)), IE,
         "integrity.aead"),
        ("ops_of_an_uncovered_device", "Holds d3's ops but its coverage names only d1 and d2; sealed and signed.",
         resealed(without_d3), dec(), IE, "integrity.coverage"),
    ]  # fmt: skip
    invalid = []
    for name, desc, blob, d, cls, code in bad:
        keys = {k["epoch"]: crypto.TeamKey(k["epoch"], bytes.fromhex(k["secret"])) for k in d["team_keys"]}
        try:
            snapshot.decode(blob, bytes.fromhex(d["public_key"]), keys, bytes.fromhex(d["team"]))
        except HbwError as e:
            assert (type(e).__name__, e.code) == (cls, code), (name, e)
        else:
            raise AssertionError(f"snapshot {name} decodes")
        invalid.append({"name": name, "description": desc, "snapshot": blob.hex(), "decode": d,
                        "expected_error_class": cls, "expected_code": code})

    def entry(dev: bytes, rec: int, op: Op) -> dict[str, Any]:
        return {"device": names[dev], "device_id": dev.hex(), "received_ms": rec, "op": op_to_json(op)}

    return {
        "meta": zstd_meta() | {
            "level": SNAP_LEVEL,
            "layout": "header(42) = 'HBW' 'S' version(2) flags(0) team(8) device(8) cursor(u64) epoch(u32) N(u32) "
            "S(u32); coverage(16 N) = N x (device_id(8) last_seq(u64)), device ids ascending; "
            "sealed(S) = nonce || ChaCha20-Poly1305(HKDF(team secret, 'hbw-sync snapshot v1'), "
            "zstd(msgpack([[device_id, received_ms, routing_row, content_map], ...])), AAD = header || coverage); "
            "signature(64) by the author key over header || coverage || sealed",
            "selection": "per entity, the ops that hold an LWW register, every APPEND value, every op in the "
            "history of a POLICY field, and the head",
        },
        "history": [entry(ids[dev], rec, op) for dev, rec, op in history],
        "snapshot": {
            "inputs": {"team": TEAM_ID.hex(), "device": "d2", "device_id": author.device_id.hex(), "cursor": cursor,
                       "epoch": key.epoch, "nonce": nonce.hex(), "level": SNAP_LEVEL,
                       "coverage": [{"device": names[d], "device_id": d.hex(), "last_seq": s}
                                    for d, s in sorted(coverage.items())]},
            "ops": [entry(s.device, s.received_ms, s.op) for s in snap_ops],
            "plain_msgpack": plain.hex(),
            "plain_zstd": plain_z.hex(),
            "header": hdr.hex(),
            "coverage": cover.hex(),
            "sealed": sealed.hex(),
            "signature": signature.hex(),
            "snapshot": data.hex(),
            "decode": dec(),
        },  # fmt: skip
        "invalid": invalid,
    }


# -- bundles (email, USB) -------------------------------------------------------------------------

BUNDLE_EPHEMERAL = {"request": b"\x71" * 32, "reply": b"\x72" * 32, "inner": b"\x73" * 32}
BUNDLE_INFO = b"hbw-sync bundle v1"
BUNDLE_TEAM_NAME = "Registry office"


def build_bundle(kind: bytes, recipient: bytes, recipient_x25519: bytes, env: bytes, *, ephemeral: bytes, name: str,
                 team: bytes = TEAM_ID, version: int = BU.VERSION, flags: int = 0,
                 eph_pub: bytes | None = None) -> dict[str, Any]:
    """A bundle assembled step by step as the spec describes (fixed ephemeral key and nonce)."""
    eph_pub = eph_pub or enroll.x25519_public(ephemeral)
    shared = x25519(ephemeral, recipient_x25519)
    salt = eph_pub + recipient_x25519
    key = crypto.hkdf(shared, BUNDLE_INFO, salt=salt)
    header = b"HBW" + kind + bytes([version, flags]) + team + recipient + eph_pub
    assert len(header) == BU.HEADER.size == 54
    nonce = nonce_for("bundle " + name)
    sealed = crypto.seal(key, env, header, nonce=nonce)
    return {"ephemeral_public": eph_pub, "shared": shared, "salt": salt, "key": key, "header": header,
            "nonce": nonce, "sealed": sealed, "bundle": header + sealed}


def bundle_vectors() -> dict[str, Any]:
    dev = "d2"
    d2 = DEVICES[dev].device_id
    relay_id = RELAY.device_id
    assert BU.relay_x25519(RELAY) == RELAY_X25519_PRIVATE
    t1 = TEAM_KEYS["t1"]

    # the request: an ordinary signed sync request with the 'bundle' counter, sealed to the relay
    args = {"cursor": 1041, "budget": 5_000_000, "batches": [], "roster_v": 4, "bundle": 7}
    req_nonce = nonce_for("bundle request envelope") + nonce_for("bundle request envelope 2")[:4]
    req_env, n = envelope.make_request(TRANSPORT[dev], d2, "sync", args, T0, nonce=req_nonce)
    assert n == req_nonce
    req = build_bundle(BU.TO_RELAY, relay_id, RELAY_X25519_PUBLIC, req_env, ephemeral=BUNDLE_EPHEMERAL["request"],
                       name="request")
    made = BU.seal(BU.TO_RELAY, TEAM_ID, relay_id, RELAY_X25519_PUBLIC, req_env,
                   ephemeral=BUNDLE_EPHEMERAL["request"], nonce=req["nonce"])
    assert made == req["bundle"]
    assert BU.open_bundle(made, BU.TO_RELAY, TEAM_ID, relay_id, RELAY_X25519_PRIVATE) == req_env

    # the reply: the relay's signed response to that request, sealed to the device's X25519 key
    result = {"acks": [], "rejects": [], "batches": [], "cursor": 1041, "more": False, "keys": {1: t1.key_id},
              "grants": [], "want_snapshot": False}
    rep_time = T0 + 3 * DAY  # ingested three days later (freshness does not apply to bundles)
    rep_env = envelope.make_response(RELAY, req_nonce, result, rep_time)
    rep = build_bundle(BU.TO_DEVICE, d2, X25519_PUBLIC[dev], rep_env, ephemeral=BUNDLE_EPHEMERAL["reply"], name="reply")
    made = BU.seal(BU.TO_DEVICE, TEAM_ID, d2, X25519_PUBLIC[dev], rep_env, ephemeral=BUNDLE_EPHEMERAL["reply"],
                   nonce=rep["nonce"])
    assert made == rep["bundle"]
    assert envelope.parse_response(BU.open_bundle(made, BU.TO_DEVICE, TEAM_ID, d2, X25519_PRIVATE[dev]),
                                   RELAY.public, req_nonce).result == result

    def at_relay() -> dict[str, Any]:
        return {"kind": "X", "team": TEAM_ID.hex(), "recipient": relay_id.hex(), "x25519_private": RELAY_X25519_PRIVATE.hex()}

    def at_device(name: str = dev, x: str | None = None, team: bytes = TEAM_ID) -> dict[str, Any]:
        return {"kind": "Y", "team": team.hex(), "recipient": DEVICES[name].device_id.hex(),
                "x25519_private": X25519_PRIVATE[x or name].hex()}

    def flip(data: bytes, i: int) -> bytes:
        return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]

    good_q, good_r = req["bundle"], rep["bundle"]
    other_team_hdr = good_q[:6] + OTHER_TEAM_ID + good_q[14:]
    PE, IE, VE = "ProtocolError", "IntegrityError", "VersionError"
    bad = [
        ("empty", "Zero bytes.", b"", at_relay()),
        ("not_a_bundle", "A zip file's first bytes.", b"PK\x03\x04 a zip file", at_relay()),
        ("a_batch", "A batch header ('HBWB'): an hbw-sync message, but not a bundle.", b"HBWB\x01" + bytes(80), at_relay()),
        ("unknown_type", "Type byte 'Z'.", good_q[:3] + b"Z" + good_q[4:], at_relay()),
        ("truncated", "81 bytes: one short of header (54) + nonce (12) + tag (16).", good_q[:81], at_relay()),
        ("cut_short_by_one", "The last byte is missing: long enough to parse, so the tag fails.", good_q[:-1],
         at_relay()),
        ("unknown_version", "Version byte 2.", good_q[:4] + b"\x02" + good_q[5:], at_relay()),
        ("flags_set", "Flags 0x01.", good_q[:5] + b"\x01" + good_q[6:], at_relay()),
        ("wrong_type", "The request bundle given to a device that expects a reply ('X' where 'Y' is expected).",
         good_q, {"kind": "Y", "team": TEAM_ID.hex(), "recipient": relay_id.hex(),
                  "x25519_private": RELAY_X25519_PRIVATE.hex()}),
        ("reply_given_to_relay", "The reply bundle given to the relay.", good_r, at_relay()),
        ("foreign_team", "Opened by the relay of another team.", good_q,
         {**at_relay(), "team": OTHER_TEAM_ID.hex()}),
        ("wrong_recipient", "d2's reply opened by d3.", good_r, at_device("d3")),
        ("wrong_x25519_key", "d2's reply opened with d2's device id but d3's X25519 key.", good_r,
         at_device(dev, x="d3")),
        ("tampered_ciphertext", "One bit flipped in the ciphertext.", flip(good_q, len(good_q) - 40), at_relay()),
        ("tampered_tag", "One bit flipped in the last byte (the tag).", flip(good_q, len(good_q) - 1), at_relay()),
        ("tampered_nonce", "One bit flipped in the nonce.", flip(good_q, 54), at_relay()),
        ("tampered_ephemeral", "One bit flipped in the header's ephemeral public key.", flip(good_q, 40), at_relay()),
        ("header_team_rewritten", "The team id rewritten to another team's, opened as that team: the AAD "
         "(the header) no longer matches.", other_team_hdr, {**at_relay(), "team": OTHER_TEAM_ID.hex()}),
        ("ephemeral_low_order", "Ephemeral public key all zeros (a low-order point: the shared secret would be 0).",
         good_q[:22] + bytes(32) + good_q[54:], at_relay()),
    ]  # fmt: skip
    invalid = []
    for name, desc, data, op in bad:
        cls, code = expected_error(f"bundle {name}", lambda: BU.open_bundle(
            data, op["kind"].encode(), bytes.fromhex(op["team"]), bytes.fromhex(op["recipient"]),
            bytes.fromhex(op["x25519_private"])))
        invalid.append({"name": name, "description": desc, "bundle": data.hex(), "open": op,
                        "expected_error_class": cls, "expected_code": code})

    # validly sealed to the relay, but the envelope inside is not a bundle request (relay stage 'inner')
    inner_in = [
        ("no_counter", "A sync request without the 'bundle' counter (an online request sealed into a bundle).", dev,
         "sync", {k: v for k, v in args.items() if k != "bundle"}),
        ("counter_not_int", "'bundle' is true, not an integer.", dev, "sync", {**args, "bundle": True}),
        ("not_sync", "A download request with a counter: only 'sync' travels in bundles.", dev, "download",
         {"rseq": 1040, "bundle": 8}),
        ("unknown_device", "A well-formed bundle request from d3, which the relay (an empty team) does not know.",
         "d3", "sync", {**args, "bundle": 1}),
    ]  # fmt: skip
    inner = []
    for name, desc, who, action, a in inner_in:
        env, _ = envelope.make_request(TRANSPORT[who], DEVICES[who].device_id, action, a, T0,
                                       nonce=nonce_for("bundle inner " + name) + bytes(4))
        b = build_bundle(BU.TO_RELAY, relay_id, RELAY_X25519_PUBLIC, env, ephemeral=BUNDLE_EPHEMERAL["inner"],
                         name="inner " + name)["bundle"]
        cls, code = ("AccessError", "access.unknown_device") if name == "unknown_device" else (PE, "protocol.bundle")
        inner.append({"name": name, "description": desc, "bundle": b.hex(), "envelope": env.hex(),
                      "expected_error_class": cls, "expected_code": code})

    def stages(b: dict[str, Any]) -> dict[str, str]:
        return {k: v.hex() for k, v in b.items()}

    return {
        "meta": {
            "layout": "header(54) = 'HBW' || type ('X' to the relay, 'Y' to a device) || version (1) || flags (0) || "
            "team (8) || recipient device id (8) || ephemeral X25519 public (32); bundle = header || nonce (12) || "
            "ChaCha20-Poly1305(key, nonce, envelope, AAD = header)",
            "key": "HKDF-SHA256(ikm = X25519(ephemeral, recipient X25519), salt = ephemeral_public || "
            "recipient_x25519_public, info = 'hbw-sync bundle v1', L = 32)",
            "relay_x25519": "relay X25519 private = HKDF-SHA256(ikm = relay Ed25519 seed, salt = none, "
            "info = 'hbw-sync relay x25519 v1', L = 32); recipient of 'X' bundles = device id of the relay's "
            "Ed25519 public key",
            "envelope": "'X': a sync request envelope (envelopes.json) signed by the device's transport key, "
            "args with 'bundle' (uint counter); 'Y': the relay's signed response to it",
            "max_bundle": BU.MAX_BUNDLE,
        },
        "relay": {"seed": RELAY_SEED.hex(), "public": RELAY.public.hex(), "device_id": relay_id.hex(),
                  "x25519_private": RELAY_X25519_PRIVATE.hex(), "x25519_public": RELAY_X25519_PUBLIC.hex()},
        "device": {"name": dev, "device_id": d2.hex(), "transport_seed": TRANSPORT_SEEDS[dev].hex(),
                   "transport_public": TRANSPORT[dev].public.hex(), "x25519_private": X25519_PRIVATE[dev].hex(),
                   "x25519_public": X25519_PUBLIC[dev].hex()},
        "team": TEAM_ID.hex(),
        "team_name": BUNDLE_TEAM_NAME,
        "request": {
            "description": f"{dev} exports bundle 7: its pull cursor, a 5 MB reply budget, roster version 4, no "
            "batches (their bytes depend on zstd).",
            "kind": "X", "recipient": relay_id.hex(), "recipient_x25519_public": RELAY_X25519_PUBLIC.hex(),
            "ephemeral_private": BUNDLE_EPHEMERAL["request"].hex(),
            "envelope_args": tjson(args), "envelope_time_ms": T0, "envelope_nonce": req_nonce.hex(),
            "envelope": req_env.hex(), **stages(req),
        },  # fmt: skip
        "reply": {
            "description": "The relay's reply to bundle 7, ingested three days later: nothing new for d2.",
            "kind": "Y", "recipient": d2.hex(), "recipient_x25519_public": X25519_PUBLIC[dev].hex(),
            "ephemeral_private": BUNDLE_EPHEMERAL["reply"].hex(),
            "envelope_result": tjson(result), "envelope_time_ms": rep_time, "envelope": rep_env.hex(), **stages(rep),
        },  # fmt: skip
        "invalid": invalid,
        "invalid_inner": inner,
    }


# -- admission (approval.json, PROTOCOL.md §14b) ---------------------------------------------


def approval_vectors() -> dict[str, Any]:
    """Proofs, welcomes and approval records from fixed keys, secrets and nonces; and what must fail."""
    from hbw_sync import approval as AP

    sup, dev = DEVICES["d1"], DEVICES["d2"]
    t_pub, x_pub = TRANSPORT["d2"].public, X25519_PUBLIC["d2"]
    code = "31415926535897932384"
    secret = bytes(range(0x60, 0x70))  # a team invite's secret
    keys = [TEAM_KEYS["t1"], TEAM_KEYS["t2"]]
    eph = b"\x61" * 32
    eph_pub = enroll.x25519_public(eph)
    shared = X25519PrivateKey.from_private_bytes(eph).exchange(X25519PublicKey.from_public_bytes(x_pub))
    code_key = AP.code_welcome_key(code, dev.public, shared, eph_pub, x_pub)
    inv_key = AP.invite_welcome_key(secret)
    w_code = AP.seal_code_welcome(code, dev.public, x_pub, sup, keys, TEAM_ID, eph, nonce_for("welcome code"))
    x_priv = X25519_PRIVATE["d2"]
    w_inv = AP.make_welcome(inv_key, sup, keys, TEAM_ID, nonce_for("welcome invite"))
    record = AP.make_approval(sup, dev.public, x_pub, "amina", "member", T0)
    invite = enroll.Invite("https://relay.example:8765", RELAY.public, TEAM_ID, b"\x77" * 16, "amina", "member",
                           None, secret)

    def flipped(b: bytes, i: int) -> bytes:
        out = bytearray(b)
        out[i] ^= 1
        return bytes(out)

    invalid = []
    d3x = X25519_PRIVATE["d3"]
    # each with the context to open or verify it in (``open``), so a second implementation needs no guessing
    for name, what, ctx, data in [
        ("welcome-flipped-tag", "welcome", (code, x_priv, TEAM_ID), flipped(w_code, -1)),
        ("welcome-other-team", "welcome", (code, x_priv, OTHER_TEAM_ID), w_code),
        ("welcome-other-code", "welcome", ("27182818284590452353", x_priv, TEAM_ID), w_code),
        ("welcome-other-device-key", "welcome", (code, d3x, TEAM_ID), w_code),
        ("welcome-truncated", "welcome", (code, x_priv, TEAM_ID), w_code[:20]),
        ("approval-flipped-signature", "approval", sup.public, flipped(record, -1)),
        ("approval-other-approver", "approval", DEVICES["d3"].public, record),
        ("approval-truncated", "approval", sup.public, record[:40]),
    ]:
        if what == "welcome":
            c, xp, tm = ctx  # type: ignore[misc]
            fn = (lambda d, c=c, xp=xp, tm=tm: AP.open_code_welcome(c, dev.public, xp, d, tm))
            op = {"code": c, "author_public": dev.public.hex(), "x25519_private": xp.hex(), "team": tm.hex()}
        else:
            fn = (lambda d, k=ctx: AP.verify_approval(d, k))
            op = {"approver_public": ctx.hex()}  # type: ignore[union-attr]
        cls, err = expected_error(name, lambda: fn(data))
        invalid.append({"name": name, "kind": what, "data": data.hex(), "open": op, "expected_error": cls,
                        "expected_code": err})
    # The messages that carry them: an enroll request with a code proof, and a supervisor's invite request.
    enroll_args = {"token": b"\x77" * 16, "author_pub": dev.public, "transport_pub": t_pub, "x25519_pub": x_pub,
                   "label": "desk-2", "proof": AP.make_proof(code.encode(), dev.public, t_pub, x_pub)}
    enroll_env, _ = envelope.make_request(TRANSPORT["d2"], dev.device_id, "enroll", enroll_args, T0,
                                          nonce_for("enroll request")[:envelope.NONCE_LEN] + b"\x00" * 4)
    invite_args = {"token_hash": enroll.token_hash(invite.token), "member": "amina", "role": "member",
                   "ttl_days": 14, "welcome": w_inv, "epochs": [1, 2]}
    invite_env, _ = envelope.make_request(TRANSPORT["d1"], sup.device_id, "invite", invite_args, T0,
                                          nonce_for("invite request")[:envelope.NONCE_LEN] + b"\x00" * 4)
    messages = {
        "enroll_request": {"transport_seed": TRANSPORT_SEEDS["d2"].hex(), "time_ms": T0,
                           "args": tjson(enroll_args), "envelope": enroll_env.hex()},
        "invite_request": {"transport_seed": TRANSPORT_SEEDS["d1"].hex(), "time_ms": T0,
                           "args": tjson(invite_args), "envelope": invite_env.hex()},
    }
    return {
        "messages": messages,
        "description": "Admission (PROTOCOL.md §14b): the enrollment proof, welcomes sealed under an approval "
                       "code (and the device's X25519 key) or a team invite's secret, and a supervisor's approval record. Device d2 joins; "
                       "supervisor d1 admits it. Nonces are fixed here only.",
        "scrypt": {"n": AP.SCRYPT_N, "r": AP.SCRYPT_R, "p": AP.SCRYPT_P},
        "device": {"author_public": dev.public.hex(), "transport_public": t_pub.hex(), "x25519_public": x_pub.hex(),
                   "device_id": dev.device_id.hex()},
        "supervisor": {"seed": DEVICE_SEEDS["d1"].hex(), "author_public": sup.public.hex(),
                       "device_id": sup.device_id.hex()},
        "team": TEAM_ID.hex(),
        "team_keys": [{"epoch": k.epoch, "secret": k.secret.hex()} for k in keys],
        "code": {"digits": code, "shown": AP.format_code(code),
                 "stretched": AP.stretch(code.encode(), dev.public).hex(),
                 "proof": AP.make_proof(code.encode(), dev.public, t_pub, x_pub).hex(),
                 "device_x25519_private": x_priv.hex(), "ephemeral_private": eph.hex(),
                 "ephemeral_public": eph_pub.hex(), "shared": shared.hex(),
                 "welcome_key": code_key.hex(), "welcome_nonce": nonce_for("welcome code").hex(),
                 "welcome": w_code.hex()},
        "invite": {"secret": secret.hex(), "text": invite.encode(),
                   "proof": AP.make_proof(secret, dev.public, t_pub, x_pub).hex(),
                   "welcome_key": inv_key.hex(), "welcome_nonce": nonce_for("welcome invite").hex(),
                   "welcome": w_inv.hex()},
        "approval": {"member": "amina", "role": "member", "time_ms": T0, "record": record.hex()},
        "invalid": invalid,
    }


# -- output -------------------------------------------------------------------------------

FILES = {
    "keys.json": keys_vectors,
    "hlc.json": hlc_vectors,
    "batches.json": batch_vectors,
    "invalid.json": invalid_vectors,
    "merge.json": merge_vectors,
    "envelopes.json": envelope_vectors,
    "enroll.json": enroll_vectors,
    "snapshot.json": snapshot_vectors,
    "bundles.json": bundle_vectors,
    "approval.json": approval_vectors,
    "delta.json": delta_vectors.build,
    "chunks.json": chunk_vectors.build,
    "chunk_delta.json": chunk_delta_vectors.build,
    "evidence.json": evidence_vectors.build,
    "zstd.json": zstd_vectors.build,
    "policy.json": policy_vectors.build,
    "sync.json": sync_vectors.build,
}
ZSTD_DEPENDENT = ("batches.json", "invalid.json", "snapshot.json", "delta.json", "chunks.json", "evidence.json",
                  "sync.json", "chunk_delta.json")


def render(obj: Any) -> str:
    return json.dumps(obj, indent=1, ensure_ascii=False) + "\n"


def generate(out_dir: Path | str = DEFAULT_OUT) -> list[Path]:
    """Write every vector file into ``out_dir`` and return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, build in FILES.items():
        path = out / name
        path.write_text(render(build()), encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    for path in generate(args[0] if args else DEFAULT_OUT):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
