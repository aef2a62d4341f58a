"""Many teams on PostgreSQL: one multi-team relay process against one relay process per team.

Run: .venv/bin/python scripts/bench_teams.py [--quick] [--json] [--teams K] [--per-team N] [--seconds S]

What it measures (issue 16: "one relay process serves many teams"), in one run, on one throwaway
PostgreSQL cluster (``tests/pg.py``: initdb + pg_ctl, unix socket, fsync off):

* ``one-team processes``: K teams, each ``hbw-relay serve`` on its own data directory and its own
  schema (today's layout: one process, one key, one pool of up to ``POOL_SIZE`` connections per team);
* ``multi-team process``: the same K teams in one multi-team directory (``init --multi``, ``team add``),
  served by ONE ``hbw-relay serve``: ``/t/<id>/v1`` per team, one shared connection pool.

The same load for both: N synthetic devices per team (``_bench_devices``), enrolled untimed, a
warm-up sync each (so every team is open), then a closed loop for S seconds where each sync pushes
one new 100-op batch and pulls (budget 20 KB), as in ``bench_relay_pg.py``. Per row: resident
memory of the relay processes after the timed phase (PSS summed: shared pages counted once; RSS
summed beside it), PostgreSQL client connections the relays hold (``pg_stat_activity``), syncs/s,
p50/p99, errors, and CPU per sync. Then what one open team costs a multi-team process: its PSS with
no team open and with ``open_teams`` (500; quick 50) opened. No target is enforced (exit 0 unless a row had errors); on a
shared 2-core machine throughput is the share of CPU the relay was given (``machine busy`` says).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
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
import _benchkit  # noqa: E402  (scripts/: what every --json records)
import bench_relay as br  # noqa: E402
from bench_relay_pg import BUDGET, OPS_PER_BATCH, pg_cpu, tree_cpu  # noqa: E402
from hbw_sync import crypto  # noqa: E402
from hbw_sync.server import admin, teams  # noqa: E402

FULL = {"teams": 50, "per_team": 2, "seconds": 20.0, "rounds": 200, "templates": 16, "open_teams": 500}
QUICK = {"teams": 50, "per_team": 1, "seconds": 3.0, "rounds": 20, "templates": 4, "open_teams": 50}


def pss(pid: int) -> int:
    """Proportional set size in bytes (shared pages split among the processes sharing them)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def pg_connections(pg: Any, database: str) -> int:
    """Client connections to ``database`` now, not counting this query's own."""
    import psycopg

    with psycopg.connect(pg.base_url(), autocommit=True) as c:
        return int(c.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
                             " AND backend_type = 'client backend'", (database,)).fetchone()[0])


