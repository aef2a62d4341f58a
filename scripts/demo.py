"""The hbw-sync demo: a supervisor plans the week offline, and we look at what leaves the laptop.

Runs the real CLI (as subprocesses, like a person would) on temporary homes.
It grows with the project: the relay and enrollment come next.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from hbw_sync import batch as wire
from hbw_sync.client import Device

WEEK = """title,description,assignee,due,priority,needs
Reconcile October invoices,Match each invoice to its budget line and flag gaps.,amina,+2d,high,"laptop,internet"
File building permits,Paper files from the registry; stamp and shelve.,bosco,+3d,normal,office
Inspect market stalls in Ward 4,Check licences and hygiene certificates on site.,chidi,+1d,urgent,laptop
Prepare quarterly budget summary,Two pages for the council meeting.,dana,+4d,normal,laptop
"""


def say(text: str) -> None:
    print(f"\n== {text}")


def run(home: Path, *args: str, show: bool = True) -> str:
    env = {**os.environ, "HBW_SYNC_HOME": str(home), "HBW_PASSPHRASE": "correct horse battery"}
    cmd = [sys.executable, "-m", "hbw_sync.client.cli", *args]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if show:
        print("$ hbw-sync " + " ".join(args))
        out = (res.stdout + res.stderr).rstrip()
        if out:
            print("  " + out.replace("\n", "\n  "))
    return res.stdout


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="hbw-demo-") as tmp:
        dana = Path(tmp) / "dana"
        say("Monday, no network at all: Dana sets up her laptop and starts the team")
        run(dana, "init", "--name", "dana")
        run(dana, "team", "create", "District Finance Office")

        say("She imports the week's plan from a spreadsheet (all rows checked first)")
        plan = Path(tmp) / "week.csv"
        plan.write_text(WEEK)
        run(dana, "task", "import", str(plan))
        run(dana, "task", "list")

        say("A bad spreadsheet is refused as a whole, with line numbers")
        bad = Path(tmp) / "bad.csv"
        bad.write_text("title,due\nOK row,+1d\n,+1d\nAnother,31/12/2026\n")
        run(dana, "task", "import", str(bad))

        say("She works offline: a note, a status change, her working profile")
        first = json.loads(run(dana, "task", "list", "--json", show=False))[0]["id"][:6]
        run(dana, "task", "note", first, "Supplier confirmed by phone")
        run(dana, "task", "start", first)
        run(dana, "profile", "--laptop", "--no-internet", "--office-days", "mon,thu")

        say("Everything waits in the outbox, signed and encrypted; 'status' needs no passphrase")
        env_status = subprocess.run(
            [sys.executable, "-m", "hbw_sync.client.cli", "status"],
            env={k: v for k, v in {**os.environ, "HBW_SYNC_HOME": str(dana)}.items() if k != "HBW_PASSPHRASE"},
            capture_output=True, text=True,
        )
        print("  " + env_status.stdout.rstrip().replace("\n", "\n  "))

        say("What the office relay will see of the outbox: routing only, never titles")
        with Device.open(dana) as dev:
            rows = dev.store.execute("SELECT data FROM outbox ORDER BY seq").fetchall()
        total = 0
        for (data,) in rows:
            frame = wire.parse_batch(data)
            total += len(data)
            for op in frame.routing_ops():
                print(f"  {op.kind.name.lower():6} {op.entity.hex()[:6]}  {op.named()}  content: sealed")
        print(f"  {sum(1 for _ in rows)} batch(es), {total} bytes for the whole week's plan and edits")

        say("A byte changed in transit (a tampered email attachment) is refused")
        data = bytearray(rows[0][0])
        data[len(data) // 2] ^= 0x20
        try:
            with Device.open(dana) as dev:
                wire.decode_batch(bytes(data), dev.store.meta("author_public"), {}, team=dev.store.meta("team_id"))
            print("  accepted (this would be a bug)")
            return 1
        except Exception as e:  # noqa: BLE001 - shown to the reader
            print(f"  refused: {e}")

        say("The local store holds no title in clear, even in its WAL")
        raw = b"".join(p.read_bytes() for p in dana.iterdir() if p.name.startswith("store.db"))
        print("  'Reconcile October invoices' found in the raw files:", b"Reconcile October" in raw)
        say("Done. Next in the project: the office relay, enrollment and online sync.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
