"""Where a relay's document-chunk bytes should live, and how long they hold its single writer.

Run: .venv/bin/python scripts/bench_chunkstore.py [--quick] [--json] [--pg]

What it measures (issue 16 / issue 12 item 3, relay side), in one run, on real stores:
sealed chunks of 256 KiB (the largest a device makes) are put one per transaction, then
read back, through the relay's own ``chunkstore`` classes and SQLite ``Writer``:

* ``files, written in the writer`` (the baseline: how the relay did it before schema 3):
  temp + fsync + rename + directory fsync inside the writer's transaction.
* ``files, staged outside the writer`` (SQLite's way now): the same write in a staging
  thread (``FileChunkStore.stage``), the writer's transaction only indexes it.
* ``index row only (the floor)``: the staged files, indexed without ``put``'s check of the
  staged bytes: what any transaction with a commit costs the writer.
* ``rows in SQLite`` (the alternative the issue asks to measure): the bytes in
  ``chunks.data`` in the writer's transaction (``DbChunkStore``), committed with the WAL's fsync.
* ``rows in PostgreSQL`` (``--pg``: a throwaway cluster from tests/pg.py, fsync off, so only
  the relay's side is measured): PostgreSQL's way.

Columns: ``writer ms/MB`` is the time the single writer (or the PostgreSQL transaction) is
busy per MB stored: what every other device's sync waits behind. ``put MB/s`` is end to end
(staging included); ``get MB/s`` reads them back inside a transaction. Lower writer ms/MB
is the target for SQLite: staged must be well under the baseline (exit 1 if not below half).
Disk and machine load move the absolutes; compare the rows of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_ROOT / "tests"))
sys.path.insert(0, str(_ROOT / "scripts"))

import _benchkit  # noqa: E402  (scripts/: what every --json records)

from hbw_sync import chunks, crypto  # noqa: E402
from hbw_sync.server import admin, chunkstore, storage  # noqa: E402

TEAM = b"T" * 8


def sealed(n: int) -> list[tuple[bytes, bytes]]:
    keys = chunks.ChunkKeys.of(crypto.TeamKey.generate(epoch=1))
    return [chunks.seal_chunk(keys, os.urandom(chunks.CHUNK_MAX - 64)) for _ in range(n)]


def one_row(name: str, data: Path, pieces: list[tuple[bytes, bytes]], database: str | None) -> dict[str, Any]:
    admin.init(data, "Bench Team", database=database)
    store = storage.open_store(data)
    kind = "postgres" if database else ("sqlite" if name != "rows in SQLite" else "rows")
    cs: Any = chunkstore.DbChunkStore(1 << 40) if kind in ("postgres", "rows") \
        else chunkstore.FileChunkStore(data / "chunks", 1 << 40)
    runner = store.runner()
    runner.start()
    mb = sum(len(s) for _c, s in pieces) / 1e6
    writer = 0.0
    t0 = time.perf_counter()
    for i, (cid, s) in enumerate(pieces):
        if name in ("files, staged outside the writer", "index row only (the floor)"):
            cs.stage(TEAM, cid, s)  # as relay.stage does, in a staging thread: not the writer's time
        t = time.perf_counter()
        if name == "index row only (the floor)":  # the transaction and its commit, no byte compared
            runner.call(lambda c, cid=cid, s=s, i=i: cs._index(c, TEAM, cid, len(s), i, None))
        else:
            runner.call(lambda c, cid=cid, s=s, i=i: cs.put(c, TEAM, cid, s, i))
        writer += time.perf_counter() - t
    put_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = runner.call(lambda c: sum(len(cs.get(c, TEAM, cid) or b"") for cid, _s in pieces))
    get_s = time.perf_counter() - t0
    runner.stop()
    store.close()
    assert got == sum(len(s) for _c, s in pieces)
    return {"row": name, "chunks": len(pieces), "mb": round(mb, 1), "writer_ms_per_mb": round(writer * 1000 / mb, 2),
            "put_mb_s": round(mb / put_s, 1), "get_mb_s": round(mb / get_s, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="40 chunks instead of 200")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--pg", action="store_true", help="add PostgreSQL (needs its binaries: tests/pg.py)")
    args = ap.parse_args()
    pieces = sealed(40 if args.quick else 200)
    tmp = Path(tempfile.mkdtemp(prefix="hbw-bench-chunks-"))
    pg = None
    rows = []
    try:
        for i, name in enumerate(("files, written in the writer", "files, staged outside the writer",
                                  "index row only (the floor)", "rows in SQLite")):
            rows.append(one_row(name, tmp / f"r{i}", pieces, None))
        if args.pg:
            from pg import PgServer

            pg = PgServer()
            rows.append(one_row("rows in PostgreSQL", tmp / "pg", pieces, pg.url()))
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    base, staged = rows[0]["writer_ms_per_mb"], rows[1]["writer_ms_per_mb"]
    ok = staged < base / 2
    if args.json:
        print(json.dumps(_benchkit.stamp({"rows": rows}, ok, quick=args.quick), indent=2))
    else:
        print(f"{'row':36} {'chunks':>6} {'MB':>6} {'writer ms/MB':>13} {'put MB/s':>9} {'get MB/s':>9}")
        for r in rows:
            print(f"{r['row']:36} {r['chunks']:>6} {r['mb']:>6} {r['writer_ms_per_mb']:>13} {r['put_mb_s']:>9} "
                  f"{r['get_mb_s']:>9}")
        print(f"target: staged writer time < half the baseline's: {staged} vs {base} ms/MB -> "
              f"{'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
