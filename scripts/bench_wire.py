"""Bytes per op on the wire: hbw-sync batches against the compression floor and JSON+gzip.

    .venv/bin/python scripts/bench_wire.py            # markdown report
    .venv/bin/python scripts/bench_wire.py --json     # machine-readable

Workload: ``scripts/workload.py`` (one simulated week, 5 devices, 1,000 changes,
fixed seed). Each device's ops are cut, in author order, into consecutive
batches of N ops (the last batch of a device may be shorter); a figure is total
bytes over total ops. Everything is measured, not estimated, except the HTTP
header figure (~550 B per request both ways, from PRIOR-ART.md "Bandwidth"),
which is labelled as an estimate wherever it is used.

Columns:

* hbw-sync: ``batch.encode_batch`` at level 19 (header, two zstd frames,
  ChaCha20-Poly1305, Ed25519: everything that goes on the wire for the batch).
* hbw-sync + dict: the same with the shipped dictionary ``data/ops-<id>.zdict``
  (``scripts/train_dict.py``), if present.
* floor: the same plaintext, ``codec.pack([[routing_row, content], ...])`` as one
  zstd level-19 frame, no crypto, no framing, no frame content size: what a
  bare "msgpack + zstd" sync would send. hbw/floor is the price of the format.
* JSON+gzip per op: one JSON document per op, gzip level 6, as a typical REST
  sync API sends it (op id, device, hlc, entity kind/id, base as hex; fields by
  name with plaintext content). Body only is the primary comparison; +HTTP adds
  the ~550 B header estimate per request.
* one JSON+gzip batch: the batch of N ops as one JSON array, gzip level 6.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workload  # noqa: E402  (puts the source tree's hbw_sync on sys.path)

import zstandard  # noqa: E402

from hbw_sync import batch as hbatch  # noqa: E402
from hbw_sync import codec, crypto  # noqa: E402
from hbw_sync.errors import VersionError  # noqa: E402
from hbw_sync.ops import Need, Op, Priority, Status, day_to_date, routing_row  # noqa: E402
import _benchkit  # noqa: E402  (scripts/: what every --json records)

SEED = 2024  # train_dict.py uses another seed
SIZES = (1, 10, 100, 1000)
LEVEL = codec.BATCH_LEVEL
HTTP_HEADERS = 550  # bytes per request, request + response headers (estimate, PRIOR-ART.md)
TARGET_FLOOR_RATIO = 1.25
TARGET_JSON_RATIO = 4.0
TARGET_SIZE = 100

TEAM_KEY = crypto.TeamKey(1, hashlib.sha256(b"hbw-sync bench team key").digest())
TEAM_ID = hashlib.sha256(b"hbw-sync bench team id").digest()[:8]


def chunks(seq: list, n: int) -> list[list]:
    return [seq[i : i + n] for i in range(0, len(seq), n)]


# -- hbw-sync --------------------------------------------------------------------------------


def measure_hbw(dev_ops: dict[str, list[Op]], n: int, dict_id: int = 0) -> dict:
    """Encode every device's ops in batches of n; bytes split into routing/content/overhead."""
    total = routing = sealed = batches = 0
    for name, ops in dev_ops.items():
        key = workload.device_key(name)
        for seq, chunk in enumerate(chunks(ops, n), 1):
            b = hbatch.Batch(TEAM_ID, key.device_id, seq, TEAM_KEY.epoch, tuple(chunk))
            wire = hbatch.encode_batch(b, key, TEAM_KEY, dict_id=dict_id, level=LEVEL)
            frame = hbatch.parse_batch(wire)
            total += len(wire)
            routing += len(frame.routing)
            sealed += len(frame.sealed)
            batches += 1
    return {
        "bytes": total,
        "batches": batches,
        "routing_bytes": routing,
        "content_bytes": sealed - batches * (crypto.NONCE_LEN + crypto.TAG_LEN),
        "overhead_bytes": batches * hbatch.OVERHEAD,
    }


