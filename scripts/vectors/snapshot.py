"""protocol/vectors/snapshot.json: a signed snapshot, its ops and coverage, invalid snapshots (PROTOCOL.md §18).
"""

from __future__ import annotations

from typing import Any

from hbw_sync import codec, crypto, hlc, merge, snapshot
from hbw_sync.errors import HbwError
from hbw_sync.ops import Kind, Op, make_op, routing_row

from ._kit import (
    DEVICES, MIN, OTHER_TEAM_ID, T0, TEAM_ID, TEAM_KEYS, decode_args, nonce_for, op_to_json, zstd_meta,
)
from .batches import E_TASK2, canonical, op_id
from .merge import merge_items

# -- snapshots -----------------------------------------------------------------------------------

SNAP_LEVEL = 9


def build() -> dict[str, Any]:
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
