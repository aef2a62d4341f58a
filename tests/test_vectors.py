"""The implementation against the protocol test vectors in ``protocol/vectors/``.

The vectors are the contract a second implementation is checked against, so
these tests check this one the same way: decode the stored bytes and compare
with the stored expectations (version-independent), check every stage of the
encoding that does not depend on zstd byte for byte (msgpack, AEAD, Ed25519),
and compare whole encodings only when the installed zstd is the one that made
them. They also check that ``scripts/make_vectors.py`` reproduces the committed
files and that ``protocol/PROTOCOL.md`` states the field registry the code has.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import zstandard

from hbw_sync import batch, codec, crypto, hlc, merge
from hbw_sync.errors import HbwError
from hbw_sync.ops import FIELDS, Kind, Merge, Op, routing_row

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "protocol" / "vectors"
SPEC = ROOT / "protocol" / "PROTOCOL.md"


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_vectors", ROOT / "scripts" / "make_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


def load(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


KEYS = load("keys.json")
HLC = load("hlc.json")
BATCHES = load("batches.json")
INVALID = load("invalid.json")
MERGE = load("merge.json")

SAME_ZSTD = BATCHES["meta"]["zstandard_version"] == zstandard.__version__
ZSTD_SKIP = (
    f"vectors were compressed by zstandard {BATCHES['meta']['zstandard_version']}, "
    f"this is {zstandard.__version__}: zstd output bytes may differ (decoding is still checked)"
)

# Vectors whose expectation is the spec but not (yet) the reference implementation's
# behaviour. Strict: when the core is fixed, the XPASS fails and the entry must go.
KNOWN_CORE_BUGS: dict[str, str] = {}  # vector name -> reason, for a core bug not fixed yet


def decode_inputs(dec: dict[str, Any]) -> tuple[bytes, dict[int, crypto.TeamKey], codec.Limits, bytes]:
    keys = {k["epoch"]: crypto.TeamKey(k["epoch"], bytes.fromhex(k["secret"])) for k in dec["team_keys"]}
    return bytes.fromhex(dec["public_key"]), keys, codec.Limits(**dec.get("limits", {})), bytes.fromhex(dec["team"])


def by_name(items: list[dict[str, Any]]) -> list[Any]:
    return [pytest.param(v, id=v["name"]) for v in items]


# -- keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dev", KEYS["devices"], ids=lambda d: d["name"])
def test_device_keys(dev):
    key = crypto.DeviceKey(bytes.fromhex(dev["seed"]))
    assert key.public.hex() == dev["public_key"]
    assert key.device_id.hex() == dev["device_id"]
    assert hashlib.sha256(b"hbw-sync device id v1\x00" + key.public).digest()[:8].hex() == dev["device_id"]


@pytest.mark.parametrize("tk", KEYS["team_keys"], ids=lambda k: k["name"])
def test_team_keys(tk):
    key = crypto.TeamKey(tk["epoch"], bytes.fromhex(tk["secret"]))
    assert key.key_id.hex() == tk["key_id"]
    assert key.subkey(batch.CONTENT_PURPOSE).hex() == tk["content_key"]
    assert crypto.hkdf(key.secret, b"hbw-sync batch content v1").hex() == tk["content_key"]


# -- hlc ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", HLC["cases"], ids=lambda c: f"{c['fn']}-{c['note']}")
def test_hlc(case):
    fn = getattr(hlc, case["fn"])
    if case["expected"] == "ValueError":
        with pytest.raises(ValueError):
            fn(**case["args"])
        return
    got = fn(**case["args"])
    assert (list(got) if isinstance(got, tuple) else got) == case["expected"]


def test_hlc_vectors_cover_every_function():
    assert {c["fn"] for c in HLC["cases"]} == {"pack", "unpack", "tick", "skew_bound", "observe", "effective"}
    assert HLC["meta"]["default_max_skew_ms"] == hlc.DEFAULT_MAX_SKEW_MS


# -- valid batches ------------------------------------------------------------------------


def expected_ops(v: dict[str, Any]) -> list[Op]:
    return [gen.op_from_json(o) for o in v["inputs"]["ops"]]


@pytest.mark.parametrize("v", by_name(BATCHES["batches"]))
def test_valid_batch_decodes(v):
    public, keys, limits, team = decode_inputs(v["decode"])
    got = batch.decode_batch(bytes.fromhex(v["batch"]), public, keys, limits, team=team)
    inp = v["inputs"]
    assert (got.team.hex(), got.device.hex(), got.seq, got.epoch) == (inp["team"], inp["device_id"], inp["seq"], inp["epoch"])
    want = expected_ops(v)
    assert list(got.ops) == want
    for g, w in zip(got.ops, want):  # Op equality ignores nothing, but say what differs
        assert (g.kind, g.entity, g.hlc, g.base, g.named()) == (w.kind, w.entity, w.hlc, w.base, w.named())


@pytest.mark.parametrize("v", by_name(BATCHES["batches"]))
def test_valid_batch_relay_view(v):
    """What the relay decodes without the team key: routing fields only, content None."""
    public, _, limits, _ = decode_inputs(v["decode"])
    frame = batch.parse_batch(bytes.fromhex(v["batch"]), limits)
    frame.verify(public)
    ops = frame.routing_ops(limits)
    assert [(o.kind, o.entity, o.hlc, o.base, dict(o.fields)) for o in ops] == [
        (w.kind, w.entity, w.hlc, w.base, dict(w.fields)) for w in expected_ops(v)
    ]
    assert all(o.content is None for o in ops)


@pytest.mark.parametrize("v", by_name(BATCHES["batches"]))
def test_valid_batch_stages(v):
    """Each encoding stage that does not depend on zstd, byte for byte."""
    inp = v["inputs"]
    data = bytes.fromhex(v["batch"])
    ops = expected_ops(v)
    secret = next(k for k in v["decode"]["team_keys"] if k["epoch"] == inp["epoch"])["secret"]
    team_key = crypto.TeamKey(inp["epoch"], bytes.fromhex(secret))
    seed = next(d for d in KEYS["devices"] if d["name"] == inp["device"])["seed"]
    device_key = crypto.DeviceKey(bytes.fromhex(seed))

    # msgpack plaintexts
    assert codec.pack([routing_row(op) for op in ops]).hex() == v["routing_plain"]
    assert codec.pack([dict(op.content or {}) for op in ops]).hex() == v["content_plain"]

    # the parts of the stored batch
    frame = batch.parse_batch(data)
    routing, sealed, signature = bytes.fromhex(v["routing"]), bytes.fromhex(v["sealed"]), bytes.fromhex(v["signature"])
    content_z = bytes.fromhex(v["content_zstd"])
    assert data == bytes.fromhex(v["header"]) + routing + sealed + signature
    assert (frame.routing, frame.sealed, frame.signature) == (routing, sealed, signature)
    assert codec.decompress(routing, cap=codec.DEFAULT_LIMITS.max_plain).hex() == v["routing_plain"]
    assert codec.decompress(content_z, cap=codec.DEFAULT_LIMITS.max_plain).hex() == v["content_plain"]

    # header, AAD, AEAD and signature are deterministic given the compressed sections
    header = batch.HEADER.pack(
        b"HBW", b"B", b"\x01", 0, bytes.fromhex(inp["team"]), device_key.device_id, inp["seq"], inp["epoch"],
        inp["dict_id"], len(routing), crypto.NONCE_LEN + len(content_z) + crypto.TAG_LEN,
    )  # fmt: skip
    assert header.hex() == v["header"]
    aad = header + routing
    assert frame.aad == aad
    nonce = bytes.fromhex(inp["nonce"])
    assert sealed[: crypto.NONCE_LEN] == nonce
    assert crypto.seal(team_key.subkey(b"batch content"), content_z, aad, nonce=nonce) == sealed
    assert crypto.open_sealed(team_key.subkey(b"batch content"), sealed, aad) == content_z
    assert device_key.sign(aad + sealed) == signature
    crypto.verify(device_key.public, signature, aad + sealed)


@pytest.mark.parametrize("v", by_name(BATCHES["batches"]))
def test_valid_batch_encodes_byte_exact(v):
    if not SAME_ZSTD:
        pytest.skip(ZSTD_SKIP)
    inp = v["inputs"]
    seed = next(d for d in KEYS["devices"] if d["name"] == inp["device"])["seed"]
    secret = next(k for k in v["decode"]["team_keys"] if k["epoch"] == inp["epoch"])["secret"]
    b = batch.Batch(bytes.fromhex(inp["team"]), bytes.fromhex(inp["device_id"]), inp["seq"], inp["epoch"], tuple(expected_ops(v)))
    got = batch.encode_batch(
        b, crypto.DeviceKey(bytes.fromhex(seed)), crypto.TeamKey(inp["epoch"], bytes.fromhex(secret)),
        dict_id=inp["dict_id"], level=inp["level"], nonce=bytes.fromhex(inp["nonce"]),
    )  # fmt: skip
    assert got.hex() == v["batch"]


def test_valid_vectors_cover_every_field_and_kind():
    seen: set[tuple[str, str]] = set()
    nulls: set[str] = set()
    for v in BATCHES["batches"]:
        for o in v["inputs"]["ops"]:
            for name, value in o["fields"].items():
                seen.add((o["kind"], name))
                if value is None:
                    nulls.add(name)
    assert seen == {(k.name.lower(), s.name) for k, specs in FIELDS.items() for s in specs.values()}
    assert nulls == {s.name for specs in FIELDS.values() for s in specs.values() if s.nullable}


# -- invalid batches ----------------------------------------------------------------------


def _invalid_params() -> list[Any]:
    out = []
    for v in INVALID["invalid"]:
        marks = [pytest.mark.xfail(reason=KNOWN_CORE_BUGS[v["name"]], strict=True)] if v["name"] in KNOWN_CORE_BUGS else []
        out.append(pytest.param(v, id=v["name"], marks=marks))
    return out


@pytest.mark.parametrize("v", _invalid_params())
def test_invalid_batch_raises_expected_error(v):
    public, keys, limits, team = decode_inputs(v["decode"])
    with pytest.raises(HbwError) as info:
        batch.decode_batch(bytes.fromhex(v["batch"]), public, keys, limits, team=team)
    assert (type(info.value).__name__, info.value.code) == (v["expected_error_class"], v["expected_code"])


LATE_STAGES = {"key", "routing", "content", "ops"}


@pytest.mark.parametrize("v", by_name([v for v in INVALID["invalid"] if v["stage"] in LATE_STAGES]))
def test_invalid_batch_is_validly_signed(v):
    """Vectors about a stage behind the signature must pass framing, team and signature checks."""
    public, _, limits, team = decode_inputs(v["decode"])
    frame = batch.parse_batch(bytes.fromhex(v["batch"]), limits)
    assert frame.team == team
    frame.verify(public)


def test_invalid_vectors_cover_every_error_code():
    codes = {v["expected_code"] for v in INVALID["invalid"]}
    assert codes >= {
        "protocol.magic", "protocol.truncated", "protocol.trailing", "protocol.version", "protocol.limit",
        "protocol.bomb", "protocol.zstd", "protocol.msgpack", "protocol.schema", "protocol.order",
        "integrity.signature", "integrity.aead", "integrity.device", "integrity.team", "access.wrong_key",
    }  # fmt: skip
    assert len({v["name"] for v in INVALID["invalid"]}) == len(INVALID["invalid"])


# -- merge --------------------------------------------------------------------------------


def _merge_items() -> list[tuple[Op, merge.Stamp]]:
    items = []
    for entry in MERGE["ops"]:
        op = gen.op_from_json(entry["op"])
        device = bytes.fromhex(MERGE["devices"][entry["device"]])
        stamp = merge.stamp_for(op, device, entry["received_ms"])
        assert (stamp.ts, stamp.op_id.hex()) == (entry["stamp"]["ts"], entry["stamp"]["op_id"])
        items.append((op, stamp))
    return items


def _state_json(states: dict) -> list[dict[str, Any]]:
    return [
        {
            "kind": k.name.lower(),
            "entity": e.hex(),
            "values": {n: ([gen.jval(x) for x in v] if isinstance(v, list) else gen.jval(v)) for n, v in st.values().items()},
            "head": {"ts": st.head.ts, "op_id": st.head.op_id.hex()},
        }
        for (k, e), st in sorted(states.items())
    ]


def test_merge_stamps_and_final_state():
    assert _state_json(merge.fold(_merge_items())) == MERGE["expected"]


def test_merge_is_order_independent_and_idempotent():
    items = _merge_items()
    for perm in itertools.permutations(items):
        assert _state_json(merge.fold(perm)) == MERGE["expected"]
    assert _state_json(merge.fold(items + items[::-1])) == MERGE["expected"]


def test_merge_vector_exercises_the_cap_and_the_tie():
    ops = MERGE["ops"]
    far = next(o for o in ops if "3 days" in str(o["op"]["fields"].get("note")))
    assert far["stamp"]["ts"] < far["op"]["hlc"], "the far-future op must be capped"
    task = next(e for e in MERGE["expected"] if e["kind"] == "task")
    assert task["values"]["assignee"] != far["op"]["fields"]["assignee"]
    ts = [o["stamp"]["ts"] for o in ops]
    assert len(ts) != len(set(ts)), "two ops must share an effective timestamp"


# -- the generator and the spec -----------------------------------------------------------


def test_generator_reproduces_committed_vectors(tmp_path):
    gen.generate(tmp_path)
    for name in gen.FILES:
        fresh = json.loads((tmp_path / name).read_text(encoding="utf-8"))
        committed = load(name)
        if name in gen.ZSTD_DEPENDENT and not SAME_ZSTD:
            if name == "batches.json":  # the zstd-independent parts still must match
                keep = ("name", "description", "decode", "inputs", "routing_plain", "content_plain")
                assert [{k: b[k] for k in keep} for b in fresh["batches"]] == [
                    {k: b[k] for k in keep} for b in committed["batches"]
                ]
            continue
        assert fresh == committed, f"{name} differs from what scripts/make_vectors.py generates"
        assert (tmp_path / name).read_bytes() == (VECTORS / name).read_bytes()
    if not SAME_ZSTD:
        pytest.skip(ZSTD_SKIP)


def _spec_registry() -> set[tuple[str, int, str, str, str, bool]]:
    rows = set()
    for line in SPEC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*(task|doc|member)\s*\|\s*(\d+)\s*\|\s*`(\w+)`\s*\|\s*(routing|content)\s*\|([^|]*)\|\s*(LWW|APPEND)\s*\|\s*(yes|no)\s*\|", line)
        if m:
            rows.add((m[1], int(m[2]), m[3], m[4], m[6], m[7] == "yes"))
    return rows


def test_spec_field_registry_matches_code():
    code = {
        (k.name.lower(), s.tag, s.name, s.section, Merge(s.merge).name, s.nullable)
        for k, specs in FIELDS.items()
        for s in specs.values()
    }
    assert _spec_registry() == code


def test_spec_names_every_error_code_the_vectors_use():
    text = SPEC.read_text(encoding="utf-8")
    for code in {v["expected_code"] for v in INVALID["invalid"]}:
        assert f"`{code}`" in text, code
    assert Kind.TASK == 1  # the spec's kind numbers
    for k in Kind:
        assert f"| {int(k)} | {k.name.lower()}" in text
