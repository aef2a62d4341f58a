"""Relay benchmark: many devices syncing against one relay on loopback.

Run: .venv/bin/python scripts/bench_relay.py [--quick] [--json] [--profile]

What it measures, in one run:

* **Throughput and latency under load** at 10, 100 and 1,000 concurrent devices:
  each device does sync rounds back to back (closed loop, no think time), each
  round one signed ``sync`` request carrying one new 100-op batch plus its pull
  cursor (budget 20 KB, so every response also hands out ~3 batches of the
  others). Batches/s, ops/s, p50/p99 latency, errors, the pull volume, and the
  relay's peak RSS (VmHWM, reset before each level), plus the CPU the relay's
  event-loop thread and its other threads (the SQLite writer) used.
  Each level is bounded by a round count *and* a time limit.
* **Baselines side by side**, measured in the same run on the same requests:
  an aiohttp echo endpoint (same load generator, same signed bodies: the
  HTTP + load-generator ceiling), ``relay.handle`` in-process through the real
  ``db.Writer`` without HTTP (the writer ceiling), and raw SQLite inserts of the
  same batch blobs through one connection (WAL, synchronous=FULL, 64 per commit).
* **History size**: latency of a small sync (1 batch of 1 op, cursor at the
  head) with 10,000 and with 1,000,000 ops already stored (rows written
  straight into the relay's ``batches`` table while it is stopped). The cost
  of a sync must follow what is new, not the size of the history.

The relay runs as a subprocess (``python -m hbw_sync.server.cli serve --port 0``,
the production entry point, access log on, written to a file) so the load
generator does not share its GIL and its memory can be read from /proc.
Devices are synthetic (no client store): real Ed25519/X25519 keys, enrolled
with real one-time invites through the ``enroll`` action. Their batches are
built before the timed phase (``_bench_devices.py``: byte-identical to
``encode_batch`` at the client's zstd level); each request is signed in the
loop with a fresh nonce and the current time, and each response's signature is
verified, as a device does.

Targets (issue): >= 50,000 ops/s ingested at 100 devices with 100-op batches,
p99 < 250 ms there, no errors at 1,000 devices, and a small sync as fast with
1M ops stored as with 10k. Note that in a closed loop latency ~ devices /
throughput (Little's law): p99 < 250 ms at 100 devices needs > 400 syncs/s.

``--profile`` runs the relay under cProfile (event-loop thread and writer
thread separately) and prints where the time goes; figures are then slower.
Exit status 1 if a target fails. Figures include the CPU used by other jobs on
the machine in the "other jobs CPU" column: on a shared 2-core box they move a lot.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_ROOT))
sys.path.insert(0, str(_ROOT / "scripts"))

import aiohttp  # noqa: E402

import _bench_devices as bd  # noqa: E402
from hbw_sync import codec, crypto, envelope  # noqa: E402
from hbw_sync.server import admin, db, relay  # noqa: E402
import _benchkit  # noqa: E402  (scripts/: what every --json records)

CLK_TCK = os.sysconf("SC_CLK_TCK")

FULL = {
    # (concurrent devices, max rounds per device); every level also stops after level_seconds
    "levels": [(10, 600), (100, 150), (1000, 20)],
    "level_seconds": 20.0,
    "ops_per_batch": 100,
    "budget": 20_000,
    "templates": 48,
    "baseline_seconds": 8.0,
    "baseline_devices": 100,
    "writer_requests": 3000,
    "sqlite_batches": 6000,
    "history_ops": [10_000, 1_000_000],
    "history_probes": 300,
    "history_seconds": 20.0,
}
QUICK = {
    "levels": [(10, 100), (100, 10)],
    "level_seconds": 5.0,
    "ops_per_batch": 100,
    "budget": 20_000,
    "templates": 12,
    "baseline_seconds": 2.0,
    "baseline_devices": 50,
    "writer_requests": 500,
    "sqlite_batches": 1000,
    "history_ops": [1_000, 100_000],
    "history_probes": 40,
    "history_seconds": 5.0,
}
TARGET_OPS_S = 50_000
TARGET_P99_MS = 250.0
TARGET_LEVEL = 100
HISTORY_RATIO = 1.5  # p50 at the large history may be at most this times the small one (+1 ms of noise)


def now_ms() -> int:
    return int(time.time() * 1000)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))]


# -- processes ------------------------------------------------------------------------------------

ECHO_SERVER = r"""
import asyncio, sys
from aiohttp import web
async def handler(request):
    await request.read()
    return web.Response(body=b"ok", content_type="application/x-hbw")
