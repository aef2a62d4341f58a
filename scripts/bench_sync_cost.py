"""CPU per sync on the relay, by step, without HTTP: where a sync's milliseconds go.

Run: .venv/bin/python scripts/bench_sync_cost.py [--quick] [--json] [--profile]

Why: the relay's throughput on a 2-core machine is its CPU per sync (issue 16). This
measures that cost step by step on the real code (``relay.prepare``, ``relay.apply`` in a
real SQLite transaction, ``relay.answer``) for the same kind of sync ``bench_relay.py``
sends: one new 100-op batch, the pull cursor, a 20 KB budget (so each answer hands out a
few batches of other devices). Devices are synthetic (``_bench_devices.py``) and enrolled
through the ``enroll`` action.

Beside it, measured in the same run, the floor no relay code can avoid:

* ``floor: Ed25519 verify x2``: the request's signature and the batch's author signature
  (PyNaCl), nothing else;
* ``floor: routing decode``: zstd + msgpack of the batch's routing section alone;
* ``floor: sign answer``: one Ed25519 signature.

Figures are CPU milliseconds of this process (``time.process_time``) per sync, medians of
several passes; ``--profile`` also prints cProfile's top functions for the whole path.
No target is enforced: the figures go in the README.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_ROOT))
sys.path.insert(0, str(_ROOT / "scripts"))

import _bench_devices as bd  # noqa: E402
import _benchkit  # noqa: E402
from hbw_sync import batch as wire  # noqa: E402
from hbw_sync import codec, crypto, envelope  # noqa: E402
from hbw_sync.server import admin, relay  # noqa: E402
from hbw_sync.server.storage import sqlite as sq  # noqa: E402

FULL = {"devices": 50, "syncs": 2000, "passes": 5, "templates": 24}
QUICK = {"devices": 20, "syncs": 300, "passes": 3, "templates": 8}
OPS = 100
BUDGET = 20_000


def now_ms() -> int:
    return int(time.time() * 1000)


class Bench:
    """A relay data directory, its identity, one connection, enrolled synthetic devices with batches to send."""

    def __init__(self, tmp: Path, cfg: dict[str, Any]):
        info = admin.init(tmp / "relay", "Cost Team")
        self.data = tmp / "relay"
        self.team = bytes.fromhex(info["team_id"])
        self.conn = sq.connect(self.data / sq.DB_NAME)
        self.ident = relay.load_identity(self.data, self.conn)
        team_key = crypto.TeamKey.generate(1)
        templates = bd.make_templates(cfg["templates"], OPS)
        self.devs = [bd.SynthDevice.generate(i) for i in range(cfg["devices"])]
        per = -(-cfg["syncs"] * (cfg["passes"] + 2) // cfg["devices"])
        for k, d in enumerate(self.devs):
            d.build(self.team, team_key, templates, per)
            token = admin.invite(self.data, f"m{k // 2}", url="http://127.0.0.1:1").token
            body, _n = envelope.make_request(d.transport, d.device_id, "enroll", d.enroll_args(token), now_ms())
            self.txn(lambda c: relay.handle(c, self.ident, body, now_ms()))
        self.turn = 0

    def txn(self, fn: Callable[[Any], Any]) -> Any:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            out = fn(self.conn)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        return out

    def next_body(self) -> tuple[bytes, bd.SynthDevice]:
        d = self.devs[self.turn % len(self.devs)]
        self.turn += 1
        args = {"cursor": d.cursor, "budget": BUDGET, "batches": [d.batches[d.next]], "roster_v": d.roster_v}
        d.next += 1
        return envelope.make_request(d.transport, d.device_id, "sync", args, now_ms())[0], d

    def keys(self, device: bytes) -> relay.DeviceKeys | None:
        return relay.device_keys(self.conn, device)


def one_pass(b: Bench, n: int) -> dict[str, float]:
    """``n`` syncs; CPU ms per sync of each step (bodies are made and signed untimed)."""
    bodies = [b.next_body() for _ in range(n)]
    keys = {d.device_id: b.keys(d.device_id) for d in b.devs}
    spent = {"prepare": 0.0, "apply": 0.0, "commit": 0.0, "answer": 0.0}
    for body, d in bodies:
        now = now_ms()
        t0 = time.process_time()
        prep = relay.prepare(body, now, keys[d.device_id], b.team)
        t1 = time.process_time()
        b.conn.execute("BEGIN IMMEDIATE")
        result, _stats = relay.apply(b.conn, b.ident, prep, now)
        t2 = time.process_time()
        b.conn.execute("COMMIT")
        t3 = time.process_time()
        relay.answer(b.ident, prep, result, now)
        t4 = time.process_time()
        spent["prepare"] += t1 - t0
        spent["apply"] += t2 - t1
        spent["commit"] += t3 - t2
        spent["answer"] += t4 - t3
        d.cursor = result["cursor"]
        d.roster_v = result.get("roster_v", d.roster_v)
    out = {k: v * 1000 / n for k, v in spent.items()}
    out["total"] = sum(out.values())
    return out


def floors(b: Bench, n: int) -> dict[str, float]:
    """CPU ms per sync of what any relay must do: two signature checks, the routing decode, one signature."""
    d = b.devs[0]
    body, _n = envelope.make_request(d.transport, d.device_id, "sync", {"batches": [d.batches[0]]}, now_ms())
    head = envelope.peek_request(body)
    frame = wire.parse_batch(d.batches[0])
    t0 = time.process_time()
    for _ in range(n):
        head.verify(d.transport_pub)
        frame.verify(d.author_pub)
    t1 = time.process_time()
    for _ in range(n):
        codec.unpack(codec.decompress(frame.routing, cap=codec.DEFAULT_LIMITS.max_plain, dict_id=frame.dict_id))
    t2 = time.process_time()
    for _ in range(n):
        b.ident.key.sign(body[:200])
    t3 = time.process_time()
    return {"verify_x2": (t1 - t0) * 1000 / n, "routing_decode": (t2 - t1) * 1000 / n, "sign": (t3 - t2) * 1000 / n}


def run(cfg: dict[str, Any], profile: bool, log: Callable[..., None]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hbw-bench-cost-") as tmp:
        t0 = time.perf_counter()
        b = Bench(Path(tmp), cfg)
        log(f"set-up: {len(b.devs)} devices enrolled, batches built in {time.perf_counter() - t0:.1f} s")
        one_pass(b, cfg["syncs"])  # warm: cursors advance, the roster is fetched once
        passes = [one_pass(b, cfg["syncs"]) for _ in range(cfg["passes"])]
        steps = {k: round(statistics.median(p[k] for p in passes), 3) for k in passes[0]}
        floor = floors(b, cfg["syncs"])
        res: dict[str, Any] = {"devices": len(b.devs), "syncs_per_pass": cfg["syncs"], "passes": cfg["passes"],
                               "ms_per_sync": steps, "floor_ms": {k: round(v, 3) for k, v in floor.items()}}
        res["floor_ms"]["total"] = round(sum(floor.values()), 3)
        res["batches_stored"] = b.conn.execute("SELECT COUNT(*) FROM batches").fetchone()[0]
        if profile:
            prof = cProfile.Profile()
            prof.enable()
            one_pass(b, cfg["syncs"])
            prof.disable()
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(25)
            res["profile"] = s.getvalue()
        b.conn.close()
    return res


def markdown(res: dict[str, Any]) -> str:
    s, f = res["ms_per_sync"], res["floor_ms"]
    L = [f"Relay CPU per sync, in-process (no HTTP), real SQLite; {res['devices']} devices, {OPS}-op batches, "
         f"budget {BUDGET // 1000} KB; median of {res['passes']} passes of {res['syncs_per_pass']} syncs", "",
         "| step | CPU ms per sync |", "|---|---:|"]
    for k, what in (("prepare", "prepare: request signature, args, batch parse + author signature + routing check"),
                    ("apply", "apply: the transaction's statements (push and pull)"),
                    ("commit", "commit (SQLite, synchronous=FULL; the fsync wait is not CPU)"),
                    ("answer", "answer: sign the response")):
        L.append(f"| {what} | {s[k]} |")
    L.append(f"| **total** | **{s['total']}** |")
    L.append(f"| floor: Ed25519 verify x2 (request + batch) | {f['verify_x2']:.3f} |")
    L.append(f"| floor: routing decode (zstd + msgpack) | {f['routing_decode']:.3f} |")
    L.append(f"| floor: sign the answer | {f['sign']:.3f} |")
    L.append(f"| **floor total** | **{f['total']}** |")
    return "\n".join(L)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts, a smoke run")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--profile", action="store_true", help="also print cProfile's top functions")
    a = ap.parse_args()
    cfg = dict(QUICK if a.quick else FULL)
    res = run(cfg, a.profile, lambda *x: print(*x, file=sys.stderr, flush=True))
    if a.json:
        print(json.dumps(_benchkit.stamp(res, True, quick=a.quick), indent=2, default=str))
    else:
        print(markdown(res))
        if "profile" in res:
            print("\n" + res["profile"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
