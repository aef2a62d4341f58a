"""Relay benchmark by storage backend: SQLite beside PostgreSQL with 1 and 2 workers, 1 or K teams.

Run: .venv/bin/python scripts/bench_relay_pg.py [--quick] [--json] [--devices N] [--seconds S] [--teams K]
     [--sqlite-workers N]

What it measures (issue 16 item 5), in one run, with the same load generator and
the same kind of requests as ``bench_relay.py`` (whose helpers it uses): devices
do closed-loop sync rounds, each one signed ``sync`` carrying one new 100-op batch
and its pull cursor (budget 20 KB). For each row a fresh relay is made and the
devices are enrolled untimed; then ops/s, p50/p99 and errors over the timed phase,
and the CPU the relay processes and the load generator used.

* ``aiohttp echo``: the ceiling of this load generator on this machine (same signed requests).
* ``sqlite, 1 process``: the embedded default (one writer thread, group commit); and with one
  checker process (``serve --check-processes 1``: signatures and batches checked beside it);
  and ``x N workers`` (``--sqlite-workers``, default 2): N processes on one relay.db taking the
  writer's turn (``storage/sqlite.WriteLock``), everything else in parallel.
* ``postgres, 1 team x 1 worker`` and ``x 2 workers``: ``hbw-relay serve --workers N`` on one
  throwaway PostgreSQL cluster (``tests/pg.py``: initdb + pg_ctl, unix socket, fsync off, so
  the database's disk is not what is measured); the kernel spreads connections (SO_REUSEPORT).
* with ``--teams K``: K teams (one relay, schema and advisory lock each), devices spread evenly,
  with 1 and 2 workers each: different teams' transactions do not wait for each other.

Per row, besides ops/s and latency: the CPU the relay processes (with their workers), the
PostgreSQL cluster and the load generator used, per second and per sync; PostgreSQL
transactions per sync (pg_stat_database); request and response sizes. Those per-sync costs
are what the README's sizing section uses.

Honest limits: on a 2-core machine the load generator, PostgreSQL and the relays share the
cores (``loadgen CPU`` says what the generator took, ``machine busy`` what everything took,
other jobs included). No target is enforced (exit 0 unless a row had errors).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
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


def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by process ``pid`` and all its descendants (``serve --workers`` spawns them)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / br.CLK_TCK
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return total


def pg_cpu(pg: Any) -> float:
    """CPU seconds of the PostgreSQL cluster (postmaster and its backends) so far."""
    pid = int((pg.dir / "db" / "postmaster.pid").read_text().split()[0])
    return tree_cpu(pid)


def pg_commits(pg: Any) -> int:
    """Transactions committed in the bench database so far (pg_stat_database; includes the stats query)."""
    import psycopg

    with psycopg.connect(pg.base_url(), autocommit=True) as c:
        c.execute("SELECT pg_stat_clear_snapshot()")
        return int(c.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = 'hbw'").fetchone()[0])


class Relay:
    """One team's relay: its data directory, its devices, and ``serve --workers W`` on one port."""

    def __init__(self, name: str, data: Path, log: Path, workers: int, n_devices: int, first: int, cfg: dict,
                 check: int = 0):
        info = admin.init(data, f"Bench Team {name}", database=(cfg["pg"].url() if name != "sqlite" else None))
        self.data = data
        self.team, self.relay_pub = bytes.fromhex(info["team_id"]), bytes.fromhex(info["relay_key"])
        team_key = crypto.TeamKey.generate(1)
        self.devs = [bd.SynthDevice.generate(first + i) for i in range(n_devices)]
        for d in self.devs:
            d.build(self.team, team_key, cfg["templates_built"], cfg["rounds"])
        args = ["serve", "--data", str(data), "--host", "127.0.0.1", "--port", "0", "--max-per-address", "4096",
                "--workers", str(workers), "--check-processes", str(check)]
        self.server = br.Server([sys.executable, "-m", "hbw_sync.server.cli"] + args, log)
        self.url = ""

    def start(self) -> str:
        self.url = self.server.start()
        return self.url


