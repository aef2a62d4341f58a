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

import base64
import hashlib
import importlib.util
import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import zstandard

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from hbw_sync import batch, codec, crypto, enroll, envelope, hlc, merge, snapshot
from hbw_sync import bundle as bundle_fmt
from hbw_sync.errors import EXIT_CODES, HTTP_STATUSES, HbwError
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
ENVELOPES = load("envelopes.json")
ENROLL = load("enroll.json")
SNAPSHOT = load("snapshot.json")
BUNDLES = load("bundles.json")
DELTA = load("delta.json")
CHUNK_DELTA = load("chunk_delta.json")

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


# -- document deltas (PROTOCOL.md §18c) ---------------------------------------------------


@pytest.mark.parametrize("v", DELTA["valid"], ids=lambda v: v["name"])
def test_delta_vectors_rebuild(v: dict[str, Any]) -> None:
    from hbw_sync.delta import apply_delta

    out = apply_delta(bytes.fromhex(v["base"]), bytes.fromhex(v["payload"]),
                      expected_sha256=bytes.fromhex(v["result_sha256"]), max_size=v["max_size"])  # fmt: skip
    assert len(out) == v["result_size"]
    if "result" in v:
        assert out.hex() == v["result"]


@pytest.mark.parametrize("v", DELTA["invalid"], ids=lambda v: v["name"])
def test_delta_vectors_fail_with_their_code(v: dict[str, Any]) -> None:
    from hbw_sync.delta import apply_delta

    base = bytes.fromhex(next(g["base"] for g in DELTA["valid"] if g["name"] == v["base_of"]))
    with pytest.raises(HbwError) as exc:
        apply_delta(base, bytes.fromhex(v["payload"]), expected_sha256=bytes.fromhex(v["expected_sha256"]),
                    max_size=v["max_size"])  # fmt: skip
    assert (type(exc.value).__name__, exc.value.code) == (v["expected_error"], v["expected_code"])


@pytest.mark.parametrize("v", DELTA["valid"], ids=lambda v: v["name"])
def test_delta_flips_reach_their_outcome(v: dict[str, Any]) -> None:
    """Every one-bit flip of a good payload: the outcome delta.json records (the Node runner checks it too)."""
    from hbw_sync.delta import apply_delta

    base, payload = bytes.fromhex(v["base"]), bytes.fromhex(v["payload"])
    want = bytes.fromhex(v["result_sha256"])
    marks = DELTA["flips"][v["name"]]
    assert len(marks) == len(payload) * 8
    for bit, mark in enumerate(marks):
        bad = bytearray(payload)
        bad[bit >> 3] ^= 1 << (bit & 7)
        try:
            apply_delta(base, bytes(bad), expected_sha256=want, max_size=v["max_size"])
            got = "accept"
        except HbwError as e:
            got = f"{type(e).__name__} {e.code}"
        assert got == DELTA["flip_letters"][mark], (bit, got)


def test_delta_vectors_cover_every_method_and_codec() -> None:
    from hbw_sync.delta import wire

    names = {v["name"] for v in DELTA["valid"]}
    assert {"patch", "span", "zip", "member_codec8", "member_codec9", "splice_codec9", "splice_inflated_dict",
            "zip_splice", "member_codec10", "zip_codec10"} <= names
    payloads = [bytes.fromhex(v["payload"]) for v in DELTA["valid"]]
    assert {p[0] for p in payloads} == {wire.METHOD_PATCH, wire.METHOD_RECIPE}
    codes = {v["expected_code"] for v in DELTA["invalid"]}
    assert codes >= {"protocol.trailing", "protocol.truncated", "protocol.delta", "protocol.limit",
                     "protocol.zstd", "integrity.delta"}  # fmt: skip


def test_delta_numbers_in_the_spec_match_the_code() -> None:
    from hbw_sync.client.documents import MAX_INLINE_BYTES
    from hbw_sync.delta import blocks, transcript, wire

    spec = SPEC.read_text(encoding="utf-8")
    section = spec[spec.index("## 18c."):spec.index("## 19.")]
    assert f"`MAX_INLINE_BYTES` = {MAX_INLINE_BYTES:,}".replace(",", " ") in section
    assert f"min({wire.PLAIN_FACTOR} × max_size, max(max_size, {wire.PLAIN_CEILING >> 20} MiB))" in section
    assert f"stream_cap(max_size) = min({wire.STREAM_FACTOR} × max_size, max(max_size, {wire.STREAM_CEILING >> 30} GiB))" \
        in section
    assert wire.STREAM_FACTOR >= 2 * wire.PLAIN_FACTOR and wire.STREAM_CEILING >= 2 * wire.PLAIN_CEILING  # see below
    for m in (1, 1 << 20, 5 << 20, 32 << 20, 1 << 30, 4 << 30):  # stream_cap never refuses what plain_cap let through
        assert wire.stream_cap(m) >= 2 * wire.plain_cap(m) or m > 1 << 30, m
    assert f"block_size ({blocks.MIN_BLOCK:,} - {blocks.MAX_BLOCK:,})".replace(",", " ") in section
    assert f"window (0 - {blocks.MAX_WINDOW:,})".replace(",", " ") in section
    assert (wire.CODEC_RAW, wire.CODEC_DEFLATE, wire.CODEC_BLOCKS, wire.CODEC_TRANSCRIPT) == (0, 8, 9, 10)
    assert "10 = append the deflate stream C transcribes" in section
    assert f"MAX_DEFLATED` = {transcript.MAX_DEFLATED:,}".replace(",", " ") in section
    assert "9 = append C deflated in blocks" in section and "8 = append raw deflate of C" in section
    for name in ("LIT", "COPY", "MEMBER", "SPLICE"):
        assert f"0x{getattr(wire, 'OP_' + name):02x} {name}" in section, name


# -- derived manifests (PROTOCOL.md §18e, chunk_delta.json "derived") ---------------------------