async def main():
    app = web.Application(client_max_size=40 * 1024 * 1024)
    app.router.add_post("/v1", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print(f"echo listening on http://127.0.0.1:{port}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()
asyncio.run(main())
"""

PROFILED_RELAY = r"""
import cProfile, sys
from hbw_sync.server import cli, db
out = sys.argv[1]
_orig = db.Writer._run
def _run(self):
    p = cProfile.Profile()
    p.enable()
    try:
        _orig(self)
    finally:
        p.disable()
        p.dump_stats(out + ".writer")
db.Writer._run = _run
p = cProfile.Profile()
p.enable()
try:
    cli.cli(sys.argv[2:], prog_name="hbw-relay", standalone_mode=False)
finally:
    p.disable()
    p.dump_stats(out + ".main")
"""


class Server:
    """A server subprocess that prints 'listening on URL' on stderr; its RSS and CPU from /proc."""

    def __init__(self, argv: list[str], log: Path):
        self.argv, self.log = argv, log
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout: float = 60) -> str:
        self._logf = open(self.log, "ab")
        start = self.log.stat().st_size
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._logf, stderr=self._logf,
                                     cwd=str(_ROOT))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log, "rb") as f:
                f.seek(start)
                m = re.search(rb"listening on (http://\S+)", f.read())
            if m:
                self.url = m.group(1).decode()
                return self.url
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self._logf.close()

    def _status(self, key: str) -> int:
        assert self.proc
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def peak_rss(self) -> int:
        return self._status("VmHWM")

    def rss(self) -> int:
        return self._status("VmRSS")

    def reset_peak(self) -> bool:
        """Reset VmHWM to the current RSS (Linux >= 4.0) so a level's peak is its own."""
        assert self.proc
        try:
            Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far: by the main (event loop) thread and by all other threads (the writer)."""
        assert self.proc
        pid = self.proc.pid
        main = other = 0.0
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            t = (int(fields[11]) + int(fields[12])) / CLK_TCK
            if int(task.name) == pid:
                main += t
            else:
                other += t
        return {"main": main, "other": other}


def relay_server(data: Path, log: Path, profile: Path | None = None) -> Server:
    args = ["serve", "--data", str(data), "--host", "127.0.0.1", "--port", "0", "--max-per-address", "4096"]
    if profile:
        return Server([sys.executable, "-c", PROFILED_RELAY, str(profile)] + args, log)
    return Server([sys.executable, "-m", "hbw_sync.server.cli"] + args, log)


def busy_cpu() -> float:
    """CPU seconds the whole machine spent busy (all processes, all cores) so far, from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / CLK_TCK  # minus idle and iowait


def listen_overflows() -> int:
    """TcpExt ListenOverflows + ListenDrops: connections refused or SYNs dropped at a full accept queue."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return 0
    for head, vals in zip(lines[::2], lines[1::2]):
        if head.startswith("TcpExt:"):
            d = dict(zip(head.split()[1:], map(int, vals.split()[1:])))
            return d.get("ListenOverflows", 0) + d.get("ListenDrops", 0)
    return 0


async def scrape_commits(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url + "/metrics") as r:
        text = await r.text()
    m = re.search(r"^hbw_db_commits_total (\d+)", text, re.M)
    return int(m.group(1)) if m else 0


# -- enrollment -------------------------------------------------------------------------------------


def make_invites(data: Path, url: str, n: int, first: int = 0) -> list[bytes]:
    # Two devices per member, as members may have several; each invite is usable once.
    return [admin.invite(data, f"m{(first + i) // 2}", url=url).token for i in range(n)]


async def enroll_all(session: aiohttp.ClientSession, url: str, relay_pub: bytes, devs: list[bd.SynthDevice],
                     tokens: list[bytes], parallel: int = 64) -> int:
    sem = asyncio.Semaphore(parallel)
    errors = 0

    async def one(d: bd.SynthDevice, token: bytes) -> None:
        nonlocal errors
        async with sem:
            body, nonce = envelope.make_request(d.transport, d.device_id, "enroll", d.enroll_args(token), now_ms())
            async with session.post(url + "/v1", data=body, headers={"Content-Type": "application/x-hbw"}) as r:
                raw = await r.read()
                if r.status != 200:
                    errors += 1
                    print(f"enroll failed: {r.status} {raw[:200]!r}", file=sys.stderr)
                    return
            envelope.parse_response(raw, relay_pub, nonce)

    await asyncio.gather(*(one(d, t) for d, t in zip(devs, tokens)))
    return errors


# -- the load loop ----------------------------------------------------------------------------------


class LevelStats:
    def __init__(self) -> None:
        self.lat: list[float] = []
        self.errors: Counter = Counter()
        self.acked = 0
        self.requests = 0
        self.pulled = 0
        self.pulled_bytes = 0
        self.sent_bytes = 0
        self.recv_bytes = 0


async def sync_once(session: aiohttp.ClientSession, url: str, relay_pub: bytes, d: bd.SynthDevice, budget: int,
                    st: LevelStats, send: bool = True, parse: bool = True, record: bool = True) -> None:
    """One sync round trip of device ``d``: its next batch (if ``send``) and its cursor."""
    batches = [d.batches[d.next]] if send else []
    args = {"cursor": d.cursor, "budget": budget, "batches": batches, "roster_v": d.roster_v}
    body, nonce = envelope.make_request(d.transport, d.device_id, "sync", args, now_ms())
    t0 = time.perf_counter()
    try:
        async with session.post(url, data=body, headers={"Content-Type": "application/x-hbw"}) as resp:
            raw = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
        st.errors[f"transport:{type(e).__name__}"] += 1
        return
    dt = time.perf_counter() - t0
    if record:
        st.lat.append(dt)
        st.requests += 1
        st.sent_bytes += len(body)
        st.recv_bytes += len(raw)
    if status != 200:
        try:
            code = json.loads(raw)["error"].get("code", "?")
        except (ValueError, KeyError, TypeError, AttributeError):
            code = "?"
        st.errors[f"http {status} {code}"] += 1
        return
    if not parse:
        if send:
            d.next = (d.next + 1) % len(d.batches)
        return
    try:
        res = envelope.parse_response(raw, relay_pub, nonce).result
    except Exception as e:  # noqa: BLE001 - counted as an error of this request
        st.errors[f"response:{type(e).__name__}"] += 1
        return
    for _seq, _err in res.get("rejects", []):
        st.errors[f"rejected:{_err.get('code')}"] += 1
    if send and res.get("acks"):
        d.next += 1
        if record:
            st.acked += len(res["acks"])
    d.cursor = res.get("cursor", d.cursor)
    if "roster_v" in res:
        d.roster_v = res["roster_v"]
    if record:
        st.pulled += len(res.get("batches", ()))
        st.pulled_bytes += sum(len(b[3]) for b in res.get("batches", ()))


async def run_level(session: aiohttp.ClientSession, url: str, relay_pub: bytes, devs: list[bd.SynthDevice],
                    rounds: int, seconds: float, budget: int, parse: bool = True) -> tuple[LevelStats, float]:
    st = LevelStats()
    deadline = time.monotonic() + seconds

    async def device(d: bd.SynthDevice) -> None:
        for _ in range(rounds):
            if time.monotonic() >= deadline or d.next >= len(d.batches):
                break
            await sync_once(session, url + "/v1", relay_pub, d, budget, st, parse=parse)

    t0 = time.perf_counter()
    await asyncio.gather(*(device(d) for d in devs))
    return st, time.perf_counter() - t0


async def warm_up(session: aiohttp.ClientSession, url: str, relay_pub: bytes, devs: list[bd.SynthDevice],
                  budget: int, parse: bool = True) -> LevelStats:
    """One untimed sync without batches per device: opens its connection, fetches the roster version."""
    st = LevelStats()
    await asyncio.gather(*(sync_once(session, url + "/v1", relay_pub, d, budget, st, send=False, parse=parse)
                           for d in devs))
    return st


def summarize(st: LevelStats, elapsed: float, ops_per_batch: int) -> dict[str, Any]:
    lat_ms = [x * 1000 for x in st.lat]
    return {
        "requests": st.requests,
        "seconds": round(elapsed, 2),
        "batches_s": round(st.acked / elapsed, 1) if elapsed else 0,
        "ops_s": round(st.acked * ops_per_batch / elapsed) if elapsed else 0,
        "requests_s": round(st.requests / elapsed, 1) if elapsed else 0,
        "p50_ms": round(pct(lat_ms, 50), 1),
        "p99_ms": round(pct(lat_ms, 99), 1),
        "max_ms": round(max(lat_ms), 1) if lat_ms else float("nan"),
        "errors": sum(st.errors.values()),
        "error_kinds": dict(st.errors),
        "pulled_batches_per_sync": round(st.pulled / st.requests, 2) if st.requests else 0,
        "pulled_kb_per_sync": round(st.pulled_bytes / 1024 / st.requests, 1) if st.requests else 0,
        "request_kb": round(st.sent_bytes / 1024 / st.requests, 1) if st.requests else 0,
        "response_kb": round(st.recv_bytes / 1024 / st.requests, 1) if st.requests else 0,
    }


# -- baselines without the relay ---------------------------------------------------------------------


def sqlite_baseline(path: Path, blobs: list[tuple[bytes, int, bytes]], ops_per_batch: int) -> dict[str, Any]:
    """Raw inserts of the same batch blobs into the relay's schema, one connection, 64 per commit."""
    db.create_schema(path)
    conn = db.connect(path)  # WAL + synchronous=FULL, as the relay
    t0 = time.perf_counter()
    for i in range(0, len(blobs), db.MAX_GROUP):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO batches (device, seq, received_ms, size, n_ops, epoch, data) VALUES (?, ?, ?, ?, 100, 1, ?)",
            [(dev, seq, now_ms(), len(data), data) for dev, seq, data in blobs[i : i + db.MAX_GROUP]],
        )
        conn.execute("COMMIT")
    dt = time.perf_counter() - t0
    conn.close()
    return {"batches": len(blobs), "seconds": round(dt, 2), "batches_s": round(len(blobs) / dt),
            "ops_s": round(len(blobs) * ops_per_batch / dt)}


def writer_baseline(data_copy: Path, key_file: Path, bodies: list[bytes], ops_per_batch: int) -> dict[str, Any]:
    """relay.handle for the same kind of sync requests through the real db.Writer, no HTTP, no event loop."""
    conn = db.connect(data_copy)
    ident = relay.RelayIdentity(relay.meta(conn, "team"), relay.meta(conn, "team_name"),
                                crypto.DeviceKey(key_file.read_bytes()))
    conn.close()
    w = db.Writer(data_copy)
    w.start()
    c0 = w.commits
    t0, pt0, sys0 = time.perf_counter(), time.process_time(), busy_cpu()
    futs = [w.submit(relay.handle, ident, b, now_ms()) for b in bodies]
    ok = errors = acked = 0
    for f in futs:
        try:
            _out, stats = f.result()
            ok += 1
            acked += stats["batches_in"]
        except Exception:  # noqa: BLE001
            errors += 1
    dt = time.perf_counter() - t0
    other = max(0.0, busy_cpu() - sys0 - (time.process_time() - pt0)) / dt
    commits = w.commits - c0
    w.stop()
    return {"requests": len(bodies), "seconds": round(dt, 2), "requests_s": round(len(bodies) / dt),
            "batches_s": round(acked / dt), "ops_s": round(acked * ops_per_batch / dt), "errors": errors,
            "ms_per_request": round(dt / len(bodies) * 1000, 3), "group": round(len(bodies) / max(1, commits), 1),
            "other_cpu": round(other, 2)}


# -- history size -------------------------------------------------------------------------------------


def fill_history(dbfile: Path, blobs: list[bytes], n_batches: int, ops_per_batch: int, start_seq: int) -> None:
    """Append ``n_batches`` stored batches straight into the relay's table (relay stopped)."""
    conn = sqlite3.connect(dbfile, isolation_level=None)
    fillers = [os.urandom(8) for _ in range(20)]
    t = now_ms() - 86_400_000
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO batches (device, seq, received_ms, size, n_ops, epoch, data) VALUES (?, ?, ?, ?, ?, 1, ?)",
        ((fillers[i % 20], start_seq + i // 20, t, len(blobs[i % len(blobs)]), ops_per_batch, blobs[i % len(blobs)])
         for i in range(n_batches)),
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


async def probe_history(session: aiohttp.ClientSession, url: str, relay_pub: bytes, d: bd.SynthDevice, head: int,
                        probes: int, seconds: float) -> dict[str, Any]:
    st = LevelStats()
    d.cursor = head
    await sync_once(session, url + "/v1", relay_pub, d, 1024, st, send=False, record=False)  # roster, connection
    if d.cursor < head:
        raise RuntimeError("history probe did not reach the head")
    deadline = time.monotonic() + seconds
    for _ in range(probes):
        if time.monotonic() >= deadline or d.next >= len(d.batches):
            break
        await sync_once(session, url + "/v1", relay_pub, d, 20_000, st)
    lat_ms = [x * 1000 for x in st.lat]
    return {"probes": st.requests, "p50_ms": round(pct(lat_ms, 50), 2), "p99_ms": round(pct(lat_ms, 99), 2),
            "mean_ms": round(sum(lat_ms) / len(lat_ms), 2) if lat_ms else float("nan"),
            "errors": sum(st.errors.values()), "pulled": st.pulled}


async def history_test(cfg: dict, tmp: Path, templates: list[bd.Template], ops_per_batch: int,
                       profile: Path | None) -> dict[str, Any]:
    data = tmp / "history"
    info = admin.init(data, "Bench History")
    team, relay_pub = bytes.fromhex(info["team_id"]), bytes.fromhex(info["relay_key"])
    tk = crypto.TeamKey.generate(1)
    probe = bd.SynthDevice.generate(0)
    small = bd.make_templates(16, 1)
    probe.build(team, tk, small, cfg["history_probes"] * len(cfg["history_ops"]) + 5)
    # a handful of real 100-op blobs to store as history (the relay reads them back only to hand them out)
    blobs = []
    for i in range(8):
        fd = bd.SynthDevice.generate(100 + i)
        fd.build(team, tk, templates, 1)
        blobs.append(fd.batches[0])
    srv = relay_server(data, tmp / "history.log")
    out: dict[str, Any] = {}
    conn_kw = {"limit": 10, "keepalive_timeout": 120}
    url = srv.start()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(**conn_kw)) as session:
        tokens = make_invites(data, url, 1)
        if await enroll_all(session, url, relay_pub, [probe], tokens):
            raise RuntimeError("history probe could not enroll")
    srv.stop()
    stored_batches = 0
    for target_ops in cfg["history_ops"]:
        want = target_ops // ops_per_batch
        t0 = time.perf_counter()
        fill_history(data / db.DB_NAME, blobs, want - stored_batches, ops_per_batch, 1 + stored_batches)
        fill_s = time.perf_counter() - t0
        stored_batches = want
        c = sqlite3.connect(data / db.DB_NAME)
        head, n_ops = c.execute("SELECT MAX(rseq), SUM(n_ops) FROM batches").fetchone()
        c.close()
        size = sum(p.stat().st_size for p in data.iterdir() if p.name.startswith(db.DB_NAME))
        srv = relay_server(data, tmp / "history.log", profile=None if profile is None else
                           Path(f"{profile}.history{target_ops}"))
        url = srv.start()
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(**conn_kw)) as session:
                r = await probe_history(session, url, relay_pub, probe, head, cfg["history_probes"],
                                        cfg["history_seconds"])
            r["peak_rss_mb"] = round(srv.peak_rss() / 2**20, 1)
        finally:
            srv.stop()
        r.update(stored_ops=n_ops, db_mb=round(size / 2**20, 1), fill_s=round(fill_s, 1))
        out[str(target_ops)] = r
    return out


