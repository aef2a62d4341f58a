"""Snapshots trusted only when they should be: the issue-10 attack replayed, and what the checks cost.

    .venv/bin/python scripts/bench_snapshot.py                 # 6,814 tasks, as in the issue
    .venv/bin/python scripts/bench_snapshot.py --quick --json  # 800 tasks, machine-readable

Scenario (a real relay in a thread on loopback, real stores, real HTTP): a supervisor imports
``--tasks`` tasks (the issue's figure: 6,814) and adds ``--small`` one-task batches; a member
adds one task. Then, side by side:

* **attack**: the member's device sends an empty snapshot claiming to cover all history, signed
  by its own key (what a modified client can send). Before: the relay kept it and a later joiner
  saw 0 tasks for ever. Now: the relay's answer (``snapshot_refused`` code), snapshots kept.
* **hostile relay host**: the relay's answers re-signed with its own key serve the member's
  snapshot to a new device anyway; tasks that device sees after its syncs, and what it says.
* **joiners**: bytes received and round trips of a device joining without a snapshot (replaying
  the history: what a refusal costs) and of one joining after a supervisor's snapshot.
* **relay check cost**: median time of ``relay.check_snapshot`` (author, signature, coverage
  against the stored batches) on the relay's database, at this history size.

Targets (exit 1 on a miss): the member's snapshot is refused and none is kept; both later
joiners see every task; the check takes under 50 ms at 6,814 tasks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hbw_sync import crypto, envelope, snapshot  # noqa: E402
from hbw_sync.client import Device  # noqa: E402
from hbw_sync.client import sync as syncing  # noqa: E402
from hbw_sync.client import snapshots, team as teams  # noqa: E402
from hbw_sync.client.vault import KdfParams  # noqa: E402
from hbw_sync.server import admin, relay  # noqa: E402
from hbw_sync.server.app import RelayConfig  # noqa: E402
from hbw_sync.server.runner import RelayThread  # noqa: E402
import _benchkit  # noqa: E402  (scripts/: what every --json records)

KDF = KdfParams(n=2**12)  # bench only: the store's passphrase cost is not what is measured
PASS = "orchid lantern 52 ferry"
CHECK_TARGET_S = 0.050


class Counting:
    """A transport that counts the bytes of every answer, and may rewrite sync answers as the relay host."""

    def __init__(self, relay_key: crypto.DeviceKey | None = None, inject: Any = None):
        self.bytes_in = 0
        self.round_trips = 0
        self.key, self.inject = relay_key, inject

    async def __call__(self, url: str, body: bytes, timeout: float) -> bytes:
        raw = await syncing.post(url, body, timeout)
        req = envelope.parse_request(body)
        if self.inject is not None and self.key is not None and req.action == "sync":
            res = envelope.parse_response(raw, self.key.public, req.nonce).result
            new = self.inject(req.args, res)
            if new is not None:
                raw = envelope.make_response(self.key, req.nonce, new, relay.now_ms())
        self.bytes_in += len(raw)
        self.round_trips += 1
        return raw


def join(data: Path, url: str, home: Path, name: str, role: str = "member", transport: Any = syncing.post) -> None:
    """The first device joins with office IT's invite; the others with its invite, which carries the team key
    (an IT invite would leave them waiting for an approval, holding no key: PROTOCOL.md §14b)."""
    first = home.parent / "dana"
    invite = (admin.invite(data, name, role, url=url) if home == first
              else teams.make_invite(first, PASS, name, role, url=url))
    syncing.join(home, invite.encode(), PASS, kdf=KDF, transport=transport)


def n_tasks(home: Path) -> int:
    with Device.open(home).unlock(PASS) as rep:
        return len(rep.tasks())


def device_id(home: Path) -> bytes:
    with Device.open(home) as dev:
        return dev.store.meta("device_id")


def send_snapshot(home: Path, cursor: int, data: bytes) -> dict[str, Any]:
    with Device.open(home) as dev:
        s = dev.store
        body, nonce = envelope.make_request(dev.transport_key(), s.meta("device_id"), "sync",
                                            {"cursor": s.meta("pull_cursor", 0), "snapshot": [cursor, data]},
                                            relay.now_ms())
        raw = asyncio.run(syncing.post(s.meta("relay_url"), body, 60))
        return envelope.parse_response(raw, s.meta("relay_public"), nonce).result


def forged_by(home: Path, cursor: int, coverage: dict[bytes, int]) -> bytes:
    with Device.open(home).unlock(PASS) as rep:
        key = rep.current_key()
        snap = snapshot.Snapshot(rep.require_team(), rep.author.device_id, cursor, key.epoch, (), coverage)
        return snapshot.encode(snap, rep.author, key)


def run(tasks: int, small: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        data = tmp / "relay"
        admin.init(data, "District Finance")
        relay.SNAPSHOT_EVERY = 10**9  # no snapshot until the scenario asks for one
        relay.SNAPSHOT_MIN_BYTES = relay.SNAPSHOT_BYTES_PERCENT = 10**15  # (by count or by bytes)
        thread = RelayThread(RelayConfig(data=data, port=0, access_log=False))
        url = thread.start()
        try:
            dana, chidi = tmp / "dana", tmp / "chidi"
            join(data, url, dana, "dana", "supervisor")
            join(data, url, chidi, "chidi")
            syncing.sync(dana, PASS)
            t0 = time.monotonic()
            with Device.open(dana).unlock(PASS) as rep:
                rep.add_tasks([{"title": f"task {i}", "assignee": "chidi"} for i in range(tasks)])
            for i in range(small):
                with Device.open(dana).unlock(PASS) as rep:
                    rep.add_task(f"small {i}")
                syncing.sync(dana, None)
            syncing.sync(dana, PASS)
            with Device.open(chidi).unlock(PASS) as rep:
                rep.add_task("chidi's task")
            syncing.sync(chidi, PASS)
            syncing.sync(dana, PASS)
            build_s = time.monotonic() - t0
            total = tasks + small + 1
            conn = sqlite3.connect(data / "relay.db")
            top = conn.execute("SELECT MAX(rseq) FROM batches").fetchone()[0]
            held = relay.snapshot_coverage(conn, top)
            conn.close()

            # 1. the attack: a member's empty snapshot claiming everything
            res = send_snapshot(chidi, top, forged_by(chidi, top, held))
            refused = (res.get("snapshot_refused") or {}).get("code")
            conn = sqlite3.connect(data / "relay.db")
            kept = conn.execute("SELECT COUNT(*) FROM snapshots").fetchone()[0]
            conn.close()

            # 2. a joiner with no snapshot anywhere: the full history (what a refusal costs)
            plain = Counting()
            join(data, url, tmp / "amina", "amina", transport=plain)

            # 3. the relay host serves the member's snapshot anyway
            bogus = forged_by(chidi, top, held)
            relay_key = crypto.DeviceKey((data / "relay.key").read_bytes())

            def inject(args: dict[str, Any], res: dict[str, Any]) -> dict[str, Any] | None:
                if args.get("cursor") == 0 and not args.get("no_snapshot"):
                    return res | {"snapshot": [top, device_id(chidi), bogus], "batches": [], "cursor": top,
                                  "more": False}
                return None

            hostile = Counting(relay_key, inject)
            join(data, url, tmp / "eve", "eve", transport=hostile)

            # 4. a supervisor's snapshot, and a joiner after it
            relay.SNAPSHOT_EVERY = 1
            snapshots.SAVES_FACTOR = 0  # send it even where history is about the state's size, as here
            syncing.sync(dana, PASS)
            relay.SNAPSHOT_EVERY = 10**9
            conn = sqlite3.connect(data / "relay.db")
            row = conn.execute("SELECT cursor, device, data FROM snapshots ORDER BY id DESC LIMIT 1").fetchone()
            conn.close()
            with_snap = Counting()
            join(data, url, tmp / "bosco", "bosco", transport=with_snap)

            syncing.sync(dana, PASS)  # grants the newcomers the team key
            seen = {}
            notes = []
            for name in ("amina", "eve", "bosco"):
                r = syncing.sync(tmp / name, PASS)
                seen[name] = n_tasks(tmp / name)
                if name == "eve":
                    with Device.open(tmp / "eve") as dev:
                        notes = [n for n in dev.status()["notices"] if "summary" in n]

            # 5. the relay's check, at this history size
            conn = sqlite3.connect(data / "relay.db")
            ident = relay.load_identity(data, conn)
            times = []
            for _ in range(20):
                t = time.perf_counter()
                relay.check_snapshot(conn, ident, row[1], row[0], row[2])
                times.append(time.perf_counter() - t)
            conn.close()
        finally:
            thread.stop()
    return {
        "tasks": total, "batches": top, "build_s": round(build_s, 1),
        "member_snapshot": {"relay_answer": refused, "snapshots_kept": kept},
        "hostile_relay": {"tasks_seen": seen["eve"], "told": notes[:1], "bytes_in": hostile.bytes_in,
                          "round_trips": hostile.round_trips},
        "joiner_replaying": {"tasks_seen": seen["amina"], "bytes_in": plain.bytes_in, "round_trips": plain.round_trips},
        "joiner_with_snapshot": {"tasks_seen": seen["bosco"], "bytes_in": with_snap.bytes_in,
                                 "round_trips": with_snap.round_trips, "snapshot_bytes": len(row[2])},
        "relay_check_ms": {"median": round(statistics.median(times) * 1000, 2),
                           "max": round(max(times) * 1000, 2)},
        "last_sync_ok": r.ok,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=6_814)
    ap.add_argument("--small", type=int, default=40, help="one-task batches after the import")
    ap.add_argument("--quick", action="store_true", help="800 tasks, 10 small batches")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    tasks, small = (800, 10) if a.quick else (a.tasks, a.small)
    out = run(tasks, small)
    misses = []
    if out["member_snapshot"] != {"relay_answer": "access.role", "snapshots_kept": 0}:
        misses.append("the relay kept or did not refuse a member's snapshot")
    for k in ("hostile_relay", "joiner_replaying", "joiner_with_snapshot"):
        if out[k]["tasks_seen"] != out["tasks"]:
            misses.append(f"{k}: saw {out[k]['tasks_seen']} of {out['tasks']} tasks")
    if out["relay_check_ms"]["median"] > CHECK_TARGET_S * 1000 * max(1, out["tasks"] / 6_814):
        misses.append(f"relay check {out['relay_check_ms']['median']} ms")
    out["misses"] = misses
    if a.json:
        print(json.dumps(_benchkit.stamp(out, not misses, quick=a.quick), indent=2))
    else:
        print(f"{out['tasks']:,} tasks in {out['batches']} batches (built in {out['build_s']} s)")
        m = out["member_snapshot"]
        print(f"member's bogus snapshot: relay answers {m['relay_answer']}, snapshots kept {m['snapshots_kept']} "
              "(before: kept, later joiners saw 0 tasks)")
        h = out["hostile_relay"]
        print(f"served anyway by the relay host: new device sees {h['tasks_seen']:,} tasks, "
              f"{h['bytes_in']:,} bytes in {h['round_trips']} round trips; told: {h['told'][0] if h['told'] else '-'}")
        for k, label in (("joiner_replaying", "joiner replaying history"), ("joiner_with_snapshot", "joiner with snapshot")):
            j = out[k]
            print(f"{label:26} {j['tasks_seen']:,} tasks, {j['bytes_in']:,} bytes in {j['round_trips']} round trips")
        c = out["relay_check_ms"]
        print(f"relay check of a snapshot: median {c['median']} ms, max {c['max']} ms (target < {CHECK_TARGET_S * 1000:.0f} ms)")
        print("targets met" if not misses else "MISSED: " + "; ".join(misses))
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