async def one_row(name: str, tmp: Path, workers: int, teams: int, cfg: dict, log: Any,
                  check: int = 0) -> dict[str, Any]:
    """Fresh relays (one per team, each ``serve --workers W``), devices spread evenly; one timed phase."""
    tag = f"{name}-t{teams}-w{workers}-c{check}"
    per = [cfg["devices"] // teams + (1 if k < cfg["devices"] % teams else 0) for k in range(teams)]
    relays = [Relay(name, tmp / f"{tag}-{k}", tmp / f"{tag}-{k}.log", workers, per[k], sum(per[:k]), cfg, check)
              for k in range(teams)]
    connector = aiohttp.TCPConnector(limit=cfg["devices"] + 16, keepalive_timeout=300)
    try:
        for r in relays:
            r.start()
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
            enroll_errors = 0
            for r in relays:
                tokens = br.make_invites(r.data, r.url, len(r.devs))
                enroll_errors += await br.enroll_all(session, r.url, r.relay_pub, r.devs, tokens)
            st = br.LevelStats()
            await asyncio.gather(*(br.sync_once(session, r.url + "/v1", r.relay_pub, d, BUDGET, st, send=False)
                                   for r in relays for d in r.devs))  # warm-up, untimed: connections, rosters
            st = br.LevelStats()
            deadline = time.monotonic() + cfg["seconds"]

            async def device(r: Relay, d: bd.SynthDevice) -> None:
                for _ in range(cfg["rounds"]):
                    if time.monotonic() >= deadline or d.next >= len(d.batches):
                        break
                    await br.sync_once(session, r.url + "/v1", r.relay_pub, d, BUDGET, st)

            pids = [r.server.proc.pid for r in relays]  # type: ignore[union-attr]
            cpu0 = sum(tree_cpu(p) for p in pids)
            db0 = pg_cpu(cfg["pg"]) if name == "postgres" else 0.0
            tx0 = pg_commits(cfg["pg"]) if name == "postgres" else 0
            lg0, sys0 = time.process_time(), br.busy_cpu()
            t0 = time.perf_counter()
            await asyncio.gather(*(device(r, d) for r in relays for d in r.devs))
            elapsed = time.perf_counter() - t0
            lg1, sys1 = time.process_time(), br.busy_cpu()
            cpu1 = sum(tree_cpu(p) for p in pids)
            db1 = pg_cpu(cfg["pg"]) if name == "postgres" else 0.0
            tx1 = pg_commits(cfg["pg"]) if name == "postgres" else 0
    finally:
        for r in relays:
            if r.url:
                r.server.stop()
    res = br.summarize(st, elapsed, OPS_PER_BATCH)
    syncs = max(st.requests, 1)
    res.update(backend=name, workers=workers, teams=teams, check=check, devices=cfg["devices"],
               enroll_errors=enroll_errors,
               syncs_s=round(st.requests / elapsed, 1),
               relay_cpu=round((cpu1 - cpu0) / elapsed, 2), pg_cpu=round((db1 - db0) / elapsed, 2),
               loadgen_cpu=round((lg1 - lg0) / elapsed, 2), machine_busy=round((sys1 - sys0) / elapsed, 2),
               relay_ms_per_sync=round((cpu1 - cpu0) * 1000 / syncs, 2),
               pg_ms_per_sync=round((db1 - db0) * 1000 / syncs, 2),
               loadgen_ms_per_sync=round((lg1 - lg0) * 1000 / syncs, 2),
               pg_xacts_per_sync=round((tx1 - tx0 - 1) / syncs, 2) if name == "postgres" else None)
    log(f"{name} teams {teams} x{workers} check {check}: {res['ops_s']:,} ops/s ({res['syncs_s']} syncs/s) p50 {res['p50_ms']} ms "
        f"p99 {res['p99_ms']} ms errors {res['errors']} relay CPU {res['relay_cpu']} PG CPU {res['pg_cpu']} "
        f"loadgen CPU {res['loadgen_cpu']} machine {res['machine_busy']}")
    return res


async def echo_row(cfg: dict, tmp: Path, log: Any) -> dict[str, Any]:
    """The ceiling of this load generator: the same signed sync requests to an aiohttp endpoint that
    reads each body and answers two bytes (``bench_relay.ECHO_SERVER``), responses not verified."""
    team, team_key = bytes(8), crypto.TeamKey.generate(1)
    devs = [bd.SynthDevice.generate(i) for i in range(cfg["devices"])]
    for d in devs:
        d.build(team, team_key, cfg["templates_built"], cfg["rounds"])
    echo = br.Server([sys.executable, "-c", br.ECHO_SERVER], tmp / "echo.log")
    url = echo.start()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=len(devs) + 16),
                                         timeout=aiohttp.ClientTimeout(total=120)) as session:
            await br.warm_up(session, url, bytes(32), devs, BUDGET, parse=False)
            cpu0, lg0, sys0 = tree_cpu(echo.proc.pid), time.process_time(), br.busy_cpu()  # type: ignore[union-attr]
            st, elapsed = await br.run_level(session, url, bytes(32), devs, 10**6, cfg["seconds"], BUDGET, parse=False)
            cpu1, lg1, sys1 = tree_cpu(echo.proc.pid), time.process_time(), br.busy_cpu()  # type: ignore[union-attr]
    finally:
        echo.stop()
    st.acked = st.requests
    res = br.summarize(st, elapsed, OPS_PER_BATCH)
    syncs = max(st.requests, 1)
    res.update(backend="echo", workers=1, teams=1, check=0, devices=len(devs), enroll_errors=0,
               syncs_s=round(st.requests / elapsed, 1), relay_cpu=round((cpu1 - cpu0) / elapsed, 2), pg_cpu=0.0,
               loadgen_cpu=round((lg1 - lg0) / elapsed, 2), machine_busy=round((sys1 - sys0) / elapsed, 2),
               relay_ms_per_sync=round((cpu1 - cpu0) * 1000 / syncs, 2), pg_ms_per_sync=0.0,
               loadgen_ms_per_sync=round((lg1 - lg0) * 1000 / syncs, 2), pg_xacts_per_sync=None)
    log(f"echo: {res['ops_s']:,} ops/s ({res['syncs_s']} requests/s) relay CPU {res['relay_cpu']} "
        f"loadgen CPU {res['loadgen_cpu']}")
    return res


