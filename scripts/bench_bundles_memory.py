"""Peak memory of moving a large document by bundle (USB stick, email), each step in its own process.

Run: .venv/bin/python scripts/bench_bundles_memory.py [--sizes 20,200] [--quick] [--json]

For each size (MB, incompressible, as scans are), two code bases side by side in one run:

* **new** (this checkout: bundle format 2, PROTOCOL.md §18b): segments streamed to and from disk.
* **old** (the baseline: the code of ``--old REV``, default the merge base with ``main``, extracted
  with ``git archive`` into a temporary directory; bundle format 1, built and read whole).

Steps, each a fresh process whose VmHWM (Linux /proc) is the figure:
1. **export** (sender, ``bundle export``, ``--max-size`` 10 MB as the default, and ``none`` on the
   new code: one file);
2. **relay ingest** (``hbw-relay bundle ingest`` of every file of that export);
3. **reply import** (a receiver whose policy wants every document: its first bundle brings the
   version, its second asks for the chunks; the figure is importing the reply that carries them,
   up to one reply's room, 32 MiB with ``none``, 10 MB otherwise).
4. **relay /v1/bundle upload** (the office's drop point over HTTP: a relay ``serve`` process of that
   code base, the ``--max-size none`` export POSTed to it from disk; the figure is the relay
   process's VmHWM, beside the same relay's VmHWM idle, read just before the upload). The old
   code read the whole body into memory (at most 40 MiB: larger bundles were refused, 413).
The baseline is a process that only imported hbw-sync. Target (issue 12): each step ≤ 100 MB.
Exits 1 when a new step misses the target.
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
# The code base a --phase process runs (``--code DIR``: the old one, extracted by ``git archive``).
CODE = Path(sys.argv[sys.argv.index("--code") + 1]) if "--code" in sys.argv else ROOT
sys.path.insert(0, str(CODE))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))
import _benchkit  # noqa: E402  (scripts/: what every --json records)

TARGET_MB = 100
PA, PB = "amina orchid lantern 52 ferry", "chidi quartz meadow 17 kettle"


def hwm_mb() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) // 1024
    return -1


def phase(name: str, arg: str) -> None:
    """One step in this (fresh) process; prints JSON: its peak RSS in MB and what it made."""
    a = json.loads(arg)
    out: dict = {}
    if name == "setup":
        from hbw_sync.client import Device
        from hbw_sync.client import sync as syncing
        from hbw_sync.client import team as teams
        from hbw_sync.server import admin
        from relay_helpers import FAST_KDF

        t = Path(a["dir"])
        admin.init(t / "relay", "bench")
        srv = subprocess.Popen([sys.executable, "-m", "hbw_sync.server.cli", "serve", "--data", str(t / "relay"),
                                "--port", "0"], stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
                               cwd=CODE)  # -m puts the working directory first on sys.path: the code base's
        try:
            assert srv.stderr is not None
            url = srv.stderr.readline().strip().rsplit(" ", 1)[-1]
            threading.Thread(target=lambda: [None for _ in srv.stderr], daemon=True).start()  # type: ignore[union-attr]
            syncing.join(t / "a", admin.invite(t / "relay", "amina", "supervisor", url=url).encode(), PA, kdf=FAST_KDF)
            syncing.join(t / "b", teams.make_invite(t / "a", PA, "chidi").encode(), PB, kdf=FAST_KDF)
            for home, pw in ((t / "a", PA), (t / "b", PB)):
                syncing.sync(home, pw)
            syncing.sync(t / "a", PA)
            with Device.open(t / "b") as d:
                d.unlock(PB).set_doc_policy("all")
            with Device.open(t / "a") as d:
                d.unlock(PA).add_doc(Path(a["file"]))
        finally:
            srv.terminate()
            srv.wait()
    elif name == "export":
        from hbw_sync.client import bundles

        r = bundles.export_bundle(Path(a["home"]), Path(a["out"]), a["max"], passphrase=a.get("pw"))
        out = {"files": r["files"], "bytes": r["bytes"]}
    elif name == "ingest":
        from hbw_sync.server import admin

        replies = []
        for f in a["files"]:
            replies += [x["file"] for x in admin.ingest_bundle(Path(a["data"]), Path(f), Path(a["replies"]))["replies"]]
        out = {"replies": replies}
    elif name == "import":
        from hbw_sync.client import bundles

        got = 0
        for f in a["replies"]:
            got += bundles.import_bundle(Path(a["home"]), Path(f), a["pw"]).get("doc_chunks", 0)
        out = {"doc_chunks": got}
    print(json.dumps({"mb": hwm_mb(), **out}))


def run_size(py: str, mb: int, code: Path, max_bytes: int | None, label: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code)}

    def step(name: str, **a: object) -> dict:
        p = subprocess.run([py, __file__, "--code", str(code), "--phase", name, json.dumps(a)], capture_output=True,
                           text=True, env=env)
        if p.returncode:
            raise SystemExit(f"step {name} ({label}, {mb} MB) failed:\n{p.stderr[-3000:]}")
        return json.loads(p.stdout.strip().splitlines()[-1])

    with tempfile.TemporaryDirectory() as t:
        t = Path(t)
        f = t / "scan.pdf"
        with f.open("wb") as out:  # written in pieces: the bench itself stays small too
            for _ in range(mb):
                out.write(os.urandom(1_000_000))
        step("setup", dir=str(t), file=str(f))
        f.unlink()
        data, a, b = str(t / "relay"), str(t / "a"), str(t / "b")
        ex = step("export", home=a, out=str(t / "a.hbw"), max=max_bytes, pw=None)
        ing = step("ingest", data=data, files=ex["files"], replies=str(t / "ra"))
        step("import", home=a, replies=ing["replies"], pw=PA)
        # The receiver: its first bundle brings the version (its manifest), its second asks for the chunks.
        first = step("export", home=b, out=str(t / "b1.hbw"), max=max_bytes, pw=PB)
        r1 = step("ingest", data=data, files=first["files"], replies=str(t / "rb1"))
        step("import", home=b, replies=r1["replies"], pw=PB)
        second = step("export", home=b, out=str(t / "b2.hbw"), max=max_bytes, pw=PB)
        r2 = step("ingest", data=data, files=second["files"], replies=str(t / "rb2"))
        imp = step("import", home=b, replies=r2["replies"], pw=PB)
        return {"export_mb": ex["mb"], "export_files": len(ex["files"]), "export_bytes": ex["bytes"],
                "ingest_mb": max(ing["mb"], r2["mb"]), "reply_import_mb": imp["mb"],
                "reply_chunks": imp["doc_chunks"]}


def relay_hwm(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) // 1024
    return -1


def run_upload(py: str, mb: int, code: Path, label: str) -> dict:
    """One ``--max-size none`` bundle POSTed to ``/v1/bundle`` of a relay process of ``code``: its peak RSS."""
    import http.client
    from urllib.parse import urlsplit

    env = {**os.environ, "PYTHONPATH": str(code)}

    def step(name: str, **a: object) -> dict:
        p = subprocess.run([py, __file__, "--code", str(code), "--phase", name, json.dumps(a)], capture_output=True,
                           text=True, env=env)
        if p.returncode:
            raise SystemExit(f"step {name} ({label}, {mb} MB) failed:\n{p.stderr[-3000:]}")
        return json.loads(p.stdout.strip().splitlines()[-1])

    with tempfile.TemporaryDirectory() as t:
        t = Path(t)
        f = t / "scan.pdf"
        with f.open("wb") as out:
            for _ in range(mb):
                out.write(os.urandom(1_000_000))
        step("setup", dir=str(t), file=str(f))
        f.unlink()
        ex = step("export", home=str(t / "a"), out=str(t / "a.hbw"), max=None, pw=None)
        (bundle_file,) = ex["files"]
        srv = subprocess.Popen([py, "-m", "hbw_sync.server.cli", "serve", "--data", str(t / "relay"), "--port", "0"],
                               stderr=subprocess.PIPE, text=True, env=env, cwd=code)  # -m: cwd comes first on sys.path
        try:
            assert srv.stderr is not None
            url = urlsplit(srv.stderr.readline().strip().rsplit(" ", 1)[-1])
            threading.Thread(target=lambda: [None for _ in srv.stderr], daemon=True).start()  # type: ignore[union-attr]
            idle = relay_hwm(srv.pid)
            size = Path(bundle_file).stat().st_size
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
            try:
                with open(bundle_file, "rb") as body:  # streamed from disk: this process stays small
                    conn.request("POST", "/v1/bundle", body=body,
                                 headers={"Content-Type": "application/x-hbw-bundle", "Content-Length": str(size)})
                resp = conn.getresponse()
                status, reply = resp.status, len(resp.read())
            except (BrokenPipeError, ConnectionResetError):  # refused before the body was read
                status, reply = 413, 0
            finally:
                conn.close()
            peak = relay_hwm(srv.pid)
        finally:
            srv.terminate()
            srv.wait()
        return {"relay_idle_mb": idle, "upload_mb": peak, "status": status, "bundle_bytes": size, "reply_bytes": reply}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="20,200", help="document sizes in MB, comma-separated (default 20,200)")
    ap.add_argument("--old", default="", help="git revision of the baseline (default: merge base with main)")
    ap.add_argument("--no-old", action="store_true", help="skip the old code base")
    ap.add_argument("--quick", action="store_true", help="20 MB only")
    ap.add_argument("--upload-only", action="store_true", help="only step 4 (relay /v1/bundle upload), new and old")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--phase", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--code", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        phase(*args.phase)
        return 0
    py = sys.executable
    sizes = [20] if args.quick else [int(s) for s in args.sizes.split(",")]
    base = int(subprocess.run([py, "-c", "import hbw_sync.client.bundles, hbw_sync.server.admin;"
                               "print([int(l.split()[1])//1024 for l in open('/proc/self/status') "
                               "if l.startswith('VmHWM')][0])"], capture_output=True, text=True).stdout)
    results = []
    with tempfile.TemporaryDirectory() as old_dir:
        old = None
        if not args.no_old:
            rev = args.old or subprocess.run(["git", "-C", str(ROOT), "merge-base", "HEAD", "main"],
                                             capture_output=True, text=True).stdout.strip()
            arc = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "hbw_sync"], capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", old_dir], input=arc.stdout, check=True)
            old = (rev, Path(old_dir))
        for mb in sizes:
            row: dict = {"mb": mb}
            if not args.upload_only:
                row["new_none"] = run_size(py, mb, ROOT, None, "new, --max-size none")
                row["new_10mb"] = run_size(py, mb, ROOT, 10_000_000, "new, --max-size 10MB")
            if old is not None and not args.upload_only:
                row["old_10mb"] = run_size(py, mb, old[1], 10_000_000, "old, --max-size 10MB")
            row["upload_new"] = run_upload(py, mb, ROOT, "new, relay /v1/bundle upload")
            if old is not None:
                row["upload_old"] = run_upload(py, mb, old[1], "old, relay /v1/bundle upload")
            results.append(row)
    keys = ("export_mb", "ingest_mb", "reply_import_mb")
    ok = all(r[k][m] <= TARGET_MB for r in results for k in ("new_none", "new_10mb") if k in r for m in keys)
    ok = ok and all(r["upload_new"]["status"] == 200 and r["upload_new"]["upload_mb"] <= TARGET_MB for r in results)
    if args.json:
        print(json.dumps(_benchkit.stamp({"baseline_mb": base, "target_mb": TARGET_MB, "old_rev": old[0] if old else None,
                                          "results": results, "ok": ok}, ok, quick=args.quick), indent=1))
        return 0 if ok else 1
    print(f"baseline: a process that only imported hbw-sync: {base} MB; target ≤ {TARGET_MB} MB per step")
    for r in results:
        cols = [c for c in ("new_none", "new_10mb", "old_10mb") if c in r]
        if not cols:
            print(f"\n({r['mb']} MB: steps 1-3 skipped, --upload-only)")
        else:
            _table(r, cols, keys)
        ups = [c for c in ("upload_new", "upload_old") if c in r]
        print(f"\n| relay /v1/bundle upload ({r['mb']} MB document, one --max-size none bundle) | "
              + " | ".join(ups) + " |")
        print("|---|" + "---:|" * len(ups))
        print("| relay peak RSS | " + " | ".join(f"{r[c]['upload_mb']} MB" for c in ups) + " |")
        print("| relay idle RSS | " + " | ".join(f"{r[c]['relay_idle_mb']} MB" for c in ups) + " |")
        print("| HTTP status | " + " | ".join(str(r[c]["status"]) for c in ups) + " |")
        print("| bundle bytes | " + " | ".join(str(r[c]["bundle_bytes"]) for c in ups) + " |")
    return 0 if ok else 1


def _table(r: dict, cols: list[str], keys: tuple[str, ...]) -> None:
    """Steps 1-3 of one size, one column per code base and --max-size."""
    print(f"\n| step ({r['mb']} MB incompressible document) | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for m in keys:
        print(f"| {m} | " + " | ".join(f"{r[c][m]} MB" for c in cols) + " |")
    print("| files written | " + " | ".join(str(r[c]["export_files"]) for c in cols) + " |")
    print("| chunks in the imported reply | " + " | ".join(str(r[c]["reply_chunks"]) for c in cols) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
