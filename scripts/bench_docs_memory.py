"""Peak memory of each step of moving a 20 MB document through hbw-sync, each in its own process.

Run: .venv/bin/python scripts/bench_docs_memory.py [--mb 20]

Steps: add the document (read, hash, seal at rest, seal and sign the batch); sync it up without
the passphrase (resumable pieces read from the store); sync it down on another device; unlock
there (decrypt, verify, apply, store the version); and the relay's own peak. Each figure is the
process's VmHWM; the baseline line is a process that only imported hbw-sync. Target (issue 7):
under 150 MB while syncing a 20 MB document.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def hwm_mb(pid: str = "self") -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) // 1024
    return -1


def phase(name: str, home: str, pw: str, extra: str = "") -> None:
    from hbw_sync.client import Device
    from hbw_sync.client import sync as syncing

    if name == "add":
        with Device.open(Path(home)) as d:
            d.unlock(pw).add_doc(Path(extra))
    elif name == "sync":
        syncing.sync(Path(home), None)
    elif name == "unlock":
        with Device.open(Path(home)) as d:
            d.unlock(pw)
    print(hwm_mb())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=20, help="document size in MB (default 20)")
    ap.add_argument("--phase", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        phase(*args.phase)
        return 0
    from hbw_sync.client import sync as syncing
    from hbw_sync.server import admin
    from relay_helpers import FAST_KDF

    py = sys.executable

    def step(*a: str) -> int:
        out = subprocess.run([py, __file__, "--phase", *a], capture_output=True, text=True, check=True)
        return int(out.stdout.strip().splitlines()[-1])

    base = int(subprocess.run([py, "-c", "import hbw_sync.client.sync, hbw_sync.client.replica;"
                               "print([int(l.split()[1])//1024 for l in open('/proc/self/status') "
                               "if l.startswith('VmHWM')][0])"], capture_output=True, text=True).stdout)
    with tempfile.TemporaryDirectory() as t:
        t = Path(t)
        data = t / "relay"
        admin.init(data, "bench")
        srv = subprocess.Popen([py, "-m", "hbw_sync.server.cli", "serve", "--data", str(data), "--port", "0"],
                               stderr=subprocess.PIPE, text=True)
        try:
            assert srv.stderr is not None
            url = srv.stderr.readline().strip().rsplit(" ", 1)[-1]
            syncing.join(t / "a", admin.invite(data, "amina", "supervisor", url=url).encode(), "amina orchid lantern 52 ferry", kdf=FAST_KDF)
            syncing.join(t / "b", admin.invite(data, "chidi", url=url).encode(), "chidi quartz meadow 17 kettle", kdf=FAST_KDF)
            syncing.sync(t / "a", "amina orchid lantern 52 ferry")
            syncing.sync(t / "b", "chidi quartz meadow 17 kettle")
            f = t / "big.bin"
            f.write_bytes(os.urandom(args.mb * 1_000_000))
            rows = [
                ("add the document (sender)", step("add", str(t / "a"), "amina orchid lantern 52 ferry", str(f))),
                ("sync it up, unattended (sender)", step("sync", str(t / "a"), "amina orchid lantern 52 ferry", "")),
                ("sync it down, unattended (receiver)", step("sync", str(t / "b"), "chidi quartz meadow 17 kettle", "")),
                ("unlock and apply it (receiver)", step("unlock", str(t / "b"), "chidi quartz meadow 17 kettle", "")),
                ("relay process", hwm_mb(str(srv.pid))),
            ]
        finally:
            srv.terminate()
            srv.wait()
    print(f"| step ({args.mb} MB incompressible document) | peak RSS | target < 150 MB |")
    print("|---|---:|---|")
    print(f"| baseline: a process that only imported hbw-sync | {base} MB | - |")
    for name, mb in rows:
        print(f"| {name} | {mb} MB | {'PASS' if mb < 150 else 'FAIL'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
