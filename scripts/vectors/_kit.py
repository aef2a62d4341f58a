"""What every hand-built vector family shares: fixed keys, the vectors' JSON forms, hand assembly.

Every input is fixed: device keys come from fixed seeds, team keys from fixed secrets, AEAD
nonces are derived from the vector's name (``nonce_for``). ``assemble`` builds batches that are
bad *behind* the signature (schema, order, bombs, dictionaries...) and signs them properly, so a
decoder reaches the stage a vector is about. ``zstd_meta`` records the zstd release whose output
the zstd-dependent files hold.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack
import zstandard

from hbw_sync import batch as B
from hbw_sync import codec, crypto
from hbw_sync.errors import HbwError
from hbw_sync.ops import FIELDS, Kind, NAMES, Op, make_op


def expected_error(what: str, fn) -> tuple[str, str]:
    """Run ``fn``, which must fail with one of our errors: its (class name, code) for the vector."""
    try:
        fn()
    except HbwError as e:
        return type(e).__name__, e.code
    raise AssertionError(f"{what} was accepted, but the vector says it must fail")


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


def zstd_meta() -> dict[str, Any]:
    return {
        "zstandard_version": zstandard.__version__,
        "zstd_version": ".".join(map(str, zstandard.ZSTD_VERSION)),
        "level": LEVEL,
        "note": "zstd-compressed bytes (header lengths, routing, content_zstd, sealed, signature, batch) "
        "are reproducible only with this zstd version; decoding them is not version-dependent",
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