# -- profile report ------------------------------------------------------------------------------------


def profile_report(prefix: Path, top: int = 22) -> str:
    import io
    import pstats

    parts = []
    for which in ("writer", "main"):
        f = Path(f"{prefix}.{which}")
        if not f.exists():
            continue
        s = io.StringIO()
        pstats.Stats(str(f), stream=s).strip_dirs().sort_stats("tottime").print_stats(top)
        parts.append(f"### relay {which} thread (cProfile, by own time)\n" + s.getvalue().split("\n", 6)[-1])
    return "\n".join(parts)


# -- the run -----------------------------------------------------------------------------------------------


async def bench(cfg: dict, tmp: Path, profile: bool, log=print) -> dict[str, Any]:
    results: dict[str, Any] = {"config": {k: v for k, v in cfg.items()}, "cpus": os.cpu_count()}
    ops_per_batch, budget = cfg["ops_per_batch"], cfg["budget"]
    levels = cfg["levels"]
    n_dev = max(c for c, _ in levels)

    t0 = time.perf_counter()
    data = tmp / "relay"
    info = admin.init(data, "Bench Team")
    team, relay_pub = bytes.fromhex(info["team_id"]), bytes.fromhex(info["relay_key"])
    team_key = crypto.TeamKey.generate(1)  # the relay never opens content; any key of epoch 1 will do
    templates = bd.make_templates(cfg["templates"], ops_per_batch)
    bd.self_check(team, templates)
    devs = [bd.SynthDevice.generate(i) for i in range(n_dev)]
    # batches per device: the rounds of every level it takes part in, plus spare for the writer baseline
    for d in devs:
        need = sum(r for c, r in levels if d.index < c)
        if d.index < cfg["baseline_devices"]:
            need += -(-cfg["writer_requests"] // cfg["baseline_devices"])
        d.build(team, team_key, templates, need)
    prebuilt = sum(len(d.batches) for d in devs)
    results["setup"] = {"prebuilt_batches": prebuilt, "prebuild_s": round(time.perf_counter() - t0, 1),
                        "batch_bytes_mean": round(sum(len(b) for d in devs for b in d.batches) / prebuilt)}
    log(f"prebuilt {prebuilt} batches of {ops_per_batch} ops for {n_dev} devices in "
        f"{results['setup']['prebuild_s']} s (mean {results['setup']['batch_bytes_mean']} bytes)")

    prof_prefix = tmp / "relay.prof" if profile else None
    srv = relay_server(data, tmp / "relay.log", prof_prefix)
    url = srv.start()
    connector = aiohttp.TCPConnector(limit=n_dev + 16, keepalive_timeout=300)
    timeout = aiohttp.ClientTimeout(total=120)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            t1 = time.perf_counter()
            tokens = make_invites(data, url, n_dev)
            t2 = time.perf_counter()
            enroll_errors = await enroll_all(session, url, relay_pub, devs, tokens)
            t3 = time.perf_counter()
            results["setup"].update(invites_s=round(t2 - t1, 1), enroll_s=round(t3 - t2, 1),
                                    enroll_errors=enroll_errors)
            log(f"enrolled {n_dev} devices: invites {t2 - t1:.1f} s, enroll requests {t3 - t2:.1f} s, "
                f"{enroll_errors} errors")

            # Writer baseline works on a copy of the enrolled relay, with bodies signed now.
            copy = tmp / "writer-copy.db"
            admin.backup(data, copy)
            roster_v = sqlite3.connect(copy).execute("SELECT value FROM meta WHERE key='roster_v'").fetchone()[0]
            roster_v = codec.unpack(roster_v)
            wdevs = devs[: cfg["baseline_devices"]]
            bodies = []
            per = -(-cfg["writer_requests"] // len(wdevs))
            for k in range(per):
                for d in wdevs:
                    b = d.batches[-per + k]
                    args = {"cursor": 0, "budget": budget, "batches": [b], "roster_v": roster_v}
                    bodies.append(envelope.make_request(d.transport, d.device_id, "sync", args, now_ms())[0])
            bodies = bodies[: cfg["writer_requests"]]
            for d in wdevs:  # keep those batches for the writer baseline only
                del d.batches[-per:]

            results["levels"] = {}
            for conc, rounds in levels:
                group = devs[:conc]
                rss_before, lo0 = srv.rss(), listen_overflows()
                w = await warm_up(session, url, relay_pub, group, budget)
                wl = [x * 1000 for x in w.lat]
                rss_warm, lo1 = srv.rss(), listen_overflows()
                commits0 = await scrape_commits(session, url)
                srv.reset_peak()
                cpu0, lg0, sys0 = srv.cpu(), time.process_time(), busy_cpu()
                st, elapsed = await run_level(session, url, relay_pub, group, rounds, cfg["level_seconds"], budget)
                cpu1, lg1, lo2, sys1 = srv.cpu(), time.process_time(), listen_overflows(), busy_cpu()
                commits = await scrape_commits(session, url) - commits0
                r = summarize(st, elapsed, ops_per_batch)
                r.update(
                    devices=conc,
                    peak_rss_mb=round(srv.peak_rss() / 2**20, 1),
                    relay_loop_cpu=round((cpu1["main"] - cpu0["main"]) / elapsed, 2),
                    relay_writer_cpu=round((cpu1["other"] - cpu0["other"]) / elapsed, 2),
                    loadgen_cpu=round((lg1 - lg0) / elapsed, 2),
                    # cores busy with processes outside this benchmark (other jobs on the machine)
                    other_cpu=round(max(0.0, (sys1 - sys0) - (lg1 - lg0) - sum(cpu1.values()) + sum(cpu0.values()))
                                    / elapsed, 2),
                    commits=commits,
                    requests_per_commit=round(st.requests / max(1, commits), 1),
                    warmup_p99_ms=round(pct(wl, 99), 1),
                    warmup_errors=sum(w.errors.values()),
                    warmup_response_kb=round(w.recv_bytes / 1024 / max(1, w.requests), 1),
                    warmup_listen_overflows=lo1 - lo0,
                    listen_overflows=lo2 - lo1,
                    rss_before_warmup_mb=round(rss_before / 2**20, 1),
                    rss_after_warmup_mb=round(rss_warm / 2**20, 1),
                )
                results["levels"][str(conc)] = r
                log(f"level {conc:>5} devices: {r['ops_s']:>7} ops/s  p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms  "
                    f"errors {r['errors']}  rss {r['peak_rss_mb']} MB  ({r['requests']} syncs in {r['seconds']} s)")
            results["relay_peak_rss_mb"] = round(max(v["peak_rss_mb"] for v in results["levels"].values()), 1)
            results["relay_rss_end_mb"] = round(srv.rss() / 2**20, 1)
    finally:
        srv.stop()
    if prof_prefix:
        results["profile"] = profile_report(prof_prefix)

    # Baseline 1: the same load generator and signed requests against an aiohttp echo endpoint.
    echo = Server([sys.executable, "-c", ECHO_SERVER], tmp / "echo.log")
    eurl = echo.start()
    try:
        bdevs = devs[: cfg["baseline_devices"]]
        for d in bdevs:
            d.next = 0
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=len(bdevs) + 16),
                                         timeout=timeout) as session:
            await warm_up(session, eurl, relay_pub, bdevs, budget, parse=False)  # connections
            echo.reset_peak()
            cpu0, lg0, sys0 = echo.cpu(), time.process_time(), busy_cpu()
            st, elapsed = await run_level(session, eurl, relay_pub, bdevs, 10**6, cfg["baseline_seconds"], budget,
                                          parse=False)
            cpu1, lg1, sys1 = echo.cpu(), time.process_time(), busy_cpu()
        st.acked = st.requests
        r = summarize(st, elapsed, ops_per_batch)
        r.update(devices=len(bdevs), peak_rss_mb=round(echo.peak_rss() / 2**20, 1),
                 relay_loop_cpu=round((cpu1["main"] - cpu0["main"]) / elapsed, 2),
                 loadgen_cpu=round((lg1 - lg0) / elapsed, 2),
                 other_cpu=round(max(0.0, (sys1 - sys0) - (lg1 - lg0) - sum(cpu1.values()) + sum(cpu0.values()))
                                 / elapsed, 2))
        results["baseline_echo"] = r
        log(f"baseline echo ({len(bdevs)} devices): {r['requests_s']} requests/s p50 {r['p50_ms']} ms p99 {r['p99_ms']} ms")
    finally:
        echo.stop()

    # Baseline 2: relay.handle through db.Writer, in this process, no HTTP.
    results["baseline_writer"] = writer_baseline(copy, data / "relay.key", bodies, ops_per_batch)
    log(f"baseline writer: {results['baseline_writer']}")

    # Baseline 3: raw SQLite inserts of the same blobs.
    blobs = [(d.device_id, 10**6 + k, b) for d in devs for k, b in enumerate(d.batches[:5])][: cfg["sqlite_batches"]]
    while len(blobs) < cfg["sqlite_batches"]:
        blobs += [(dv, s + len(blobs) * 7, b) for dv, s, b in blobs[: cfg["sqlite_batches"] - len(blobs)]]
    results["baseline_sqlite"] = sqlite_baseline(tmp / "raw.db", blobs, ops_per_batch)
    log(f"baseline sqlite: {results['baseline_sqlite']}")

    # History size.
    results["history"] = await history_test(cfg, tmp, templates, ops_per_batch, None)
    log(f"history: {results['history']}")
    return results


