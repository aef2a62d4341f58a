"""What each attack of issue 10 costs the relay now: peak memory, and a real sync's latency meanwhile.

Run: .venv/bin/python scripts/bench_hostile.py [--quick] [--json]

The relay runs in a subprocess (``tests/hostile_helpers.RelayProcess``, ``runner.serve``
with the default limits) so its resident size is its own: VmRSS before, VmHWM (the
peak, reset before each attack) and VmRSS after. A real device (a client store that
joined with an invite) syncs once while each attack runs, in another thread; its
latency stands next to the idle baseline. The descriptor attack uses a second relay
limited to 128 descriptors.

Attacks (each sent from the same machine, over loopback):
  token 4e9        enroll with ``token`` as the msgpack integer 4·10⁹, 20 times
  nested 31 MiB    a 31 MiB body of nested empty arrays, junk signature, 5 times
  gzip 20x40KB     20 concurrent gzip bodies (40 MiB each inflated)
  malformed 2500   2,500 random-byte requests on one kept-alive connection
  8x20 MiB         8 concurrent 20 MiB junk-signed bodies from one other address
  idle 150 @128fd  150 idle and half-sent connections to a relay with 128 descriptors
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from hostile_helpers import (MB, PASSPHRASE, RelayProcess, enroll_args, frame, join_device, nested_arrays,  # noqa: E402
                             open_hostile, post)
from hbw_sync.client import Device  # noqa: E402
from hbw_sync.client import sync as syncing  # noqa: E402
from hbw_sync.server import admin  # noqa: E402
import _benchkit  # noqa: E402  (scripts/: what every --json records)


def timed_sync(home: Path) -> float:
    t0 = time.perf_counter()
    report = syncing.sync(home, PASSPHRASE, timeout=60)
    if not report.ok:
        raise SystemExit(f"the real sync failed: {report.notes}")
    return time.perf_counter() - t0


def malformed(url: str, n: int) -> None:
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    for i in range(n):
        conn.request("POST", "/v1", body=os.urandom(100 + i % 300))
        r = conn.getresponse()
        r.read()
    conn.close()


def run_attack(r: RelayProcess, home: Path, attack: Callable[[], Any]) -> dict[str, float]:
    """Peak and after RSS of the relay during ``attack``, and one real sync's latency meanwhile."""
    before = r.status("VmRSS")
    r.reset_peak()
    done = threading.Event()

    def go() -> None:
        try:
            attack()
        finally:
            done.set()

    t = threading.Thread(target=go)
    t.start()
    time.sleep(0.05)  # let the attack start before the sync
    latency = timed_sync(home)
    t.join()
    time.sleep(0.5)  # the relay lets go of the last request's buffers
    return {"idle_mb": before / MB, "peak_mb": r.status("VmHWM") / MB, "after_mb": r.status("VmRSS") / MB,
            "sync_s": latency}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run: the idle baseline and the cheap attacks only")
    ap.add_argument("--json", action="store_true")
    opts = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hbw-bench-hostile-"))
    data = tmp / "relay"
    admin.init(data, "District Finance")
    r = RelayProcess(data)
    rows: dict[str, dict[str, float]] = {}
    try:
        home = tmp / "amina"
        join_device(data, r.url, home, "amina")
        with Device.open(home) as dev:
            device = dev.identity.device_id
        for _ in range(3):
            timed_sync(home)  # warm up
        idle = r.status("VmRSS")
        base = [timed_sync(home) for _ in range(5)]
        rows["idle (no attack)"] = {"idle_mb": idle / MB, "peak_mb": r.status("VmHWM") / MB,
                                    "after_mb": r.status("VmRSS") / MB, "sync_s": statistics.median(base)}
        token = frame(os.urandom(8), "enroll", enroll_args(4_000_000_000))
        rows["token 4e9 x20"] = run_attack(r, home, lambda: [post(r.url, token) for _ in range(20)])
        nested = frame(device, "sync", nested_arrays(31 << 20))
        if opts.quick:  # the token attack and 250 malformed requests; the big bodies take minutes
            rows["malformed 250"] = run_attack(r, home, lambda: malformed(r.url, 250))
            return _report(rows, opts)
        rows["nested 31 MiB x5"] = run_attack(r, home, lambda: [post(r.url, nested) for _ in range(5)])
        bomb = gzip.compress(bytes(40 << 20))

        def gz() -> None:
            with ThreadPoolExecutor(20) as ex:
                list(ex.map(lambda _: post(r.url, bomb, {"Content-Encoding": "gzip"}), range(20)))

        rows["gzip 20x40KB"] = run_attack(r, home, gz)
        rows["malformed 2500"] = run_attack(r, home, lambda: malformed(r.url, 2500))
        big = frame(device, "sync", nested_arrays(20 << 20))

        def one_big(_: int) -> None:
            try:
                post(r.url, big, source="127.0.0.2")
            except OSError:
                pass  # refused mid-body (transient.busy): the relay closed the connection

        def concurrent_big() -> None:
            with ThreadPoolExecutor(8) as ex:
                list(ex.map(one_big, range(8)))

        rows["8x20 MiB at once"] = run_attack(r, home, concurrent_big)
    finally:
        r.stop()

    data2 = tmp / "relay2"
    admin.init(data2, "District Finance")
    r2 = RelayProcess(data2, nofile=128)
    held: list = []
    try:
        home2 = tmp / "bosco"
        join_device(data2, r2.url, home2, "bosco")
        timed_sync(home2)
        rows["idle 150 @128fd"] = run_attack(r2, home2, lambda: held.extend(open_hostile(r2.url, 150)))
    finally:
        for s in held:
            s.close()
        r2.stop()

    return _report(rows, opts)


def _report(rows: dict[str, dict[str, float]], opts: argparse.Namespace) -> int:
    """Print the rows; no targets here (the limits are tested in tests/test_hostile.py): exit 0."""
    if opts.json:
        print(json.dumps(_benchkit.stamp({"rows": rows}, True, quick=opts.quick), indent=2))
        return 0
    print(f"{'attack':20s} {'idle RSS':>9s} {'peak RSS':>9s} {'after':>9s} {'sync':>8s}")
    for name, v in rows.items():
        print(f"{name:20s} {v['idle_mb']:7.0f}MB {v['peak_mb']:7.0f}MB {v['after_mb']:7.0f}MB {v['sync_s'] * 1000:6.0f}ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
