"""Peak memory of each step of moving a large document through hbw-sync, each step in its own process.

Run: .venv/bin/python scripts/bench_docs_memory.py [--sizes 20,200] [--huge] [--quick] [--json]

For each size (MB, incompressible, as scans and recordings are), two paths side by side:

* **chunked** (this version, PROTOCOL.md §18e): the file is split and sealed while it is read;
  chunks travel outside batches and are written out one at a time.
* **old** (the baseline: the whole version inside one batch, as before chunking; forced here by
  raising ``CHUNKED_FROM``). The old path refuses files over 32 MiB: its rows say so.

Steps: add the document (sender); sync it up without the passphrase (a scheduler); update it (a
300-byte edit in the middle) and sync that up; sync down with the passphrase on a device whose policy is ``all``
(receive, apply, fetch the chunks); ``doc get`` on a device whose policy is ``none`` (fetch and
write the file); and the relay process's own peak over the whole run. Each figure is the
process's VmHWM (Linux /proc); the baseline is a process that only imported hbw-sync.
Target (issue 12): every step ≤ 100 MB for 20 MB, 200 MB and (``--huge``) 2 GiB files.

``--office DIR``: the same steps for the LibreOffice pairs ``NAME-v1.EXT`` / ``NAME-v2.EXT`` in DIR
(``scripts/make_office_docs.py DIR --rows 150000 ...``), each run twice: as now, and with the zip
recipe as before SPLICE (PROTOCOL.md §18c), the baseline measured in the same run.
Exits 1 when a chunked step misses the target.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
import _benchkit  # noqa: E402  (scripts/: what every --json records)

TARGET_MB = 100
#: The update's rows that are not peaks (not held to TARGET_MB): its spool's size and its time.
NOT_PEAKS = ("update it: MB the deflater search spooled (TMPDIR)", "update it: seconds (wall)")
PA, PB, PC = "amina orchid lantern 52 ferry", "chidi quartz meadow 17 kettle", "bosco velvet harbour 88 prism"


def hwm_mb(pid: str = "self") -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) // 1024
    return -1


def no_splice() -> None:
    """The baseline of ``--office``: the zip recipe as before SPLICE, for the rest of this (step) process."""
    from bench_docs import without_splice

    global _NO_SPLICE  # kept: a context manager collected would close its generator, and restore SPLICE
    _NO_SPLICE = without_splice()
    _NO_SPLICE.__enter__()


_NO_SPLICE: object = None


_SPOOLED = [0]  # the most bytes one deflater-search spool held (delta/search.py), this step


def watch_spools() -> None:
    """Record each ``search.Spool``'s size as it is closed: what TMPDIR held for the member (in memory
    while under ``SPOOL_IN_MEMORY``). Read from its file's end, so it measures any tree's Spool."""
    try:
        from hbw_sync.delta import search
    except ImportError:  # a tree from before the spool
        return
    close = search.Spool.close

    def closing(self: "search.Spool") -> None:
        self.file.seek(0, os.SEEK_END)
        _SPOOLED[0] = max(_SPOOLED[0], self.file.tell())
        close(self)

    search.Spool.close = closing  # type: ignore[method-assign]


def phase(name: str, home: str, pw: str, extra: str, path: str) -> None:
    """One step in this (fresh) process; prints its peak RSS in MB (or -2 when the step was refused), the
    bytes it moved, the most bytes a deflater-search spool held and its time in milliseconds."""
    import time

    from hbw_sync.client import Device, documents
    from hbw_sync.client import sync as syncing
    from hbw_sync.errors import UsageError

    watch_spools()
    started = time.perf_counter()

    if path == "old":
        documents.CHUNKED_FROM = 1 << 62  # the whole version inside the batch, as before §18e
    if path == "nosplice":
        no_splice()
    moved = 0  # bytes the step moved over the link (sync: sent + received; doc get: fetched)
    try:
        if name == "add":
            with Device.open(Path(home)) as d:
                d.unlock(pw).add_doc(Path(extra))
        elif name == "update":
            with Device.open(Path(home)) as d:
                rep = d.unlock(pw)
                rep.update_doc(rep.docs()[-1].id, Path(extra))
        elif name == "sync-locked":
            r = syncing.sync(Path(home), None)
            moved = r.sent_bytes + r.received_bytes
        elif name == "sync":
            r = syncing.sync(Path(home), pw)
            moved = r.sent_bytes + r.received_bytes
        elif name == "get":
            with Device.open(Path(home)) as d:
                rep = d.unlock(pw)
                doc = rep.docs()[-1]
                moved = syncing.fetch_doc(rep, doc.id)
                rep.save_doc(doc.id, Path(extra))
    except UsageError as e:
        if e.code == "usage.doc_too_large":
            print(-2)
            return
        raise
    print(hwm_mb(), moved, _SPOOLED[0], round(1000 * (time.perf_counter() - started)))


def run_size(py: str, mb: int, path: str, pair: tuple[Path, Path] | None = None,
             script: str = __file__) -> list[tuple[str, int]]:
    """Each step's peak for an ``mb`` MB incompressible file, or (``pair``) an office file and its edit.

    ``script``: the copy of this file whose steps run (``--before``: the one in another tree, which
    imports that tree's hbw_sync)."""
    from hbw_sync.client import sync as syncing
    from hbw_sync.client import team as teams
    from hbw_sync.server import admin
    from relay_helpers import FAST_KDF

    moved: dict[str, int] = {}
    spooled: dict[str, tuple[int, int]] = {}  # step -> (spool bytes, ms)

    def step(*a: str) -> int:
        out = subprocess.run([py, script, "--phase", *a, path], capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"step {a[0]} ({path}, {mb} MB) failed:\n{out.stderr[-3000:]}")
        last = out.stdout.strip().splitlines()[-1].split()
        if len(last) > 1:
            moved[a[0] + ":" + a[1]] = int(last[1])
        if len(last) > 3:
            spooled[a[0]] = (int(last[2]), int(last[3]))
        return int(last[0])

    with tempfile.TemporaryDirectory() as t:
        t = Path(t)
        data = t / "relay"
        admin.init(data, "bench")
        srv = subprocess.Popen([py, "-m", "hbw_sync.server.cli", "serve", "--data", str(data), "--port", "0"],
                               stderr=subprocess.PIPE, text=True)
        try:
            assert srv.stderr is not None
            url = srv.stderr.readline().strip().rsplit(" ", 1)[-1]
            # Drain the relay's log: a full pipe would stop it at its next access-log line.
            threading.Thread(target=lambda: [None for _ in srv.stderr], daemon=True).start()
            a, b, c = t / "a", t / "b", t / "c"
            syncing.join(a, admin.invite(data, "amina", "supervisor", url=url).encode(), PA, kdf=FAST_KDF)
            syncing.join(b, teams.make_invite(a, PA, "chidi").encode(), PB, kdf=FAST_KDF)
            syncing.join(c, teams.make_invite(a, PA, "bosco").encode(), PC, kdf=FAST_KDF)
            for home, pw, policy in ((a, PA, "mine"), (b, PB, "all"), (c, PC, "none")):
                syncing.sync(home, pw)
                from hbw_sync.client import Device
                with Device.open(home) as d:
                    d.unlock(pw).set_doc_policy(policy)
            f = t / ("big.bin" if pair is None else pair[0].name.replace("-v1", ""))
            if pair is not None:
                f.write_bytes(pair[0].read_bytes())
            else:
                with f.open("wb") as out:  # written in pieces: the bench itself stays small too
                    for _ in range(mb):
                        out.write(os.urandom(1_000_000))
            rows = [("add the document (sender)", step("add", str(a), PA, str(f)))]
            if rows[0][1] == -2:
                return rows + [(n, -2) for n in ("sync up", "update it", "sync the update up", "sync down", "doc get",
                                                 "relay")]
            rows.append(("sync it up, unattended (sender)", step("sync-locked", str(a), PA, "")))
            if pair is not None:  # the edit LibreOffice saved
                f.write_bytes(pair[1].read_bytes())
            else:
                with f.open("r+b") as out:  # a 300-byte edit in the middle
                    out.seek(mb * 500_000)
                    out.write(b"an edited paragraph of minutes" * 10)
            # (Synced before the update: on the old path a delta sent in the same sync as its large
            # base is applied before the base arrives and refused; see the report of this change.)
            what = "300 bytes edited mid-file" if pair is None else "the one-place edit"
            rows.append((f"update it: {what} (sender)", step("update", str(a), PA, str(f))))
            if "update" in spooled:  # not a peak: its spool's size and its time, two rows of their own
                rows.append((NOT_PEAKS[0], round(spooled["update"][0] / 1e6, 1)))  # type: ignore[arg-type]
                rows.append((NOT_PEAKS[1], round(spooled["update"][1] / 1000, 1)))  # type: ignore[arg-type]
            up = step("sync-locked", str(a), PA, "")
            rows.append((f"sync the update up, unattended (sender; {moved['sync-locked:' + str(a)]:,} bytes went)", up))
            down = step("sync", str(b), PB, "")
            rows.append((f"sync down both versions and apply, policy all (receiver; {moved['sync:' + str(b)]:,} bytes)",
                         down))
            step("sync", str(c), PC, "")  # policy none: the manifest only
            get = step("get", str(c), PC, str(t / "out.bin"))
            rows.append((f"doc get on a policy-none device (fetch + write; {moved['get:' + str(c)]:,} bytes)", get))
            rows.append(("relay process (whole run)", hwm_mb(str(srv.pid))))
        finally:
            srv.terminate()
            srv.wait()
    return rows


def office(py: str, folder: Path, as_json: bool, quick: bool, before_ref: str | None = None) -> int:
    """``--office``: each step's peak for the LibreOffice pairs in ``folder``, with SPLICE and without it
    (``before_ref``: instead of without SPLICE, the code at that git ref, ``bench_docs.tree_at``)."""
    from bench_docs import tree_at

    pairs = sorted((v1, v1.with_name(v1.name.replace("-v1.", "-v2."))) for v1 in folder.glob("*-v1.*"))
    pairs = [p for p in pairs if p[1].exists()]
    results = []
    key = "without_splice_mb" if before_ref is None else "before_mb"
    for v1, v2 in pairs:
        if before_ref is None:
            now = run_size(py, 0, "chunked", (v1, v2))
            before = run_size(py, 0, "nosplice", (v1, v2))
        else:
            with tree_at(before_ref) as tree:
                # This script's steps over that tree's hbw_sync (it puts its own tree first on sys.path):
                # the same measures (the spool's size, the update's time) on both sides.
                script = tree / "scripts" / "bench_docs_memory.py"
                script.write_bytes(Path(__file__).read_bytes())
                before = run_size(py, 0, "chunked", (v1, v2), str(script))
            now = run_size(py, 0, "chunked", (v1, v2))
        results.append({"document": v2.name, "size": v2.stat().st_size,
                        "rows": [{"step": n, "now_mb": x, key: o, "baseline_step": bn}
                                 for (n, x), (bn, o) in zip(now, before)]})  # fmt: skip
    ok = all(r["now_mb"] <= TARGET_MB for res in results for r in res["rows"] if not r["step"].startswith(NOT_PEAKS))
    if as_json:
        print(json.dumps(_benchkit.stamp({"target_mb": TARGET_MB, "results": results, "ok": ok,
                                          "baseline": before_ref or "without SPLICE"}, ok, quick=quick), indent=1))
        return 0 if ok else 1
    then = "without SPLICE" if before_ref is None else f"before: {before_ref}"
    for res in results:
        print(f"\n| step ({res['document']}, {res['size']:,} bytes) | now | {then} (same run) |")
        print("|---|---:|---:|")
        for r in res["rows"]:
            was = "" if r["baseline_step"] == r["step"] else f" ({r['baseline_step']})"
            unit = "" if r["step"].startswith(NOT_PEAKS) else " MB"
            print(f"| {r['step']} | {r['now_mb']}{unit} | {r[key]}{unit}{was} |")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="20,200", help="document sizes in MB, comma-separated (default 20,200)")
    ap.add_argument("--huge", action="store_true", help="also a 2 GiB (2,147 MB) document: minutes, and 6 GB of disk")
    ap.add_argument("--quick", action="store_true", help="20 MB only")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--office", type=Path, default=None, metavar="DIR",
                    help="instead: the LibreOffice pairs NAME-v1/-v2 in DIR (scripts/make_office_docs.py), each step "
                         "with SPLICE and, as the baseline in the same run, without it")
    ap.add_argument("--before", metavar="REF", default=None,
                    help="with --office: the baseline is the code at git REF (e.g. main), run in the same run, "
                         "instead of the zip recipe without SPLICE")
    ap.add_argument("--phase", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        phase(*args.phase)
        return 0
    py = sys.executable
    if args.office is not None:
        return office(py, args.office, args.json, args.quick, args.before)
    sizes = [20] if args.quick else [int(s) for s in args.sizes.split(",")]
    if args.huge:
        sizes.append(2148)
    base = int(subprocess.run([py, "-c", "import hbw_sync.client.sync, hbw_sync.client.replica;"
                               "print([int(l.split()[1])//1024 for l in open('/proc/self/status') "
                               "if l.startswith('VmHWM')][0])"], capture_output=True, text=True).stdout)
    results = []
    for mb in sizes:
        new = run_size(py, mb, "chunked")
        old = run_size(py, mb, "old") if mb <= 33 else [(n, -2) for n, _ in new]
        results.append({"mb": mb, "rows": [{"step": n, "chunked_mb": x, "old_mb": o} for (n, x), (_n, o) in zip(new, old)]})
    ok = all(r["chunked_mb"] <= TARGET_MB for res in results for r in res["rows"] if r["chunked_mb"] >= 0)
    if args.json:
        print(json.dumps(_benchkit.stamp({"baseline_mb": base, "target_mb": TARGET_MB, "results": results, "ok": ok},
                                         ok, quick=args.quick), indent=1))
        return 0 if ok else 1

    def cell(v: int) -> str:
        return "refused (over 32 MiB)" if v == -2 else f"{v} MB"

    print(f"baseline: a process that only imported hbw-sync: {base} MB; target ≤ {TARGET_MB} MB per step")
    for res in results:
        print(f"\n| step ({res['mb']} MB incompressible document) | chunked (now) | old path (whole version in a batch) |")
        print("|---|---:|---:|")
        for r in res["rows"]:
            mark = "" if r["chunked_mb"] <= TARGET_MB else " FAIL"
            print(f"| {r['step']} | {cell(r['chunked_mb'])}{mark} | {cell(r['old_mb'])} |")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