def check_roundtrip(dev_ops: dict[str, list[Op]], dict_id: int) -> None:
    """Decode one batch per device and size class, so a number is never for an unreadable batch."""
    for name, ops in dev_ops.items():
        key = workload.device_key(name)
        for n in (1, 100):
            chunk = tuple(ops[:n])
            wire = hbatch.encode_batch(hbatch.Batch(TEAM_ID, key.device_id, 1, 1, chunk), key, TEAM_KEY, dict_id=dict_id)
            got = hbatch.decode_batch(wire, key.public, TEAM_KEY, team=TEAM_ID)
            if got.ops != chunk:
                raise SystemExit(f"round trip failed for {name} (dict {dict_id})")


# -- the floor -------------------------------------------------------------------------------


def _floor_compressor(d: zstandard.ZstdCompressionDict | None) -> zstandard.ZstdCompressor:
    kw = {"level": LEVEL, "write_content_size": False, "write_checksum": False, "write_dict_id": False}
    if d is not None:
        kw["dict_data"] = d
    return zstandard.ZstdCompressor(**kw)


def measure_floor(dev_ops: dict[str, list[Op]], n: int, d: zstandard.ZstdCompressionDict | None = None) -> dict:
    cz = _floor_compressor(d)
    total = 0
    for ops in dev_ops.values():
        for chunk in chunks(ops, n):
            total += len(cz.compress(codec.pack([[routing_row(op), dict(op.content or {})] for op in chunk])))
    return {"bytes": total}


def measure_floor_split(dev_ops: dict[str, list[Op]], n: int) -> dict:
    """The floor laid out as hbw-sync lays it out: routing array and content array as two frames."""
    cz = _floor_compressor(None)
    total = 0
    for ops in dev_ops.values():
        for chunk in chunks(ops, n):
            total += len(cz.compress(codec.pack([routing_row(op) for op in chunk])))
            total += len(cz.compress(codec.pack([dict(op.content or {}) for op in chunk])))
    return {"bytes": total}


# -- JSON + gzip -----------------------------------------------------------------------------


def _json_value(name: str, v):
    if v is None:
        return None
    if name == "status":
        return Status(v).name.lower()
    if name == "priority":
        return Priority(v).name.lower()
    if name in ("due", "away_until"):
        return day_to_date(v).isoformat()
    if name == "needs":
        return [n.name.lower() for n in Need if v & n]
    if isinstance(v, bytes):
        return v.hex()
    return v


def op_json(device_name: str, op: Op) -> dict:
    dev = workload.device_id(device_name)
    return {
        "op_id": op.op_id(dev).hex(),
        "device": dev.hex(),
        "hlc": op.hlc,
        "entity": {"kind": op.kind.name.lower(), "id": op.entity.hex()},
        "base": op.base.hex() if op.base else None,
        "fields": {k: _json_value(k, v) for k, v in op.named().items()},
    }


def _dumps(obj) -> bytes:
    # compact separators, as JSON.stringify writes: the smaller (kinder) baseline
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _gzip(body: bytes) -> bytes:
    return gzip.compress(body, compresslevel=6, mtime=0)


def measure_json(dev_ops_named: dict[str, list[Op]]) -> dict:
    raw = gz = n = 0
    for name, ops in dev_ops_named.items():
        for op in ops:
            body = _dumps(op_json(name, op))
            raw += len(body)
            gz += len(_gzip(body))
            n += 1
    return {"raw_bytes": raw, "gzip_bytes": gz, "requests": n}


def measure_json_batch(dev_ops: dict[str, list[Op]], n: int) -> dict:
    total = requests = 0
    for name, ops in dev_ops.items():
        for chunk in chunks(ops, n):
            total += len(_gzip(_dumps([op_json(name, op) for op in chunk])))
            requests += 1
    return {"bytes": total, "requests": requests}


# -- report ----------------------------------------------------------------------------------


def _load_dict(dict_id: int) -> zstandard.ZstdCompressionDict | None:
    if not dict_id:
        return None
    try:
        return codec.dictionary(dict_id)
    except VersionError:
        return None