def verdicts(res: dict[str, Any], cfg: dict) -> list[tuple[str, bool, str]]:
    out = []
    lv = res["levels"]
    key = str(TARGET_LEVEL)
    if key in lv:
        r = lv[key]
        out.append((f">= {TARGET_OPS_S:,} ops/s at {TARGET_LEVEL} devices", r["ops_s"] >= TARGET_OPS_S,
                    f"{r['ops_s']:,} ops/s"))
        out.append((f"p99 < {TARGET_P99_MS:.0f} ms at {TARGET_LEVEL} devices", r["p99_ms"] < TARGET_P99_MS,
                    f"{r['p99_ms']} ms"))
    top = str(max(c for c, _ in cfg["levels"]))
    r = lv[top]
    out.append((f"no errors at {top} devices", r["errors"] == 0 and r["warmup_errors"] == 0
                and res["setup"]["enroll_errors"] == 0,
                f"{r['errors']} errors ({r['warmup_errors']} in warm-up, {res['setup']['enroll_errors']} enrolling)"))
    h = res["history"]
    small, large = (h[str(n)] for n in cfg["history_ops"])
    ok = large["p50_ms"] <= HISTORY_RATIO * small["p50_ms"] + 1.0 and large["errors"] == 0 and small["errors"] == 0
    out.append((f"small sync with {cfg['history_ops'][1]:,} ops stored ~ with {cfg['history_ops'][0]:,}", ok,
                f"p50 {small['p50_ms']} -> {large['p50_ms']} ms (x{large['p50_ms'] / small['p50_ms']:.2f})"))
    return out