def _read_derived(field: bytes, epochs: dict[int, crypto.TeamKey] | None = None) -> Any:
    """A derived manifest's reader, as chunk_delta.json states it: parse the field, take the key of its
    epoch (none: ``integrity.chain``, as ``Versions.chunk_keys_for``), rebuild the file from the good
    vector's delta, cut it with chunker 1 and check the manifest's hash."""
    from hbw_sync import chunks, derived
    from hbw_sync.delta import apply_delta_to
    from hbw_sync.errors import IntegrityError

    d = CHUNK_DELTA["derived"][0]
    g = next(g for g in CHUNK_DELTA["good"] if g["name"] == d["delta_of"])
    tk = CHUNK_DELTA["team_key"]
    epochs = {tk["epoch"]: crypto.TeamKey(tk["epoch"], bytes.fromhex(tk["secret"]))} if epochs is None else epochs
    want = derived.parse(field)
    if want.epoch not in epochs:
        raise IntegrityError("no team key of the derived manifest's epoch", code="integrity.chain")
    kept: list[tuple[bytes, bytes]] = []
    deriver = derived.Deriver(chunks.ChunkKeys.of(epochs[want.epoch]), want, bytes.fromhex(g["sha256"]), d["size"],
                              lambda cid, plain: kept.append((cid, plain)))
    apply_delta_to(bytes.fromhex(g["base_file"]), bytes.fromhex(g["delta"]), deriver.write,
                   expected_sha256=bytes.fromhex(g["sha256"]), max_size=d["size"])
    return deriver.finish(), deriver.raw, kept


def test_derived_manifest_vector_is_the_cut_of_the_rebuilt_file() -> None:
    from hbw_sync import derived

    d = CHUNK_DELTA["derived"][0]
    g = next(g for g in CHUNK_DELTA["good"] if g["name"] == d["delta_of"])
    field = bytes.fromhex(d["manifest_delta_derived"])
    assert len(field) == derived.FORM_LEN == 38 and field[32:34] == bytes([0x80, 1])
    assert derived.parse(field).digest.hex() == d["manifest_sha256"] == hashlib.sha256(bytes.fromhex(d["manifest"])).hexdigest()
    m, raw, kept = _read_derived(field)
    assert raw.hex() == d["manifest"] == g["manifest"]
    assert [c.hex() for c in m.ids] == g["chunk_ids"] and list(m.sizes) == g["chunk_sizes"]
    assert hashlib.sha256(b"".join(p for _c, p in kept)).hexdigest() == g["file_sha256"]


@pytest.mark.parametrize("v", CHUNK_DELTA["invalid_derived"], ids=lambda v: v["name"])
def test_derived_manifest_vectors_fail_with_their_code(v: dict[str, Any]) -> None:
    with pytest.raises(HbwError) as exc:
        _read_derived(bytes.fromhex(v["manifest_delta_derived"]))
    assert (type(exc.value).__name__, exc.value.code) == (v["expected_error"], v["expected_code"])


def test_derived_manifest_vectors_cover_every_check() -> None:
    got = {(v["expected_error"], v["expected_code"]) for v in CHUNK_DELTA["invalid_derived"]}
    assert got == {("IntegrityError", "integrity.delta"), ("ProtocolError", "protocol.manifest"),
                   ("IntegrityError", "integrity.chain")}
    lengths = {len(bytes.fromhex(v["manifest_delta_derived"])) for v in CHUNK_DELTA["invalid_derived"]}
    assert {37, 38, 39} <= lengths


# -- the generator and the spec -----------------------------------------------------------