def run(seed: int = SEED, dict_id: int = 1, sizes=SIZES) -> dict:
    t0 = time.perf_counter()
    changes = workload.generate(seed=seed)
    dev_ops = workload.by_device(changes)
    n_ops = len(changes)
    d = _load_dict(dict_id)
    check_roundtrip(dev_ops, 0)
    if d is not None:
        check_roundtrip(dev_ops, dict_id)
    js = measure_json(dev_ops)
    json_op = js["gzip_bytes"] / n_ops
    rows = []
    for n in sizes:
        h = measure_hbw(dev_ops, n)
        f = measure_floor(dev_ops, n)
        jb = measure_json_batch(dev_ops, n)
        row = {
            "ops_per_batch": n,
            "batches": h["batches"],
            "hbw": h["bytes"] / n_ops,
            "hbw_routing": h["routing_bytes"] / n_ops,
            "hbw_content": h["content_bytes"] / n_ops,
            "hbw_overhead": h["overhead_bytes"] / n_ops,
            "floor": f["bytes"] / n_ops,
            "floor_split": measure_floor_split(dev_ops, n)["bytes"] / n_ops,
            "json_gzip_per_op": json_op,
            "json_gzip_per_op_http_est": json_op + HTTP_HEADERS,
            "json_gzip_batch": jb["bytes"] / n_ops,
            "json_gzip_batch_http_est": (jb["bytes"] + HTTP_HEADERS * jb["requests"]) / n_ops,
            "hbw_http_est": (h["bytes"] + HTTP_HEADERS * h["batches"]) / n_ops,
        }
        row["hbw_over_floor"] = row["hbw"] / row["floor"]
        row["json_over_hbw"] = json_op / row["hbw"]
        if d is not None:
            hd = measure_hbw(dev_ops, n, dict_id=dict_id)
            row["hbw_dict"] = hd["bytes"] / n_ops
            row["hbw_dict_routing"] = hd["routing_bytes"] / n_ops
            row["hbw_dict_content"] = hd["content_bytes"] / n_ops
            row["floor_dict"] = measure_floor(dev_ops, n, d)["bytes"] / n_ops
            row["dict_saving"] = 1 - row["hbw_dict"] / row["hbw"]
        rows.append(row)
    at = next((r for r in rows if r["ops_per_batch"] == TARGET_SIZE), None)
    targets = {}
    if at is not None:
        targets = {
            "floor_ratio": {"value": at["hbw_over_floor"], "limit": TARGET_FLOOR_RATIO, "pass": at["hbw_over_floor"] <= TARGET_FLOOR_RATIO},
            "json_ratio": {
                "value": at["json_over_hbw"],
                "limit": TARGET_JSON_RATIO,
                "compared_with": "per-op JSON+gzip, body only",
                "pass": at["json_over_hbw"] >= TARGET_JSON_RATIO,
            },
        }
    return {
        "workload": {"seed": seed, "ops": n_ops, "devices": len(dev_ops), "mix": workload.describe(changes)},
        "level": LEVEL,
        "overhead_per_batch": hbatch.OVERHEAD,
        "overhead_parts": {"header": hbatch.HEADER_LEN, "nonce": crypto.NONCE_LEN, "tag": crypto.TAG_LEN, "signature": crypto.SIG_LEN},
        "http_headers_estimate": HTTP_HEADERS,
        "json_raw_per_op": js["raw_bytes"] / n_ops,
        "dict_id": dict_id if d is not None else 0,
        "dict_size": len(d.as_bytes()) if d is not None else 0,
        "rows": rows,
        "targets": targets,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _f(x: float) -> str:
    return f"{x:,.1f}"


def render(res: dict) -> str:
    w = res["workload"]
    has_dict = bool(res["dict_id"])
    out = []
    out.append(
        f"Workload: seed {w['seed']}, {w['ops']} ops from {w['devices']} devices over one week; mix {w['mix']}. "
        f"zstd level {res['level']}. Figures are bytes per op on the wire."
    )
    p = res["overhead_parts"]
    out.append(
        f"Fixed overhead per hbw-sync batch: {res['overhead_per_batch']} B "
        f"(header {p['header']} + nonce {p['nonce']} + tag {p['tag']} + signature {p['signature']}), "
        "plus two zstd frame headers."
    )
    out.append("")
    hdr = ["ops/batch", "hbw-sync"]
    if has_dict:
        hdr += ["hbw-sync + dict"]
    hdr += ["floor (msgpack+zstd)"]
    if has_dict:
        hdr += ["floor + dict"]
    hdr += ["hbw/floor", "JSON+gzip per op (body)", "JSON/hbw", "one JSON+gzip batch (body)"]
    out.append("| " + " | ".join(hdr) + " |")
    out.append("|" + "|".join("---:" for _ in hdr) + "|")
    for r in res["rows"]:
        cells = [f"{r['ops_per_batch']:,}", _f(r["hbw"])]
        if has_dict:
            cells += [_f(r["hbw_dict"]) if "hbw_dict" in r else "n/a"]
        cells += [_f(r["floor"])]
        if has_dict:
            cells += [_f(r["floor_dict"]) if "floor_dict" in r else "n/a"]
        cells += [f"{r['hbw_over_floor']:.2f}x", _f(r["json_gzip_per_op"]), f"{r['json_over_hbw']:.1f}x", _f(r["json_gzip_batch"])]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out.append(f"With HTTP headers (ESTIMATE: ~{res['http_headers_estimate']} B per request, request + response):")
    out.append("")
    out.append("| ops/batch | hbw-sync, 1 request per batch | JSON+gzip, 1 request per op | JSON/hbw | one JSON+gzip batch per request |")
    out.append("|---:|---:|---:|---:|---:|")
    for r in res["rows"]:
        out.append(
            f"| {r['ops_per_batch']:,} | {_f(r['hbw_http_est'])} | {_f(r['json_gzip_per_op_http_est'])} | "
            f"{r['json_gzip_per_op_http_est'] / r['hbw_http_est']:.1f}x | {_f(r['json_gzip_batch_http_est'])} |"
        )
    out.append("")
    out.append("hbw-sync bytes per op by part (routing section / sealed content without nonce+tag / fixed overhead):")
    for r in res["rows"]:
        line = (
            f"  {r['ops_per_batch']:>5,} ops/batch: routing {_f(r['hbw_routing'])}, content {_f(r['hbw_content'])}, "
            f"overhead {_f(r['hbw_overhead'])}"
        )
        if has_dict and "hbw_dict" in r:
            line += (
                f"  | with dict: routing {_f(r['hbw_dict_routing'])}, content {_f(r['hbw_dict_content'])}"
                f"  -> dict saves {r['dict_saving'] * 100:.0f}%"
            )
        out.append(line)
    out.append(
        "  floor laid out as two frames (routing array, content array; no crypto, no framing): "
        + ", ".join(f"{_f(r['floor_split'])} at {r['ops_per_batch']:,}" for r in res["rows"])
    )
    out.append(f"  (uncompressed JSON body: {_f(res['json_raw_per_op'])} B per op)")
    out.append("")
    if has_dict:
        out.append(
            f"Dictionary: data/ops-{res['dict_id']}.zdict, {res['dict_size']:,} B, trained on other seeds, devices and weeks "
            "(scripts/train_dict.py). The dict columns are an UPPER BOUND: the dictionary shares the generator's "
            "templates and word lists with this text; scripts/train_dict.py prints a structure-only lower bound."
        )
    else:
        out.append("Dictionary: none shipped (run scripts/train_dict.py); the dict columns are left out.")
    t = res["targets"]
    if t:
        fr, jr = t["floor_ratio"], t["json_ratio"]
        out.append(
            f"Target 1, at {TARGET_SIZE} ops/batch hbw-sync <= {fr['limit']}x the floor: {fr['value']:.2f}x -> "
            f"{'PASS' if fr['pass'] else 'FAIL'}"
        )
        out.append(
            f"Target 2, at {TARGET_SIZE} ops/batch hbw-sync >= {jr['limit']:.0f}x smaller than {jr['compared_with']}: "
            f"{jr['value']:.1f}x -> {'PASS' if jr['pass'] else 'FAIL'}"
        )
    out.append(f"({res['seconds']} s)")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print machine-readable JSON instead of the report")
    ap.add_argument("--seed", type=int, default=SEED, help=f"workload seed (default {SEED})")
    ap.add_argument("--dict-id", type=int, default=1, help="shipped dictionary to try (0: none; default 1)")
    ap.add_argument("--quick", action="store_true", help="accepted for the bench convention: the full run takes seconds")
    args = ap.parse_args(argv)
    res = run(seed=args.seed, dict_id=args.dict_id)
    t = res["targets"]
    ok = not t or all(v["pass"] for v in t.values())
    if args.json:
        print(json.dumps(_benchkit.stamp(res, ok, quick=args.quick), indent=2))
    else:
        print(render(res))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
