"""Relay benchmark by storage backend: SQLite (one process) beside PostgreSQL with 1 and 2 relay processes.

Run: .venv/bin/python scripts/bench_relay_pg.py [--quick] [--json] [--devices N] [--seconds S]

What it measures (issue 16 item 5), in one run, with the same load generator and
the same kind of requests as ``bench_relay.py`` (whose helpers it uses): devices
do closed-loop sync rounds, each one signed ``sync`` carrying one new 100-op batch
and its pull cursor (budget 20 KB). For each row a fresh relay is made and the
devices are enrolled untimed; then ops/s, p50/p99 and errors over the timed phase,
and the CPU the relay processes and the load generator used.

* ``sqlite, 1 process``: the embedded default (one writer thread, group commit).
* ``postgres, 1 process`` and ``postgres, 2 processes``: ``hbw-relay serve`` on one
  throwaway PostgreSQL cluster (``tests/pg.py``: initdb + pg_ctl, unix socket,
  fsync off, so the database's disk is not what is measured); with 2 processes the
  devices are spread over both, as a load balancer would.

Honest limits: one team, so every transaction takes the same per-team advisory
lock (``storage/postgres.py``): two processes add CPU for HTTP, signature checks
and decoding, but the team's transactions still run one at a time. On a 2-core
machine the load generator, PostgreSQL and the relays share the cores; the
``loadgen CPU`` column says how much of them the generator took. No target is
enforced (exit 0 unless a row had errors).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_ROOT / "scripts"))
sys.path.insert(0, str(_ROOT / "tests"))

import aiohttp  # noqa: E402

import _bench_devices as bd  # noqa: E402
import bench_relay as br  # noqa: E402
from hbw_sync import crypto  # noqa: E402
from hbw_sync.server import admin  # noqa: E402
import _benchkit  # noqa: E402  (scripts/: what every --json records)

FULL = {"devices": 100, "seconds": 20.0, "rounds": 400, "templates": 24}
QUICK = {"devices": 20, "seconds": 4.0, "rounds": 60, "templates": 8}
OPS_PER_BATCH = 100
BUDGET = 20_000


async def one_row(name: str, data: Path, tmp: Path, workers: int, cfg: dict, log: Any) -> dict[str, Any]:
    info = admin.init(data, "Bench Team", database=(cfg["pg"].url() if name == "postgres" else None))
    team, relay_pub = bytes.fromhex(info["team_id"]), bytes.fromhex(info["relay_key"])
    team_key = crypto.TeamKey.generate(1)
    devs = [bd.SynthDevice.generate(i) for i in range(cfg["devices"])]
    for d in devs:
        d.build(team, team_key, cfg["templates_built"], cfg["rounds"])
    servers = [br.relay_server(data, tmp / f"{name}-{workers}-{k}.log") for k in range(workers)]
    urls = [s.start() for s in servers]
    connector = aiohttp.TCPConnector(limit=len(devs) + 16, keepalive_timeout=300)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
            tokens = br.make_invites(data, urls[0], len(devs))
            enroll_errors = await br.enroll_all(session, urls[0], relay_pub, devs, tokens)
            st = br.LevelStats()
            await asyncio.gather(*(br.sync_once(session, urls[i % workers] + "/v1", relay_pub, d, BUDGET, st,
                                                send=False) for i, d in enumerate(devs)))  # warm-up, untimed
            st = br.LevelStats()
            deadline = time.monotonic() + cfg["seconds"]

            async def device(i: int, d: bd.SynthDevice) -> None:
                for _ in range(cfg["rounds"]):
                    if time.monotonic() >= deadline or d.next >= len(d.batches):
                        break
                    await br.sync_once(session, urls[i % workers] + "/v1", relay_pub, d, BUDGET, st)

            cpu0 = [s.cpu() for s in servers]
            lg0, sys0 = time.process_time(), br.busy_cpu()
            t0 = time.perf_counter()
            await asyncio.gather(*(device(i, d) for i, d in enumerate(devs)))
            elapsed = time.perf_counter() - t0
            cpu1 = [s.cpu() for s in servers]
            lg1, sys1 = time.process_time(), br.busy_cpu()
    finally:
        for s in servers:
            s.stop()
    r = br.summarize(st, elapsed, OPS_PER_BATCH)
    relay_cpu = sum(sum(b.values()) - sum(a.values()) for a, b in zip(cpu0, cpu1))
    r.update(backend=name, workers=workers, devices=len(devs), enroll_errors=enroll_errors,
             relay_cpu=round(relay_cpu / elapsed, 2), loadgen_cpu=round((lg1 - lg0) / elapsed, 2),
             machine_busy=round((sys1 - sys0) / elapsed, 2))
    log(f"{name} x{workers}: {r['ops_s']:,} ops/s p50 {r['p50_ms']} ms p99 {r['p99_ms']} ms errors {r['errors']} "
        f"relay CPU {r['relay_cpu']} loadgen CPU {r['loadgen_cpu']}")
    return r


async def bench(cfg: dict, tmp: Path, log: Any) -> dict[str, Any]:
    cfg["templates_built"] = bd.make_templates(cfg["templates"], OPS_PER_BATCH)
    rows = []
    for name, workers in (("sqlite", 1), ("postgres", 1), ("postgres", 2)):
        rows.append(await one_row(name, tmp / f"{name}-{workers}", tmp, workers, cfg, log))
    return {"cpus": os.cpu_count(), "devices": cfg["devices"], "seconds": cfg["seconds"], "rows": rows}


def markdown(res: dict[str, Any]) -> str:
    L = [f"Relay by storage backend, {res['cpus']} CPUs, loopback, {res['devices']} devices, {OPS_PER_BATCH}-op "
         f"batches, closed loop, {res['seconds']} s per row", "",
         "| run | syncs | ops/s | p50 ms | p99 ms | errors | relay CPU (cores) | loadgen CPU | machine busy |",
         "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        L.append(f"| {r['backend']}, {r['workers']} process{'es' if r['workers'] > 1 else ''} | {r['requests']} | "
                 f"{r['ops_s']:,} | {r['p50_ms']} | {r['p99_ms']} | {r['errors']} | {r['relay_cpu']} | "
                 f"{r['loadgen_cpu']} | {r['machine_busy']} |")
    one, two = res["rows"][1], res["rows"][2]
    if one["ops_s"]:
        L += ["", f"PostgreSQL 2 processes / 1 process: x{two['ops_s'] / one['ops_s']:.2f}"]
    return "\n".join(L)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts, a smoke run")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--devices", type=int)
    ap.add_argument("--seconds", type=float)
    a = ap.parse_args()
    cfg = dict(QUICK if a.quick else FULL)
    if a.devices:
        cfg["devices"] = a.devices
    if a.seconds:
        cfg["seconds"] = a.seconds
    from pg import PgServer  # tests/pg.py: a throwaway cluster

    cfg["pg"] = PgServer()
    log = (lambda *x: print(*x, file=sys.stderr, flush=True))
    try:
        with tempfile.TemporaryDirectory(prefix="hbw-bench-pg-") as tmp:
            res = asyncio.run(bench(cfg, Path(tmp), log))
    finally:
        cfg["pg"].stop()
    ok = all(r["errors"] == 0 and r["enroll_errors"] == 0 for r in res["rows"])
    print(json.dumps(_benchkit.stamp(res, ok, quick=a.quick), indent=2, default=str) if a.json else markdown(res))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
