"""Client benchmark: local changes per second (encrypt + merge + log + queue), store size, peak memory.

Run: .venv/bin/python scripts/bench_client.py [--tasks 5000] [--quick] [--json]

Prints, in one run and side by side:
* changes/s one by one through the library API (each change its own transaction
  with fsync, a signed, sealed piece of the open outbox batch), and through ``task import``
  (one transaction), against a baseline measured the same way: plain sqlite-utils
  inserts of the same rows, unencrypted, no log, no outbox;
* store size per 1,000 tasks (database + WAL after a checkpoint);
* peak RSS of the process.
Target (issue 3): at least 2,000 changes/s through import on a 2-core machine.
Target (issue 11): at most 2 ms per change with 0 and with 1,000 changes waiting, side by side.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hbw_sync.client import Device  # noqa: E402
from hbw_sync.client import importer  # noqa: E402
from hbw_sync.client.vault import KdfParams  # noqa: E402
import _benchkit  # noqa: E402  (scripts/: what every --json records)

STRONG = "dana orchid lantern 52 ferry"  # weak passphrases are refused (client/passphrase.py)

WORDS = ("invoice permit inspection budget ledger district ward registry stamp payroll audit licence "
         "supplier council report quarter grant tender receipt hygiene market").split()


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def rows(n: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    return [
        {
            "ref": f"W49-{i:05d}",
            "title": sentence(rng, 5),
            "description": " ".join(sentence(rng, rng.randint(8, 16)) for _ in range(3)),
            "assignee": rng.choice(["amina", "bosco", "chidi", "dana"]),
            "due": f"2026-12-{rng.randint(1, 28):02d}",
            "priority": rng.choice(["low", "normal", "high", "urgent"]),
            "needs": rng.choice(["", "laptop", "internet,laptop", "office"]),
        }
        for i in range(n)
    ]


def store_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in home.iterdir() if p.name.startswith("store.db"))


def bench(n_import: int, n_single: int) -> dict:
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = rows(n_import)
        csv_path = Path(tmp) / "plan.csv"
        with csv_path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(data[0]))
            w.writeheader()
            w.writerows(data)

        # hbw-sync: import (parse + encrypt + merge + log + seal + sign, one transaction)
        home = Path(tmp) / "imp"
        rep = Device.init(home, "dana", STRONG, kdf=KdfParams(n=2**10)).unlock(STRONG)
        rep.create_team("bench")
        t0 = time.perf_counter()
        opts = importer.ImportOptions(new_members=frozenset({"amina", "bosco", "chidi"}))
        importer.import_file(rep, csv_path, opts)
        dt = time.perf_counter() - t0
        out["import_changes_per_s"] = n_import / dt
        # The same file again: every row is matched to its task and nothing is written.
        t0 = time.perf_counter()
        again = importer.import_file(rep, csv_path, opts)
        out["reimport_unchanged_rows_per_s"] = n_import / (time.perf_counter() - t0)
        assert again.count("unchanged") == n_import, again.summary()
        rep.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        out["store_bytes_per_1000_tasks"] = store_bytes(home) * 1000 / n_import
        out["outbox_bytes_per_task"] = rep.status()["outbox"]["bytes"] / n_import
        rep.close()

        # hbw-sync: one change per command through the library API
        home = Path(tmp) / "one"
        rep = Device.init(home, "dana", STRONG, kdf=KdfParams(n=2**10)).unlock(STRONG)
        rep.create_team("bench")
        ids = [rep.add_task(r["title"]).id for r in data[:20]]
        rng = random.Random(2)
        t0 = time.perf_counter()
        for i in range(n_single):
            tid = rng.choice(ids)
            k = i % 4
            if k == 0:
                rep.edit_task(tid, description=sentence(rng, 20))
            elif k == 1:
                rep.assign(tid, rng.choice(["amina", "bosco", "chidi"]))
            elif k == 2:
                rep.note(tid, sentence(rng, 10))
            else:
                rep.edit_task(tid, priority=rng.randint(0, 3))
        dt = time.perf_counter() - t0
        out["single_changes_per_s"] = n_single / dt
        rep.close()

        # Per change with 0 and with 1,000 changes waiting in the outbox (issue 11 item 7): the
        # same edits, timed alone; "0 waiting" empties the outbox between changes, as a sync
        # that acknowledges everything would (untimed).
        for waiting in (0, 1000):
            home = Path(tmp) / f"wait{waiting}"
            rep = Device.init(home, "dana", STRONG, kdf=KdfParams(n=2**10)).unlock(STRONG)
            rep.create_team("bench")
            ids = [rep.add_task(r["title"]).id for r in data[:20]]
            rng = random.Random(3)
            for _ in range(waiting):
                rep.edit_task(rng.choice(ids), description=sentence(rng, 20))
            rep.store.execute("DELETE FROM outbox" if waiting == 0 else "SELECT 1")
            spent = cpu = 0.0
            for i in range(n_single):
                t0, c0 = time.perf_counter(), time.process_time()
                rep.edit_task(rng.choice(ids), description=sentence(rng, 20))
                spent += time.perf_counter() - t0
                cpu += time.process_time() - c0
                if waiting == 0:
                    rep.store.execute("DELETE FROM outbox")
            out[f"ms_per_change_{waiting}_waiting"] = spent * 1000 / n_single
            out[f"cpu_ms_per_change_{waiting}_waiting"] = cpu * 1000 / n_single  # without the fsync wait
            t0 = time.perf_counter()
            rep.close_outbox()  # what a sync does first: the open batch built once
            out[f"close_outbox_ms_{waiting}_waiting"] = (time.perf_counter() - t0) * 1000
            rep.close()

        # Unlocking again in the same process (watch, the tray: one per sync) derives no key again.
        dev = Device.open(Path(tmp) / "one")
        t0 = time.perf_counter()
        dev.unlock(STRONG)
        out["unlock_again_ms"] = (time.perf_counter() - t0) * 1000
        dev.close()

        # Baseline: the same rows as plain sqlite inserts (no crypto, no log, no outbox), one transaction,
        # and one by one with a commit each (same durability setting as the store).
        db_path = Path(tmp) / "plain.db"
        conn = sqlite3.connect(db_path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, ref, title, description, assignee, due, priority, needs)")
        t0 = time.perf_counter()
        with csv_path.open() as f:
            recs = list(csv.DictReader(f))
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO t (ref, title, description, assignee, due, priority, needs) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [tuple(r.values()) for r in recs],
        )
        conn.execute("COMMIT")
        out["baseline_import_rows_per_s"] = n_import / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for i in range(n_single):
            conn.execute("UPDATE t SET description = ? WHERE id = ?", (sentence(rng, 20), 1 + i % 20))
        out["baseline_single_updates_per_s"] = n_single / (time.perf_counter() - t0)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        out["baseline_bytes_per_1000_tasks"] = (db_path.stat().st_size) * 1000 / n_import
        conn.close()
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=5000, help="tasks to import (default 5000)")
    ap.add_argument("--single", type=int, default=1000, help="one-by-one changes (default 1000)")
    ap.add_argument("--quick", action="store_true", help="500 tasks, 100 single changes: a smoke run")
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args()
    if args.quick:
        args.tasks, args.single = 500, 100
    r = bench(args.tasks, args.single)
    ok = r["import_changes_per_s"] >= 2000
    flat = max(r["ms_per_change_0_waiting"], r["ms_per_change_1000_waiting"]) <= 2.0
    if args.json:
        r["targets"] = {"import >= 2,000 changes/s": ok, "<= 2 ms per change with 0 and 1,000 waiting": flat}
        print(json.dumps(_benchkit.stamp(r, ok and flat, quick=args.quick), indent=2))
        return 0 if ok and flat else 1
    print("| measure | hbw-sync | baseline (plain SQLite, no crypto/log/outbox) |")
    print("|---|---:|---:|")
    print(f"| import, changes/s ({args.tasks} tasks, one transaction) | {r['import_changes_per_s']:,.0f} | {r['baseline_import_rows_per_s']:,.0f} |")
    print(f"| re-import of the same file, rows matched/s (nothing written) | {r['reimport_unchanged_rows_per_s']:,.0f} | - |")
    print(f"| one by one, changes/s ({args.single}, a transaction + fsync each) | {r['single_changes_per_s']:,.0f} | {r['baseline_single_updates_per_s']:,.0f} |")
    print(f"| one change, ms, with 0 / with 1,000 changes waiting | {r['ms_per_change_0_waiting']:.2f} / "
          f"{r['ms_per_change_1000_waiting']:.2f} | - |")
    print(f"| one change, CPU ms (the wait for fsync left out), 0 / 1,000 waiting | "
          f"{r['cpu_ms_per_change_0_waiting']:.2f} / {r['cpu_ms_per_change_1000_waiting']:.2f} | - |")
    print(f"| closing the open batch before a sync, ms (0 / 1,000 waiting) | {r['close_outbox_ms_0_waiting']:.1f} / "
          f"{r['close_outbox_ms_1000_waiting']:.1f} | - |")
    print(f"| unlocking again in the same process (key derived once), ms | {r['unlock_again_ms']:.1f} | - |")
    print(f"| store size per 1,000 tasks | {r['store_bytes_per_1000_tasks'] / 1024:,.0f} KiB | {r['baseline_bytes_per_1000_tasks'] / 1024:,.0f} KiB |")
    print(f"| outbox bytes per imported task (sealed, signed, compressed) | {r['outbox_bytes_per_task']:,.0f} | - |")
    print(f"| peak RSS of the whole run | {r['peak_rss_mb']:,.0f} MB | - |")
    print(f"\ntarget: >= 2,000 changes/s through import: {'PASS' if ok else 'FAIL'}")
    print(f"target: <= 2 ms per change with 0 and with 1,000 waiting: {'PASS' if flat else 'FAIL'}")
    return 0 if ok and flat else 1


if __name__ == "__main__":
    raise SystemExit(main())