def new_database(pg: Any, name: str) -> str:
    import psycopg

    with psycopg.connect(pg.base_url(), autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return pg.base_url().replace("/hbw?", f"/{name}?")


class TeamUnderLoad:
    """One team: its one-team data directory, the URL its devices use, and its synthetic devices."""

    def __init__(self, data: Path, info: dict[str, Any], first: int, cfg: dict):
        self.data = data
        self.team, self.relay_pub = bytes.fromhex(info["team_id"]), bytes.fromhex(info["relay_key"])
        self.url = ""
        team_key = crypto.TeamKey.generate(1)
        self.devs = [bd.SynthDevice.generate(first + i) for i in range(cfg["per_team"])]
        for d in self.devs:
            d.build(self.team, team_key, cfg["templates_built"], cfg["rounds"])


def serve_argv(data: Path) -> list[str]:
    return [sys.executable, "-m", "hbw_sync.server.cli", "serve", "--data", str(data), "--host", "127.0.0.1",
            "--port", "0", "--max-per-address", "4096"]


async def one_row(kind: str, tmp: Path, cfg: dict, log: Any) -> dict[str, Any]:
    pg, k = cfg["pg"], cfg["teams"]
    database = new_database(pg, f"bench_{kind.replace('-', '_')}")
    dbname = f"bench_{kind.replace('-', '_')}"
    root = tmp / kind
    root.mkdir()
    loads: list[TeamUnderLoad] = []
    servers: list[br.Server] = []
    if kind == "one-team":
        for i in range(k):
            data = root / f"t{i:03d}"
            import psycopg

            with psycopg.connect(database, autocommit=True) as c:
                c.execute(f"CREATE SCHEMA {teams.schema_for(f't{i:03d}')}")
            url = teams.team_url(database, f"t{i:03d}")  # search_path: its own schema
            loads.append(TeamUnderLoad(data, admin.init(data, f"Team {i}", database=url), i * cfg["per_team"], cfg))
            servers.append(br.Server(serve_argv(data), root / f"t{i:03d}.log"))
    else:
        teams.init_multi(root / "multi", database, None)
        for i in range(k):
            r = teams.add_team(root / "multi", f"Team {i}", f"t{i:03d}")
            loads.append(TeamUnderLoad(Path(r["data"]), r, i * cfg["per_team"], cfg))
        servers.append(br.Server(serve_argv(root / "multi"), root / "multi.log"))
    t_start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        urls = list(ex.map(lambda s: s.start(120), servers))
    started_s = time.perf_counter() - t_start
    for i, t in enumerate(loads):
        t.url = urls[i] if kind == "one-team" else f"{urls[0]}/t/t{i:03d}"
    n_devs = sum(len(t.devs) for t in loads)
    connector = aiohttp.TCPConnector(limit=n_devs + 16, keepalive_timeout=300)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
            enroll_errors = 0
            for t in loads:
                tokens = br.make_invites(t.data, t.url, len(t.devs))
                enroll_errors += await br.enroll_all(session, t.url, t.relay_pub, t.devs, tokens)
            st = br.LevelStats()
            await asyncio.gather(*(br.sync_once(session, t.url + "/v1", t.relay_pub, d, BUDGET, st, send=False)
                                   for t in loads for d in t.devs))  # warm-up, untimed: every team open
            st = br.LevelStats()
            deadline = time.monotonic() + cfg["seconds"]

            async def device(t: TeamUnderLoad, d: bd.SynthDevice) -> None:
                for _ in range(cfg["rounds"]):
                    if time.monotonic() >= deadline or d.next >= len(d.batches):
                        break
                    await br.sync_once(session, t.url + "/v1", t.relay_pub, d, BUDGET, st)

            pids = [s.proc.pid for s in servers]  # type: ignore[union-attr]
            cpu0, db0 = sum(tree_cpu(p) for p in pids), pg_cpu(pg)
            lg0, sys0 = time.process_time(), br.busy_cpu()
            t0 = time.perf_counter()
            await asyncio.gather(*(device(t, d) for t in loads for d in t.devs))
            elapsed = time.perf_counter() - t0
            lg1, sys1 = time.process_time(), br.busy_cpu()
            cpu1, db1 = sum(tree_cpu(p) for p in pids), pg_cpu(pg)
            mem_pss, mem_rss = sum(pss(p) for p in pids), sum(rss(p) for p in pids)
            conns = pg_connections(pg, dbname)
    finally:
        for s in servers:
            if s.proc is not None:
                s.stop()
    res = br.summarize(st, elapsed, OPS_PER_BATCH)
    syncs = max(st.requests, 1)
    res.update(kind=kind, teams=k, devices=n_devs, processes=len(servers), enroll_errors=enroll_errors,
               start_s=round(started_s, 1), syncs_s=round(st.requests / elapsed, 1),
               pss_mb=round(mem_pss / 2**20, 1), rss_mb=round(mem_rss / 2**20, 1),
               pss_mb_per_team=round(mem_pss / 2**20 / k, 2), pg_connections=conns,
               relay_ms_per_sync=round((cpu1 - cpu0) * 1000 / syncs, 2),
               pg_ms_per_sync=round((db1 - db0) * 1000 / syncs, 2),
               machine_busy=round((sys1 - sys0) / elapsed, 2), loadgen_cpu=round((lg1 - lg0) / elapsed, 2))
    log(f"{kind}: {k} teams, {len(servers)} processes, PSS {res['pss_mb']} MB (RSS {res['rss_mb']} MB), "
        f"{conns} PG connections, {res['syncs_s']} syncs/s p50 {res['p50_ms']} ms p99 {res['p99_ms']} ms, "
        f"errors {res['errors']}, machine busy {res['machine_busy']}")
    return res


def open_cost(cfg: dict, tmp: Path, log: Any) -> dict[str, Any]:
    """What an open team costs a multi-team process: PSS with none open, then with ``open_teams`` open
    (each opened by one junk request: the team is opened before its body is read, then refused 400)."""
    import urllib.error
    import urllib.request

    k = cfg["open_teams"]
    database = new_database(cfg["pg"], "bench_open")
    root = tmp / "open"
    teams.init_multi(root, database, None)
    for i in range(k):
        teams.add_team(root, f"Team {i}", f"t{i:04d}")
    server = br.Server(serve_argv(root) + ["--max-open-teams", str(k)], tmp / "open.log")
    url = server.start(120)
    try:
        pid = server.proc.pid  # type: ignore[union-attr]
        time.sleep(1.0)
        before = pss(pid)
        for i in range(k):
            try:
                urllib.request.urlopen(urllib.request.Request(f"{url}/t/t{i:04d}/v1", data=bytes(200)), timeout=60)
            except urllib.error.HTTPError:
                pass  # 400: not an hbw-sync message; the team was opened to say so
        time.sleep(1.0)
        after = pss(pid)
        with urllib.request.urlopen(url + "/healthz", timeout=60) as r:
            opened = json.loads(r.read())["teams"]["open"]
        conns = pg_connections(cfg["pg"], "bench_open")
    finally:
        server.stop()
    res = {"teams_open": opened, "pss_mb_none_open": round(before / 2**20, 1), "pss_mb_all_open": round(after / 2**20, 1),
           "kb_per_open_team": round((after - before) / 1024 / max(opened, 1), 1), "pg_connections": conns}
    log(f"open teams: {opened} open, PSS {res['pss_mb_none_open']} -> {res['pss_mb_all_open']} MB, "
        f"{res['kb_per_open_team']} KB per open team, {conns} PG connections")
    return res


async def bench(cfg: dict, tmp: Path, log: Any) -> dict[str, Any]:
    cfg["templates_built"] = bd.make_templates(cfg["templates"], OPS_PER_BATCH)
    rows = [await one_row("one-team", tmp, cfg, log), await one_row("multi-team", tmp, cfg, log)]
    return {"cpus": os.cpu_count(), "teams": cfg["teams"], "per_team": cfg["per_team"], "seconds": cfg["seconds"],
            "rows": rows, "open_cost": open_cost(cfg, tmp, log)}


def markdown(res: dict[str, Any]) -> str:
    L = [f"{res['teams']} teams x {res['per_team']} devices on one PostgreSQL, {res['cpus']} CPUs, "
         f"{res['seconds']} s closed loop", "",
         "| layout | relay processes | PSS MB (RSS MB) | PG connections | syncs/s | p50 ms | p99 ms | errors "
         "| relay ms/sync | PG ms/sync | machine busy | start s |",
         "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        L.append(f"| {r['kind']} | {r['processes']} | {r['pss_mb']} ({r['rss_mb']}) | {r['pg_connections']} | "
                 f"{r['syncs_s']} | {r['p50_ms']} | {r['p99_ms']} | {r['errors']} | {r['relay_ms_per_sync']} | "
                 f"{r['pg_ms_per_sync']} | {r['machine_busy']} | {r['start_s']} |")
    one, multi = res["rows"]
    if multi["pss_mb"]:
        L += ["", f"memory: x{one['pss_mb'] / multi['pss_mb']:.1f} less with one multi-team process; "
                  f"PG connections {one['pg_connections']} -> {multi['pg_connections']}; "
                  f"syncs/s x{multi['syncs_s'] / max(one['syncs_s'], 0.1):.2f}"]
    oc = res["open_cost"]
    L += [f"one multi-team process, {oc['teams_open']} teams opened: PSS {oc['pss_mb_none_open']} -> "
          f"{oc['pss_mb_all_open']} MB ({oc['kb_per_open_team']} KB per open team), {oc['pg_connections']} PG connections"]
    return "\n".join(L)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: 1 device per team, 3 s")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--teams", type=int)
    ap.add_argument("--per-team", type=int)
    ap.add_argument("--seconds", type=float)
    a = ap.parse_args()
    cfg = dict(QUICK if a.quick else FULL)
    for key in ("teams", "per_team", "seconds"):
        if getattr(a, key):
            cfg[key] = getattr(a, key)
    return _benchkit.run_on_throwaway_pg(bench, cfg, "hbw-bench-teams-", a.quick, a.json, markdown)


if __name__ == "__main__":
    sys.exit(main())