async def bench(cfg: dict, tmp: Path, log: Any) -> dict[str, Any]:
    cfg["templates_built"] = bd.make_templates(cfg["templates"], OPS_PER_BATCH)
    plan = [("sqlite", 1, 1, 0), ("sqlite", 1, 1, 1), ("sqlite", cfg["sqlite_workers"], 1, 0),
            ("postgres", 1, 1, 0), ("postgres", 2, 1, 0)]
    if cfg["teams"] > 1:
        plan += [("postgres", 1, cfg["teams"], 0), ("postgres", 2, cfg["teams"], 0)]
    rows = [await echo_row(cfg, tmp, log)]
    for name, workers, teams, check in plan:
        rows.append(await one_row(name, tmp, workers, teams, cfg, log, check))
    return {"cpus": os.cpu_count(), "devices": cfg["devices"], "seconds": cfg["seconds"], "rows": rows}


def markdown(res: dict[str, Any]) -> str:
    L = [f"Relay by storage backend, {res['cpus']} CPUs, loopback, {res['devices']} devices, {OPS_PER_BATCH}-op "
         f"batches, closed loop, {res['seconds']} s per row", "",
         "| run | syncs/s | ops/s | p50 ms | p99 ms | errors | relay CPU | PG CPU | loadgen CPU | machine busy "
         "| relay ms/sync | PG ms/sync | loadgen ms/sync | PG xacts/sync | KB up/down per sync |",
         "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        what = ("aiohttp echo (ceiling of this load generator)" if r["backend"] == "echo" else
                f"{r['backend']}, {r['teams']} team{'s' if r['teams'] > 1 else ''} x {r['workers']} "
                f"worker{'s' if r['workers'] > 1 else ''}"
                + (f", {r['check']} checker process" if r["check"] else ""))
        L.append(f"| {what} | {r['syncs_s']} | {r['ops_s']:,} | {r['p50_ms']} | {r['p99_ms']} | {r['errors']} | "
                 f"{r['relay_cpu']} | {r['pg_cpu']} | {r['loadgen_cpu']} | {r['machine_busy']} | "
                 f"{r['relay_ms_per_sync']} | {r['pg_ms_per_sync']} | {r['loadgen_ms_per_sync']} | "
                 f"{r['pg_xacts_per_sync'] if r['pg_xacts_per_sync'] is not None else '-'} | "
                 f"{r['request_kb']}/{r['response_kb']} |")
    by = {(r["backend"], r["teams"], r["workers"]): r for r in res["rows"] if not r["check"]}
    echo, lite = by[("echo", 1, 1)], by[("sqlite", 1, 1)]
    checked = [r for r in res["rows"] if r["check"]]
    L.append("")
    if echo["ops_s"]:
        L.append(f"SQLite relay / echo ceiling: {lite['ops_s'] / echo['ops_s']:.0%} (target >= 50%)")
        for (b, t, w), r in sorted(by.items()):
            if b == "sqlite" and w > 1:
                L.append(f"SQLite relay, {w} workers / echo ceiling: {r['ops_s'] / echo['ops_s']:.0%}; "
                         f"x{r['ops_s'] / max(lite['ops_s'], 1):.2f} of 1 process")
        for r in checked:
            L.append(f"SQLite relay with {r['check']} checker process / echo ceiling: {r['ops_s'] / echo['ops_s']:.0%}")
    for teams in sorted({t for _b, t, _w in by if _b == "postgres"}):
        one, two = by.get(("postgres", teams, 1)), by.get(("postgres", teams, 2))
        if one and two and one["ops_s"]:
            L.append(f"PostgreSQL, {teams} team(s): 2 workers / 1 worker: x{two['ops_s'] / one['ops_s']:.2f} "
                     "(target >= 1.5)")
    return "\n".join(L)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts, a smoke run")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--devices", type=int)
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--teams", type=int, default=1,
                    help="also rows with K teams (one relay, schema and lock each), devices spread over them")
    ap.add_argument("--sqlite-workers", type=int, default=2,
                    help="the row of one SQLite relay with this many workers (serve --workers N; default 2)")
    a = ap.parse_args()
    cfg = dict(QUICK if a.quick else FULL)
    if a.devices:
        cfg["devices"] = a.devices
    if a.seconds:
        cfg["seconds"] = a.seconds
    cfg["teams"] = max(1, a.teams)
    cfg["sqlite_workers"] = max(2, a.sqlite_workers)
    return _benchkit.run_on_throwaway_pg(bench, cfg, "hbw-bench-pg-", a.quick, a.json, markdown)


if __name__ == "__main__":
    sys.exit(main())