def test_generator_help_is_help_not_a_directory(tmp_path, monkeypatch, capsys):
    """``make_vectors.py --help`` once wrote the vectors into a new directory named ``--help``."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        _load_generator().main(["--help"])
    assert e.value.code == 0 and "out_dir" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_generator_writes_every_committed_file(tmp_path):
    paths = gen.generate(tmp_path)
    assert sorted(p.name for p in paths) == sorted(gen.FILES)
    assert sorted(p.name for p in VECTORS.glob("*.json")) == sorted(gen.FILES)


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
            if name == "snapshot.json":
                keep = ("inputs", "ops", "plain_msgpack", "decode")
                assert fresh["history"] == committed["history"]
                assert {k: fresh["snapshot"][k] for k in keep} == {k: committed["snapshot"][k] for k in keep}
            continue
        assert fresh == committed, f"{name} differs from what scripts/make_vectors.py generates"
        assert (tmp_path / name).read_bytes() == (VECTORS / name).read_bytes()
    if not SAME_ZSTD:
        pytest.skip(ZSTD_SKIP)


def _spec_registry() -> set[tuple[str, int, str, str, str, bool]]:
    rows = set()
    for line in SPEC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*(task|doc|member)\s*\|\s*(\d+)\s*\|\s*`(\w+)`\s*\|\s*(routing|content)\s*\|([^|]*)\|\s*(LWW|APPEND|POLICY)\s*\|\s*(yes|no)\s*\|", line)
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


FIELDS_JSON = json.loads((ROOT / "protocol" / "fields.json").read_text(encoding="utf-8"))


def test_fields_json_matches_the_spec_tables_and_the_code():
    """protocol/fields.json (what the Node runner loads) names the same fields as §5/§5a and ops.FIELDS."""
    rows = {(f["kind"], f["tag"], f["name"], f["section"], f["merge"], f["nullable"]) for f in FIELDS_JSON["fields"]}
    assert len(rows) == len(FIELDS_JSON["fields"])
    assert rows == _spec_registry()
    assert FIELDS_JSON["kinds"] == {k.name.lower(): int(k) for k in Kind}


def _probes(f: dict[str, Any]) -> list[tuple[Any, bool]]:
    """Values at and just past each bound of a fields.json type, with whether the type admits them."""
    t, lo, hi = f["type"], f.get("min"), f.get("max")
    out: list[tuple[Any, bool]] = [(None, False), (1.0, False), ([], False)]
    if t == "uint":
        out += [(lo, True), (hi, True), (lo - 1, False), (hi + 1, False), (True, False), (str(lo), False)]
    elif t in ("bool", "true"):
        out += [(True, True), (False, t == "bool"), (1, False), (0, False), ("true", False)]
    elif t == "str":
        out += [("é" * lo, True), ("é" * hi, True), ("é" * (hi + 1), False), (b"x" * max(lo, 1), False)]
        if lo:
            out.append(("", False))
    elif t == "handle":
        out += [("a", True), ("a.b_c-9", True), ("x" * 32, True), ("x" * 33, False), ("", False), ("Abc", False),
                ("é", False), ("a b", False), (b"abc", False)]
    elif t == "bin":
        step = f.get("multiple_of", 1)
        out += [(b"\0" * lo, True), ("x" * max(lo, 1), False)]
        if hi is not None:
            out += [(b"\0" * hi, True), (b"\0" * (hi + step), False)]
        if lo:
            out.append((b"\0" * (lo - 1), False))
        if step > 1:
            out += [(b"\0" * (step + 1), False), (b"\0" * (2 * step), True)]
    else:
        raise AssertionError(f"unknown type {t} in fields.json")
    return out


def test_fields_json_types_agree_with_the_code_checks():
    """Each type bound in fields.json is the one ops.FIELDS enforces: probe both sides of every bound."""
    by_name = {k.name.lower(): k for k in Kind}
    for f in FIELDS_JSON["fields"]:
        spec = FIELDS[by_name[f["kind"]]][f["tag"]]
        for value, ok in _probes(f):
            if value is None:
                continue  # nullability is compared above; the check itself never sees nil
            assert spec.check(value) is ok or bool(spec.check(value)) == ok, (f["kind"], f["name"], repr(value)[:40], ok)


def test_spec_names_every_error_code_the_vectors_use():
    text = SPEC.read_text(encoding="utf-8")
    for code in {v["expected_code"] for v in INVALID["invalid"]}:
        assert f"`{code}`" in text, code
    assert Kind.TASK == 1  # the spec's kind numbers
    for k in Kind:
        assert f"| {int(k)} | {k.name.lower()}" in text


def test_spec_names_every_error_code_the_new_vectors_use():
    text = SPEC.read_text(encoding="utf-8")
    codes = {v["expected_code"] for v in ENVELOPES["invalid"]}
    codes |= {v["expected_code"] for v in ENROLL["invalid_grants"]} | {v["expected_code"] for v in ENROLL["invalid_invites"]}
    codes |= {v["expected_code"] for v in SNAPSHOT["invalid"]}
    codes |= {v["expected_code"] for v in BUNDLES["invalid"] + BUNDLES["invalid_inner"]}
    codes |= {"access.old_bundle", "integrity.bundle"}  # stateful: relay counter, device's exported nonces
    for code in codes:
        assert f"`{code}`" in text, code


def test_spec_http_status_table_matches_code():
    rows = {}
    for line in SPEC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*`(\w+Error)`\s*\|\s*(\d+)\s*\|\s*(\d{3})\s*\|", line)
        if m:
            rows[m[1]] = (int(m[2]), int(m[3]))
    assert rows == {cls.__name__: (EXIT_CODES[cls], status) for cls, status in HTTP_STATUSES.items()}


def test_spec_states_the_constants_the_code_has():
    from hbw_sync.client import bundles as client_bundles
    from hbw_sync.client import snapshots as client_snapshots
    from hbw_sync.client import sync as client_sync
    from hbw_sync import wordcode
    from hbw_sync.server import app, limits, relay

    text = SPEC.read_text(encoding="utf-8")
    consts = {
        "MAX_REQUEST_SKEW_MS": envelope.MAX_REQUEST_SKEW_MS,
        "NONCE_KEEP_MS": relay.NONCE_KEEP_MS,
        "DEFAULT_BUDGET": relay.DEFAULT_BUDGET,
        "MAX_BUDGET": relay.MAX_BUDGET,
        "INLINE_MAX": relay.INLINE_MAX,
        "CHUNK_MAX": relay.CHUNK_MAX,
        "SNAPSHOT_EVERY": relay.SNAPSHOT_EVERY,
        "SNAPSHOT_BYTES_PERCENT": relay.SNAPSHOT_BYTES_PERCENT,
        "SNAPSHOT_MIN_BYTES": relay.SNAPSHOT_MIN_BYTES,
        "MAX_COVERAGE": snapshot.MAX_COVERAGE,
        "SNAPSHOT_RETRY_MS": client_snapshots.RETRY_AFTER_MS,
        "MAX_BODY": app.MAX_BODY,
        "UPLOAD_QUOTA": limits.UPLOAD_QUOTA,
        "UPLOAD_EXPIRE_MS": limits.UPLOAD_EXPIRE_MS,
        "CLIENT_CHUNK": client_sync.CHUNK,
        "MIN_UPLOAD_RATE": client_sync.MIN_UPLOAD_RATE,
        "MAX_BUNDLE": bundle_fmt.MAX_BUNDLE,
        "MAX_STREAM": bundle_fmt.MAX_STREAM,
        "MAX_ANSWER": client_sync.MAX_ANSWER,
        "MAX_ERROR_BODY": client_sync.MAX_ERROR_BODY,
        "BUNDLE_MAX_BYTES": client_bundles.DEFAULT_MAX_BYTES,
        "BUNDLE_REPLY_BUDGET": client_bundles.REPLY_BUDGET,
        "CODE_TTL_MS": wordcode.CODE_TTL_MS,
        "MAX_FETCH_BODY": wordcode.MAX_FETCH_BODY,
        "MAX_FAILURES_PER_SLOT": wordcode.MAX_FAILURES_PER_SLOT,
        "MAX_FAILURES_PER_WINDOW": wordcode.MAX_FAILURES_PER_WINDOW,
        "FAILURE_WINDOW_MS": wordcode.FAILURE_WINDOW_MS,
    }
    assert client_sync.INLINE_MAX == relay.INLINE_MAX and client_sync.DEFAULT_BUDGET == relay.DEFAULT_BUDGET
    for name, value in consts.items():
        m = re.search(rf"\|\s*`{name}`\s*\|\s*([\d ]+)\s*\|", text)
        assert m, f"{name} is not in the constants table"
        assert int(m[1].replace(" ", "")) == value, name


# -- envelopes ----------------------------------------------------------------------------


def _envelope_key(name: str) -> crypto.DeviceKey:
    return crypto.DeviceKey(bytes.fromhex(next(k for k in ENVELOPES["transport_keys"] if k["device"] == name)["seed"]))


RELAY_KEY = crypto.DeviceKey(bytes.fromhex(ENVELOPES["relay"]["seed"]))


def test_envelope_keys():
    assert RELAY_KEY.public.hex() == ENVELOPES["relay"]["public"] == ENROLL["relay"]["public"]
    for k in ENVELOPES["transport_keys"]:
        assert _envelope_key(k["device"]).public.hex() == k["public"]
        assert next(d for d in KEYS["devices"] if d["name"] == k["device"])["device_id"] == k["device_id"]


@pytest.mark.parametrize("v", by_name(ENVELOPES["requests"]))
def test_request_envelope(v):
    data = bytes.fromhex(v["envelope"])
    args = gen.untjson(v["args"])
    body = codec.pack([bytes.fromhex(v["device_id"]), v["time_ms"], bytes.fromhex(v["nonce"]), v["action"], args])
    assert body.hex() == v["body_msgpack"]
    signed = b"HBWQ\x01" + body
    key = _envelope_key(v["device"])
    assert key.sign(signed).hex() == v["signature"]
    assert (signed + bytes.fromhex(v["signature"])).hex() == v["envelope"]
    made, nonce = envelope.make_request(key, bytes.fromhex(v["device_id"]), v["action"], args, v["time_ms"],
                                        nonce=bytes.fromhex(v["nonce"]))
    assert made == data and nonce.hex() == v["nonce"]
    req = envelope.parse_request(data)
    assert (req.device.hex(), req.time_ms, req.nonce.hex(), req.action, req.args) == (
        v["device_id"], v["time_ms"], v["nonce"], v["action"], args)
    req.verify(bytes.fromhex(v["transport_public"]))
    envelope.check_fresh(req, v["time_ms"])


@pytest.mark.parametrize("v", by_name(ENVELOPES["responses"]))
def test_response_envelope(v):
    data = bytes.fromhex(v["envelope"])
    result = gen.untjson(v["result"])
    nonce = bytes.fromhex(v["nonce"])
    assert nonce.hex() == next(r for r in ENVELOPES["requests"] if r["name"] == v["request"])["nonce"]
    body = codec.pack([nonce, v["time_ms"], result])
    assert body.hex() == v["body_msgpack"]
    assert RELAY_KEY.sign(b"HBWR\x01" + body).hex() == v["signature"]
    assert envelope.make_response(RELAY_KEY, nonce, result, v["time_ms"]) == data
    got = envelope.parse_response(data, RELAY_KEY.public, nonce)
    assert (got.nonce, got.time_ms, got.result) == (nonce, v["time_ms"], result)


@pytest.mark.parametrize("case", ENVELOPES["freshness"], ids=lambda c: f"{c['now_ms'] - c['time_ms']:+d}")
def test_request_freshness(case):
    req = envelope.parse_request(bytes.fromhex(ENVELOPES["requests"][0]["envelope"]))
    req = envelope.Request(req.device, case["time_ms"], req.nonce, req.action, req.args, req.signed, req.signature)
    if case["expected_code"] is None:
        envelope.check_fresh(req, case["now_ms"])
    else:
        with pytest.raises(HbwError) as info:
            envelope.check_fresh(req, case["now_ms"])
        assert info.value.code == case["expected_code"]


@pytest.mark.parametrize("v", by_name(ENVELOPES["invalid"]))
def test_invalid_envelope(v):
    data = bytes.fromhex(v["envelope"])
    with pytest.raises(HbwError) as info:
        if v["kind"] == "request":
            req = envelope.parse_request(data)  # the relay's order (PROTOCOL.md §12): freshness first
            envelope.check_fresh(req, v["now_ms"])
            req.verify(bytes.fromhex(v["transport_public"]))
        else:
            envelope.parse_response(data, bytes.fromhex(v["relay_public"]), bytes.fromhex(v["nonce"]))
    assert (type(info.value).__name__, info.value.code) == (v["expected_error_class"], v["expected_code"])


@pytest.mark.parametrize("v", by_name(ENVELOPES["relay_order"]))
def test_relay_reads_a_request_in_the_bounded_order(v):
    """Signature before args, args by their spec (PROTOCOL.md §12 "Bounded before trusted")."""
    from hbw_sync.server import relay

    enrolled = {bytes.fromhex(d): bytes.fromhex(k) for d, k in v["enrolled"].items()}
    data = bytes.fromhex(v["envelope"])
    if v["expected_code"] is None:
        req = relay.open_request(data, v["now_ms"], enrolled.get)
        assert sorted(req.args) == v["expected_arg_names"]
        return
    with pytest.raises(HbwError) as info:
        relay.open_request(data, v["now_ms"], enrolled.get)
    assert (type(info.value).__name__, info.value.code) == (v["expected_error_class"], v["expected_code"])


def test_invalid_envelopes_cover_the_rules():
    codes = {(v["kind"], v["expected_code"]) for v in ENVELOPES["invalid"]}
    assert codes >= {
        ("request", "protocol.magic"), ("request", "protocol.version"), ("request", "protocol.schema"),
        ("request", "integrity.signature"), ("request", "access.clock"), ("response", "protocol.magic"),
        ("response", "protocol.version"), ("response", "integrity.signature"), ("response", "protocol.replay"),
    }  # fmt: skip


# -- enrollment ---------------------------------------------------------------------------


@pytest.mark.parametrize("v", ENROLL["invites"], ids=lambda v: v["role"])
def test_invite_encoding(v):
    inv = enroll.Invite(v["url"], bytes.fromhex(v["relay_public"]), bytes.fromhex(v["team"]), bytes.fromhex(v["token"]),
                        v["member"], v["role"])
    raw = codec.pack([inv.url, inv.relay_public, inv.team, inv.token, inv.member, inv.role])
    assert raw.hex() == v["msgpack"]
    assert v["text"] == "hbw1-" + base64.b32encode(raw).decode().rstrip("=").lower()
    assert inv.encode() == v["text"]
    assert enroll.Invite.decode(v["text"]) == inv
    assert enroll.token_hash(inv.token).hex() == v["token_hash"]
    assert hashlib.sha256(b"hbw-sync invite token v1\x00" + inv.token).hexdigest() == v["token_hash"]


def test_invite_whitespace_and_case_are_ignored():
    sp = ENROLL["invite_spaced"]
    v = ENROLL["invites"][sp["decodes_to"]]
    assert any(c.isspace() for c in sp["text"]) and any(c.isupper() for c in sp["text"])
    assert enroll.Invite.decode(sp["text"]) == enroll.Invite.decode(v["text"])


@pytest.mark.parametrize("v", by_name(ENROLL["invalid_invites"]))
def test_invalid_invite(v):
    with pytest.raises(HbwError) as info:
        enroll.Invite.decode(v["text"])
    assert (type(info.value).__name__, info.value.code) == (v["expected_error_class"], v["expected_code"])


def test_enroll_devices_x25519():
    for d in ENROLL["devices"]:
        assert enroll.x25519_public(bytes.fromhex(d["x25519_private"])).hex() == d["x25519_public"]
        assert crypto.DeviceKey(bytes.fromhex(d["transport_seed"])).public.hex() == d["transport_public"]
        assert crypto.device_id_for(bytes.fromhex(d["author_public"])).hex() == d["device_id"]


def _enroll_device(name: str) -> dict[str, Any]:
    return next(d for d in ENROLL["devices"] if d["name"] == name)


def test_key_grant_stages():
    g = ENROLL["grant"]
    h = {k: bytes.fromhex(v) for k, v in g.items() if isinstance(v, str) and k not in ("recipient", "granter")}
    tk = crypto.TeamKey(g["team_key"]["epoch"], bytes.fromhex(g["team_key"]["secret"]))
    assert tk.key_id.hex() == g["team_key"]["key_id"]
    rec, granter = _enroll_device(g["recipient"]), _enroll_device(g["granter"])
    r_priv, r_pub = bytes.fromhex(rec["x25519_private"]), bytes.fromhex(rec["x25519_public"])
    assert r_pub == h["recipient_x25519_public"] and bytes.fromhex(rec["device_id"]) == h["recipient_device_id"]
    assert h["label"] == b"hbw-sync key grant v1\x00"
    eph = X25519PrivateKey.from_private_bytes(h["ephemeral_private"])
    assert enroll.x25519_public(h["ephemeral_private"]) == h["ephemeral_public"]
    assert eph.exchange(X25519PublicKey.from_public_bytes(r_pub)) == h["shared"]
    assert X25519PrivateKey.from_private_bytes(r_priv).exchange(X25519PublicKey.from_public_bytes(h["ephemeral_public"])) == h["shared"]
    assert h["salt"] == h["ephemeral_public"] + r_pub
    assert crypto.hkdf(h["shared"], h["label"], salt=h["salt"]) == h["grant_key"]
    assert h["aad"] == h["label"] + h["recipient_device_id"] + tk.epoch.to_bytes(4, "big") + tk.key_id
    assert crypto.seal(h["grant_key"], tk.secret, h["aad"], nonce=h["nonce"]) == h["sealed"]
    assert len(h["sealed"]) == 12 + 32 + 16
    body = codec.pack([tk.epoch, tk.key_id, h["ephemeral_public"], h["sealed"], h["granter_device_id"]])
    assert body == h["body"]
    assert h["signed"] == h["label"] + h["recipient_device_id"] + body
    granter_key = crypto.DeviceKey(bytes.fromhex(next(d for d in KEYS["devices"] if d["name"] == g["granter"])["seed"]))
    assert granter_key.public.hex() == granter["author_public"]
    assert granter_key.sign(h["signed"]) == h["signature"]
    assert h["grant"] == body + h["signature"]


def test_key_grant_opens():
    g = ENROLL["grant"]
    rec, granter = _enroll_device(g["recipient"]), _enroll_device(g["granter"])
    key = enroll.open_grant(bytes.fromhex(g["grant"]), bytes.fromhex(rec["device_id"]),
                            bytes.fromhex(rec["x25519_private"]), bytes.fromhex(granter["author_public"]))
    assert (key.epoch, key.secret.hex(), key.key_id.hex()) == (
        g["team_key"]["epoch"], g["team_key"]["secret"], g["team_key"]["key_id"])
    assert enroll.grant_sender(bytes.fromhex(g["grant"])).hex() == granter["device_id"]


@pytest.mark.parametrize("v", by_name(ENROLL["invalid_grants"]))
def test_invalid_key_grant(v):
    o = v["open"]
    with pytest.raises(HbwError) as info:
        enroll.open_grant(bytes.fromhex(v["grant"]), bytes.fromhex(o["my_device"]), bytes.fromhex(o["my_x25519_private"]),
                          bytes.fromhex(o["granter_public"]))
    assert (type(info.value).__name__, info.value.code) == (v["expected_error_class"], v["expected_code"])


def test_enroll_request_matches_enroll_vectors():
    req = next(r for r in ENVELOPES["requests"] if r["action"] == "enroll")
    args = gen.untjson(req["args"])
    d = _enroll_device(req["device"])
    assert args["token"].hex() == ENROLL["invites"][0]["token"]
    assert args["author_pub"].hex() == d["author_public"] and args["x25519_pub"].hex() == d["x25519_public"]
    assert args["transport_pub"].hex() == d["transport_public"] == req["transport_public"]
    assert crypto.device_id_for(args["author_pub"]).hex() == req["device_id"]


# -- snapshots ----------------------------------------------------------------------------


def _snap_op(e: dict[str, Any]) -> snapshot.SnapOp:
    return snapshot.SnapOp(bytes.fromhex(e["device_id"]), e["received_ms"], gen.op_from_json(e["op"]))


def _snap_decode(data: bytes, d: dict[str, Any]) -> snapshot.Snapshot:
    public, keys, _, team = decode_inputs(d)
    return snapshot.decode(data, public, keys, team)


def test_snapshot_decodes():
    v = SNAPSHOT["snapshot"]
    got = _snap_decode(bytes.fromhex(v["snapshot"]), v["decode"])
    inp = v["inputs"]
    assert (got.team.hex(), got.device.hex(), got.cursor, got.epoch) == (inp["team"], inp["device_id"], inp["cursor"], inp["epoch"])
    assert list(got.ops) == [_snap_op(e) for e in v["ops"]]
    assert got.coverage == {bytes.fromhex(c["device_id"]): c["last_seq"] for c in inp["coverage"]}
    assert snapshot.peek(bytes.fromhex(v["snapshot"])) == (got.team, got.device, got.cursor, got.epoch)
    # what the relay checks without the team key: the same claim
    public, _, _, team = decode_inputs(v["decode"])
    claim = snapshot.verify(bytes.fromhex(v["snapshot"]), public, team)
    assert (claim.cursor, claim.coverage) == (got.cursor, got.coverage)
    snapshot.check_coverage(claim, got.coverage)
    for d in got.coverage:  # one device counted one batch short, or left out: refused
        with pytest.raises(HbwError) as info:
            snapshot.check_coverage(claim, {**got.coverage, d: got.coverage[d] + 1})
        assert info.value.code == "integrity.coverage"
        with pytest.raises(HbwError):
            snapshot.check_coverage(claim, {k: s for k, s in got.coverage.items() if k != d})


def test_snapshot_stages():
    v = SNAPSHOT["snapshot"]
    inp = v["inputs"]
    ops = [_snap_op(e) for e in v["ops"]]
    rows = [[s.device, s.received_ms, routing_row(s.op), dict(s.op.content or {})] for s in ops]
    assert codec.pack(rows).hex() == v["plain_msgpack"]
    plain_z, sealed = bytes.fromhex(v["plain_zstd"]), bytes.fromhex(v["sealed"])
    assert codec.decompress(plain_z, cap=1 << 30).hex() == v["plain_msgpack"]
    cover = b"".join(snapshot.COVER.pack(bytes.fromhex(c["device_id"]), c["last_seq"]) for c in inp["coverage"])
    assert cover.hex() == v["coverage"] and len(cover) == 16 * len(inp["coverage"])
    header = snapshot.HEADER.pack(b"HBW", b"S", 2, 0, bytes.fromhex(inp["team"]), bytes.fromhex(inp["device_id"]),
                                  inp["cursor"], inp["epoch"], len(inp["coverage"]), 12 + len(plain_z) + 16)
    assert len(header) == 42 and header.hex() == v["header"]
    secret = next(k for k in v["decode"]["team_keys"] if k["epoch"] == inp["epoch"])["secret"]
    tk = crypto.TeamKey(inp["epoch"], bytes.fromhex(secret))
    assert tk.subkey(b"snapshot") == crypto.hkdf(tk.secret, b"hbw-sync snapshot v1")
    assert crypto.seal(tk.subkey(b"snapshot"), plain_z, header + cover, nonce=bytes.fromhex(inp["nonce"])) == sealed
    seed = next(d for d in KEYS["devices"] if d["name"] == inp["device"])["seed"]
    author = crypto.DeviceKey(bytes.fromhex(seed))
    assert author.sign(header + cover + sealed).hex() == v["signature"]
    assert (header + cover + sealed + author.sign(header + cover + sealed)).hex() == v["snapshot"]
    # snapshot.encode draws a random nonce: same header, same plaintext once opened
    coverage = {bytes.fromhex(c["device_id"]): c["last_seq"] for c in inp["coverage"]}
    made = snapshot.encode(snapshot.Snapshot(bytes.fromhex(inp["team"]), author.device_id, inp["cursor"],
                                             inp["epoch"], tuple(ops), coverage), author, tk, level=inp["level"])
    assert _snap_decode(made, v["decode"]).ops == tuple(ops)
    at = len(header) + len(cover)
    opened = crypto.open_sealed(tk.subkey(b"snapshot"), made[at:-64], made[:at])
    assert codec.decompress(opened, cap=1 << 30).hex() == v["plain_msgpack"]
    if SAME_ZSTD:
        assert made[:at] == header + cover and opened == plain_z


def test_snapshot_holds_the_contributing_ops_and_the_same_state():
    history = [_snap_op(e) for e in SNAPSHOT["history"]]
    chosen = [_snap_op(e) for e in SNAPSHOT["snapshot"]["ops"]]
    by_entity: dict[tuple[int, bytes], list[tuple[bytes, int, Op]]] = {}
    for s in history:
        by_entity.setdefault((s.op.kind, s.op.entity), []).append((s.device, s.received_ms, s.op))
    expect = [snapshot.SnapOp(d, r, o) for k in sorted(by_entity) for d, r, o in snapshot.contributing(by_entity[k])]
    assert expect == chosen
    assert len(chosen) < len(history)

    def state(items: list[snapshot.SnapOp]) -> list[dict[str, Any]]:
        return _state_json(merge.fold([(s.op, merge.stamp_for(s.op, s.device, s.received_ms)) for s in items]))

    assert state(chosen) == state(history)
    assert state(chosen + history[::-1]) == state(history)  # batches overlapping the snapshot merge on top


@pytest.mark.parametrize("v", by_name(SNAPSHOT["invalid"]))
def test_invalid_snapshot(v):
    with pytest.raises(HbwError) as info:
        _snap_decode(bytes.fromhex(v["snapshot"]), v["decode"])
    assert (type(info.value).__name__, info.value.code) == (v["expected_error_class"], v["expected_code"])


# -- bundles ------------------------------------------------------------------------------


def _bundle_open(data: bytes, o: dict[str, Any]) -> bytes:
    return bundle_fmt.open_bundle(data, o["kind"].encode(), bytes.fromhex(o["team"]), bytes.fromhex(o["recipient"]),
                                  bytes.fromhex(o["x25519_private"]))


def test_bundle_keys():
    r, d = BUNDLES["relay"], BUNDLES["device"]
    relay_key = crypto.DeviceKey(bytes.fromhex(r["seed"]))
    assert relay_key.public.hex() == r["public"] == ENVELOPES["relay"]["public"]
    assert relay_key.device_id.hex() == r["device_id"]
    x = bundle_fmt.relay_x25519(relay_key)
    assert x.hex() == r["x25519_private"]
    assert crypto.hkdf(relay_key.private, b"hbw-sync relay x25519 v1").hex() == r["x25519_private"]
    assert enroll.x25519_public(x).hex() == r["x25519_public"]
    enroll_resp = next(v for v in ENVELOPES["responses"] if v["name"] == "enroll")
    assert gen.untjson(enroll_resp["result"])["relay_x25519"].hex() == r["x25519_public"]
    assert enroll.x25519_public(bytes.fromhex(d["x25519_private"])).hex() == d["x25519_public"]
    assert crypto.DeviceKey(bytes.fromhex(d["transport_seed"])).public.hex() == d["transport_public"]
    assert _enroll_device(d["name"])["x25519_public"] == d["x25519_public"]


@pytest.mark.parametrize("which", ["request", "reply"])
def test_bundle_stages(which):
    v = BUNDLES[which]
    h = {k: bytes.fromhex(v[k]) for k in ("recipient", "recipient_x25519_public", "ephemeral_private", "ephemeral_public",
                                          "shared", "salt", "key", "header", "nonce", "sealed", "bundle", "envelope")}
    team = bytes.fromhex(BUNDLES["team"])
    assert enroll.x25519_public(h["ephemeral_private"]) == h["ephemeral_public"]
    eph = X25519PrivateKey.from_private_bytes(h["ephemeral_private"])
    assert eph.exchange(X25519PublicKey.from_public_bytes(h["recipient_x25519_public"])) == h["shared"]
    assert h["salt"] == h["ephemeral_public"] + h["recipient_x25519_public"]
    assert crypto.hkdf(h["shared"], b"hbw-sync bundle v1", salt=h["salt"]) == h["key"]
    header = b"HBW" + v["kind"].encode() + b"\x01\x00" + team + h["recipient"] + h["ephemeral_public"]
    assert len(header) == 54 and header == h["header"]
    assert crypto.seal(h["key"], h["envelope"], header, nonce=h["nonce"]) == h["sealed"]
    assert header + h["sealed"] == h["bundle"]
    assert len(h["bundle"]) == 54 + 12 + len(h["envelope"]) + 16
    made = bundle_fmt.seal(v["kind"].encode(), team, h["recipient"], h["recipient_x25519_public"], h["envelope"],
                           ephemeral=h["ephemeral_private"], nonce=h["nonce"])
    assert made == h["bundle"]
    assert bundle_fmt.peek(h["bundle"]) == (v["kind"].encode(), team, h["recipient"])


def test_request_bundle_opens_to_a_signed_sync_request():
    v, r, d = BUNDLES["request"], BUNDLES["relay"], BUNDLES["device"]
    o = {"kind": "X", "team": BUNDLES["team"], "recipient": r["device_id"], "x25519_private": r["x25519_private"]}
    env = _bundle_open(bytes.fromhex(v["bundle"]), o)
    assert env.hex() == v["envelope"]
    req = envelope.parse_request(env)
    req.verify(bytes.fromhex(d["transport_public"]))
    args = gen.untjson(v["envelope_args"])
    assert (req.device.hex(), req.time_ms, req.nonce.hex(), req.action, req.args) == (
        d["device_id"], v["envelope_time_ms"], v["envelope_nonce"], "sync", args)
    assert type(args["bundle"]) is int and args["bundle"] >= 1


def test_reply_bundle_opens_to_the_relays_response():
    v, d = BUNDLES["reply"], BUNDLES["device"]
    o = {"kind": "Y", "team": BUNDLES["team"], "recipient": d["device_id"], "x25519_private": d["x25519_private"]}
    env = _bundle_open(bytes.fromhex(v["bundle"]), o)
    assert env.hex() == v["envelope"]
    nonce = bytes.fromhex(BUNDLES["request"]["envelope_nonce"])
    res = envelope.parse_response(env, bytes.fromhex(BUNDLES["relay"]["public"]), nonce)
    assert (res.time_ms, res.result) == (v["envelope_time_ms"], gen.untjson(v["envelope_result"]))
    assert envelope.make_response(RELAY_KEY, nonce, res.result, res.time_ms) == env


@pytest.mark.parametrize("v", by_name(BUNDLES["invalid"]))
def test_invalid_bundle(v):
    with pytest.raises(HbwError) as info:
        _bundle_open(bytes.fromhex(v["bundle"]), v["open"])
    assert (type(info.value).__name__, info.value.code) == (v["expected_error_class"], v["expected_code"])


def test_invalid_bundles_cover_the_rules():
    codes = {v["expected_code"] for v in BUNDLES["invalid"]}
    assert codes >= {"protocol.magic", "protocol.truncated", "protocol.version", "protocol.bundle_type",
                     "integrity.team", "integrity.recipient", "integrity.aead"}
    assert len({v["name"] for v in BUNDLES["invalid"]}) == len(BUNDLES["invalid"])


@pytest.fixture(scope="module")
def empty_relay(tmp_path_factory):
    from hbw_sync.server import db, relay

    path = tmp_path_factory.mktemp("relay") / "relay.db"
    db.create_schema(path)
    conn = db.connect(path)
    yield conn, relay.RelayIdentity(bytes.fromhex(BUNDLES["team"]), BUNDLES["team_name"], RELAY_KEY)
    conn.close()


@pytest.mark.parametrize("v", by_name(BUNDLES["invalid_inner"]))
def test_invalid_bundle_inner_envelope(v, empty_relay):
    """Sealed correctly to the relay; the envelope inside is what the relay refuses (a relay with no devices)."""
    from hbw_sync.server import relay

    conn, ident = empty_relay
    data = bytes.fromhex(v["bundle"])
    assert bundle_fmt.open_bundle(data, b"X", ident.team, ident.key.device_id,
                                  bundle_fmt.relay_x25519(ident.key)).hex() == v["envelope"]
    with pytest.raises(HbwError) as info:
        relay.ingest_bundle(conn, ident, data, gen.T0)
    assert (type(info.value).__name__, info.value.code) == (v["expected_error_class"], v["expected_code"])


def test_word_code_vector():
    """PROTOCOL.md §14a: the words' keys, the relay's proof digest, the sealed invite and the fetch request."""
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    from hbw_sync import wordcode

    v = ENROLL["word_code"]
    words = tuple(v["words"])
    assert wordcode.parse_code(v["typed"]) == wordcode.parse_code(v["code"]) == (v["slot"], words)
    sc = v["scrypt"]
    k = Scrypt(salt=bytes.fromhex(sc["salt"]), length=sc["length"], n=sc["n"], r=sc["r"], p=sc["p"]).derive(
        sc["password"].encode())
    assert (k[:32].hex(), k[32:].hex()) == (v["proof"], v["seal_key"])
    proof, seal_key = wordcode.derive(v["slot"], words)
    assert (proof.hex(), seal_key.hex()) == (v["proof"], v["seal_key"])
    assert wordcode.proof_digest(proof).hex() == v["proof_digest"]
    sealed = bytes.fromhex(v["sealed"])
    assert wordcode.seal_invite(seal_key, v["slot"], v["invite_text"], bytes.fromhex(v["nonce"])) == sealed
    assert wordcode.open_invite(seal_key, v["slot"], sealed) == v["invite_text"] == ENROLL["invites"][0]["text"]
    assert wordcode.fetch_request(v["slot"], proof).hex() == v["fetch_request"]
    assert wordcode.parse_fetch_request(bytes.fromhex(v["fetch_request"])) == (v["slot"], proof)
    with pytest.raises(HbwError) as info:  # another slot's AAD: the same bytes do not open
        wordcode.open_invite(seal_key, v["slot"] + 1, sealed)
    assert info.value.code == "integrity.code"


# -- evidence files (PROTOCOL.md §24; scripts/vectors/evidence.py) -------------------------

EVIDENCE = load("evidence.json")


def _hexed(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, dict):
        return {str(k): _hexed(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_hexed(x) for x in v]
    return v


@pytest.mark.parametrize("v", by_name(EVIDENCE["valid"]))
def test_evidence_vector_verifies_and_reads_as_expected(v: dict[str, Any]) -> None:
    from hbw_sync import evidence

    keys = {k["epoch"]: crypto.TeamKey(k["epoch"], bytes.fromhex(k["secret"])) for k in EVIDENCE["keys"]["team_keys"]}
    for team_keys, expect in ((None, v["expect"]), (keys, v["expect_with_team_key"])):
        r = evidence.verify(bytes.fromhex(v["file"]), bytes.fromhex(v["relay_public"]), team_keys)
        assert r.ok, r.problems
        assert r.exporter == expect["exporter"] and (r.first_rseq, r.last_rseq) == (expect["first_rseq"],
                                                                                    expect["last_rseq"])
        assert _hexed(r.devices) == expect["devices"]
        got = [{"rseq": e.rseq, "member": e.member, "device": e.device.hex(), "seq": e.seq,
                "received_ms": e.received_ms,
                "changes": [{"kind": c.kind, "entity": c.entity.hex(), "time_ms": c.time_ms, "fields": _hexed(c.fields)}
                            for c in e.changes]} for e in r.entries]
        assert got == expect["entries"]
        assert all(e.content_shown is expect["content_shown"] for e in r.entries)


@pytest.mark.parametrize("v", by_name(EVIDENCE["invalid"]))
def test_evidence_vector_is_refused_with_its_reason(v: dict[str, Any]) -> None:
    from hbw_sync import evidence

    data, pub = bytes.fromhex(v["file"]), bytes.fromhex(v["relay_public"])
    if v["outcome"] == "refused":
        with pytest.raises(HbwError) as e:
            evidence.verify(data, pub)
        assert (type(e.value).__name__, e.value.code) == (v["expected_error"], v["expected_code"])
    else:
        r = evidence.verify(data, pub)
        assert r.codes() == v["expected_codes"] and [p.rseq for p in r.problems] == v["problem_rseqs"]


def test_evidence_vectors_cover_every_reason_code_and_the_spec_names_them() -> None:
    """Every stable reason ``evidence.verify`` can report has a labelled vector and a line in §24."""
    source = (ROOT / "hbw_sync" / "evidence.py").read_text(encoding="utf-8")
    reasons = set(re.findall(r'Problem\("([a-z_.]+)"', source))
    covered = {c for v in EVIDENCE["invalid"] for c in v.get("expected_codes", [])}
    assert reasons <= covered, reasons - covered
    refusals = {v["expected_code"] for v in EVIDENCE["invalid"] if v["outcome"] == "refused"}
    assert {"protocol.truncated", "protocol.trailing", "integrity.receipts", "integrity.relay_key"} <= refusals
    names = {v["name"] for v in EVIDENCE["invalid"]}
    assert {"batch_altered", "truncated", "reordered", "omitted", "signed_after_revocation"} <= names
    section = SPEC.read_text(encoding="utf-8").split("## 24.", 1)[1]
    for code in reasons | refusals:
        assert f"`{code}`" in section, code


def test_evidence_generator_reproduces_the_committed_file() -> None:
    """Drift: scripts/vectors/evidence.py regenerates evidence.json (whole files only with the same zstd)."""
    fresh = json.loads(gen.render(gen.FILES["evidence.json"]()))

    def without_files(d: dict[str, Any]) -> dict[str, Any]:
        return {**d, "meta": None, "valid": [{k: x for k, x in v.items() if k != "file"} for v in d["valid"]],
                "invalid": [{k: x for k, x in v.items() if k != "file"} for v in d["invalid"]]}

    assert without_files(fresh) == without_files(EVIDENCE)
    if EVIDENCE["meta"]["zstandard_version"] != zstandard.__version__:
        pytest.skip(ZSTD_SKIP)
    assert fresh == EVIDENCE