def markdown(res: dict[str, Any], cfg: dict) -> str:
    L = []
    L.append(f"Relay benchmark, {res['cpus']} CPUs, loopback, {cfg['ops_per_batch']}-op batches "
             f"(~{res['setup']['batch_bytes_mean']} bytes), pull budget {cfg['budget'] // 1000} KB, closed loop")
    L.append("")
    L.append("| run | devices | syncs | s | batches/s | ops/s | p50 ms | p99 ms | max ms | errors | pulled/sync "
             "| relay peak RSS MB | relay CPU loop+writer | loadgen CPU | other jobs CPU | syncs/commit |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---:|---:|---:|")
    for c, r in res["levels"].items():
        L.append(f"| relay | {c} | {r['requests']} | {r['seconds']} | {r['batches_s']} | {r['ops_s']:,} | "
                 f"{r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | {r['errors']} | {r['pulled_batches_per_sync']} "
                 f"({r['pulled_kb_per_sync']} KB) | {r['peak_rss_mb']} | {r['relay_loop_cpu']:.2f}+"
                 f"{r['relay_writer_cpu']:.2f} | {r['loadgen_cpu']:.2f} | {r['other_cpu']:.2f} | {r['requests_per_commit']} |")
    e = res["baseline_echo"]
    L.append(f"| baseline: aiohttp echo, same signed requests | {e['devices']} | {e['requests']} | {e['seconds']} | "
             f"{e['batches_s']} | {e['ops_s']:,} | {e['p50_ms']} | {e['p99_ms']} | {e['max_ms']} | {e['errors']} | - "
             f"| {e['peak_rss_mb']} | {e['relay_loop_cpu']:.2f} | {e['loadgen_cpu']:.2f} | {e['other_cpu']:.2f} | - |")
    w = res["baseline_writer"]
    L.append(f"| baseline: relay.handle via db.Writer, no HTTP | - | {w['requests']} | {w['seconds']} | "
             f"{w['batches_s']} | {w['ops_s']:,} | - | - | - | {w['errors']} | ~budget | - | in-process | - | {w['other_cpu']:.2f} "
             f"| {w['group']} |")
    s = res["baseline_sqlite"]
    L.append(f"| baseline: raw SQLite insert, 1 connection | - | - | {s['seconds']} | {s['batches_s']} | "
             f"{s['ops_s']:,} | - | - | - | 0 | - | - | - | - | - | {db.MAX_GROUP} |")
    L.append("")
    L.append("| small sync (1 op, cursor at head) | stored ops | DB MB | probes | p50 ms | p99 ms | mean ms | errors "
             "| relay peak RSS MB |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, h in res["history"].items():
        L.append(f"| history {int(n):,} ops | {h['stored_ops']:,} | {h['db_mb']} | {h['probes']} | {h['p50_ms']} | "
                 f"{h['p99_ms']} | {h['mean_ms']} | {h['errors']} | {h['peak_rss_mb']} |")
    L.append("")
    st = res["setup"]
    L.append(f"Set-up (untimed): {st['prebuilt_batches']} batches prebuilt in {st['prebuild_s']} s; "
             f"invites {st['invites_s']} s, enrollment requests {st['enroll_s']} s. "
             f"Warm-up (each device's first sync of the level, untimed: new connection, full roster): "
             + "; ".join(f"{c} devices p99 {r['warmup_p99_ms']} ms, {r['warmup_response_kb']} KB/response, "
                         f"{r['warmup_listen_overflows']} listen-queue overflows, relay RSS {r['rss_before_warmup_mb']}"
                         f" -> {r['rss_after_warmup_mb']} MB" for c, r in res["levels"].items()) + ".")
    L.append("")
    L.append("| target | result | measured |")
    L.append("|---|---|---|")
    for name, ok, what in verdicts(res, cfg):
        L.append(f"| {name} | {'PASS' if ok else 'FAIL'} | {what} |")
    return "\n".join(L)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts, a smoke run of < 30 s")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--profile", action="store_true", help="run the relay under cProfile and print the hot spots")
    ap.add_argument("--keep", type=Path, help="work in this directory and keep it (default: a temporary one)")
    a = ap.parse_args()
    cfg = dict(QUICK if a.quick else FULL)
    log = (lambda *x: print(*x, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    if a.keep:
        a.keep.mkdir(parents=True, exist_ok=True)
        res = asyncio.run(bench(cfg, a.keep, a.profile, log))
    else:
        with tempfile.TemporaryDirectory(prefix="hbw-bench-relay-") as tmp:
            res = asyncio.run(bench(cfg, Path(tmp), a.profile, log))
    res["total_s"] = round(time.perf_counter() - t0, 1)
    res["verdicts"] = [{"target": n, "pass": ok, "measured": m} for n, ok, m in verdicts(res, cfg)]
    if a.json:
        print(json.dumps(_benchkit.stamp(res, all(v["pass"] for v in res["verdicts"]), quick=a.quick), indent=2,
                         default=str))
    else:
        print(markdown(res, cfg))
        if "profile" in res:
            print()
            print(res["profile"])
        print(f"\n(total {res['total_s']} s{', relay profiled: figures are slower' if a.profile else ''})")
    return 0 if all(v["pass"] for v in res["verdicts"]) else 1


if __name__ == "__main__":
    sys.exit(main())
