"""The hbw-sync demo: an office relay on this machine, three officials, a week in miniature.

Everything runs through the real command-line tools, as subprocesses, exactly as
office IT and the officials would type them: `hbw-relay` serves on a free
loopback port, `hbw-sync` keeps each official's encrypted store in a temporary
home. Nothing leaves this machine.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Dana's week, as she keeps it in Excel: (title, description, assignee, due in days, priority, needs).
WEEK = [
    ("Reconcile October invoices", "Match each invoice to its budget line and flag gaps.", "amina", 2, "high",
     "laptop, internet"),
    ("File building permits", "Paper files from the registry; stamp and shelve.", "bosco", 3, "normal", "office"),
    ("Inspect market stalls in Ward 4", "Check licences and hygiene certificates on site.", "chidi", 1, "urgent",
     "laptop"),
    ("Prepare quarterly budget summary", "Two pages for the council meeting.", "dana", 4, "normal", "laptop"),
    ("Answer the auditor's questions", "Letter due before Friday.", "amina", 3, "normal", "internet"),
]
# The registry's list, saved by LibreOffice Calc on a Windows desk machine: Windows-1252, ';', French,
# dates typed day first.
REGISTRY_CSV = (
    "Titre;Responsable;Échéance;Priorité;Besoins\r\n"
    "Classer les reçus de caisse;bosco;{d3};normale;bureau\r\n"
    "Vérifier le registre des chèques;bosco;{d3};basse;bureau\r\n"
)


def write_week(root: Path) -> tuple[Path, Path]:
    """Dana's .xlsx (real date cells) and the registry's Windows-1252 CSV, as office software saves them."""
    import datetime as dt

    from openpyxl import Workbook

    today = dt.date.today()
    wb = Workbook()
    ws = wb.active
    ws.title = "This week"
    ws.append(["Task", "Details", "Assigned to", "Due date", "Priority", "Needs"])
    for title, desc, who, days, pri, needs in WEEK:
        ws.append([title, desc, who.capitalize(), today + dt.timedelta(days=days), pri.capitalize(), needs])
        ws.cell(ws.max_row, 4).number_format = "dd/mm/yyyy"
    xlsx = root / "week-49.xlsx"
    wb.save(xlsx)
    d3 = (today + dt.timedelta(days=3)).strftime("%d/%m/%Y")
    csv_file = root / "registre.csv"
    csv_file.write_bytes(REGISTRY_CSV.format(d3=d3).encode("cp1252"))
    return xlsx, csv_file


PY = sys.executable


def say(text: str) -> None:
    print(f"\n== {text}")


def show(res: subprocess.CompletedProcess, cmd: str) -> None:
    print(f"$ {cmd}")
    out = (res.stdout + res.stderr).rstrip()
    if out:
        print("  " + out.replace("\n", "\n  "))


class Official:
    def __init__(self, name: str, root: Path):
        self.name = name
        self.home = root / name
        self.env = {**os.environ, "HBW_SYNC_HOME": str(self.home), "HBW_PASSPHRASE": f"{name} orchid lantern 52 ferry"}

    def run(self, *args: str, quiet: bool = False, passphrase: bool = True,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        env = dict(self.env) | (extra_env or {})
        if not passphrase:
            env.pop("HBW_PASSPHRASE")
        res = subprocess.run([PY, "-m", "hbw_sync.client.cli", *args], env=env, capture_output=True, text=True)
        if not quiet or res.returncode != 0:  # a failure is always shown, even of a step run quietly
            show(res, f"[{self.name}] hbw-sync " + " ".join(a if len(a) < 40 else a[:24] + "..." for a in args))
        return res


def relay_cmd(*args: str) -> subprocess.CompletedProcess:
    res = subprocess.run([PY, "-m", "hbw_sync.server.cli", *args], capture_output=True, text=True)
    show(res, "hbw-relay " + " ".join(a if len(a) < 40 else a[:24] + "..." for a in args))
    return res


def main() -> int:
    """The story; then, unless --clean, the stores stay so the app can be opened on them (issue 14 item 7)."""
    if "--clean" in sys.argv[1:]:
        with tempfile.TemporaryDirectory(prefix="hbw-demo-") as tmp:
            return run(Path(tmp))[0]
    root = Path(tempfile.mkdtemp(prefix="hbw-demo-"))
    code, url = run(root)
    print_app_help(root, url)
    return code


def run(root: Path) -> tuple[int, str]:
    data = root / "relay"
    say("Monday, 8:00. Office IT sets up the relay on the office server")
    relay_cmd("init", "--data", str(data), "--team", "District Finance Office")
    server = subprocess.Popen([PY, "-m", "hbw_sync.server.cli", "serve", "--data", str(data), "--port", "0"],
                              stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert server.stderr is not None
        line = server.stderr.readline()
        url = line.strip().rsplit(" ", 1)[-1]
        print(f"  (relay listening on {url})")
        return story(root, data, url), url
    finally:
        server.terminate()
        server.wait(10)


def print_app_help(root: Path, url: str) -> None:
    """How to open the local app on the stores the demo left, in words and commands to paste."""
    bin_dir = Path(PY).parent
    port = url.rstrip("/").rsplit(":", 1)[-1]
    say("Open the app on the demo's stores (no terminal skills needed once it is open)")
    print(f"   The demo kept everyone's store in {root}. Each passphrase is the name then "
          "'orchid lantern 52 ferry' (e.g. 'dana orchid lantern 52 ferry').")
    print("   Dana, the supervisor (My work, Team with the workload chart, Import):")
    print(f"     {bin_dir / 'hbw-sync'} --home {root / 'dana'} app")
    print("   Bosco at the office desk machine:")
    print(f"     {bin_dir / 'hbw-sync'} --home {root / 'bosco'} app")
    print("   It opens your browser; Ctrl+C stops it. The demo's relay has stopped, so Sync now says the")
    print("   relay cannot be reached and keeps everything. To sync from the app too, start the relay again")
    print(f"   on its port first: {bin_dir / 'hbw-relay'} serve --data {root / 'relay'} --port {port}")
    print(f"   When you are done: rm -rf {root}   (scripts/demo --clean leaves nothing behind)")


def story(root: Path, data: Path, url: str) -> int:
    dana, amina, chidi, bosco = (Official(n, root) for n in ("dana", "amina", "chidi", "bosco"))
    say("IT writes the first invite, for Dana, the supervisor (handed over in person, never by email)")
    res = relay_cmd("invite", "--data", str(data), "dana", "--role", "supervisor", "--url", url, "--json")
    dana.run("join", json.loads(res.stdout)["invite"])
    say("Dana's is the team's first device: it made the team key. She invites Amina and Chidi herself:")
    print("   each invite holds a secret the relay never sees, so their devices get the key when they join")
    for o in (amina, chidi):
        inv = json.loads(dana.run("team", "invite", o.name, "--json", quiet=True).stdout)["invite"]
        o.run("join", inv)
    say("Bosco's invite is read out to him by phone by IT: a number and five words")
    res = relay_cmd("invite", "--data", str(data), "bosco", "--url", url, "--words", "--json")
    spoken = json.loads(res.stdout)["words"].split("-")
    print("   Bosco has no laptop: he joins from the office desk machine, typing four letters of each word")
    bosco.run("join", "--relay", url, spoken[0], *(w[:4] for w in spoken[1:]))
    wait = json.loads(bosco.run("status", "--json", quiet=True, passphrase=False).stdout)["key_flow"][0]
    say("An invite from IT alone gives no key: Dana reads the code on Bosco's screen and approves it")
    dana.run("team", "pending")
    dana.run("team", "approve", *wait["code"].split())
    bosco.run("profile", "--no-laptop", "--no-internet", "--office-days", "mon,thu")
    for o in (amina, chidi, dana):
        o.run("profile", "--laptop", "--internet", quiet=True)

    say("Dana syncs: her device learns who has joined, and admits the devices it invited (the relay")
    print("   never holds the key). Then she imports the week's plan from her Excel sheet (.xlsx)")
    dana.run("sync")  # the import refuses assignees her device does not know: a typo is not a new colleague
    xlsx, registry = write_week(root)
    dana.run("task", "import", str(xlsx))
    print("   The registry's list comes as a CSV saved on Windows (Windows-1252, ';', dates 05/12/2026).")
    print("   Dana looks before she leaps, then imports it; importing the .xlsx again duplicates nothing")
    dana.run("task", "import", str(registry), "--dry-run")
    dana.run("task", "import", str(registry))
    dana.run("task", "import", str(xlsx))
    dana.run("sync")
    for o in (amina, chidi, bosco):
        o.run("sync")
    amina.run("task", "list", "--mine")

    say("Tuesday: Amina works offline all day. A note, a status change, a report")
    tasks = json.loads(amina.run("task", "list", "--mine", "--json", quiet=True).stdout)
    inv = next(t for t in tasks if t["title"].startswith("Reconcile"))["id"][:6]
    amina.run("task", "note", inv, "Two invoices missing from the Ward 2 ledger")
    amina.run("task", "start", inv)
    report = root / "invoices-report.txt"
    import random
    rng = random.Random(7)
    lines = [f"Invoice {rng.randint(10000, 99999)} ward {rng.randint(1, 9)} line {rng.randint(100, 999)}: "
             f"{rng.choice(['matched', 'missing', 'duplicate', 'matched', 'matched'])} {rng.randint(1, 9999)}.00\n"
             for _ in range(20000)]
    report.write_text("Reconciliation of October invoices\n" + "".join(lines))
    amina.run("doc", "add", str(report), "--task", inv)
    amina.run("sync", "--quiet", passphrase=False, quiet=True)
    say("She corrects one line of the 1 MB report: only the change travels (a delta, checked by hash)")
    lines[5000] = "Invoice 55555 ward 2 line 123: corrected after the supplier's call 1200.00\n"
    report.write_text("Reconciliation of October invoices\n" + "".join(lines))
    doc_id = json.loads(amina.run("doc", "list", "--json", quiet=True).stdout)[0]["id"][:6]
    amina.run("doc", "update", doc_id, str(report))
    say("Her laptop's scheduler runs 'status' and 'sync' with no passphrase: nothing to type, no prompt")
    amina.run("status", passphrase=False)

    say("Meanwhile Chidi, also offline, adds a note to the same task and reassigns another")
    chidi.run("task", "note", inv, "Ward 2 ledger is at the registry, I can fetch it Thursday")
    ctasks = json.loads(chidi.run("task", "list", "--json", quiet=True).stdout)
    audit_task = next(t for t in ctasks if t["title"].startswith("Answer"))["id"][:6]
    chidi.run("task", "assign", audit_task, "chidi")

    say("Evening: Amina's 3G link is up; she syncs the scheduler's way (no passphrase)")
    amina.run("sync", "--budget", "50KB", passphrase=False)
    say("Chidi has no data plan: he emails a bundle from his phone; the office ingests it and mails the reply")
    bundle_file = root / "chidi-tuesday.hbw"
    chidi.run("bundle", "export", str(bundle_file))
    res = relay_cmd("bundle", "ingest", "--data", str(data), str(bundle_file), "--reply-dir", str(root / "outbox-mail"),
                    "--json")
    reply = json.loads(res.stdout)["reply"]
    chidi.run("bundle", "import", reply)
    amina.run("sync", passphrase=False)
    say("Next morning, each sees the other's work: both notes kept, nothing overwritten")
    amina.run("task", "show", inv)
    chidi.run("doc", "list")

    say("Her son saw her type her passphrase: she changes it. A weak one is refused, with the reason")
    stale = amina.env["HBW_PASSPHRASE"]
    amina.run("passphrase", "change", extra_env={"HBW_NEW_PASSPHRASE": "amina2026"})
    amina.run("passphrase", "change", extra_env={"HBW_NEW_PASSPHRASE": "amina violet harbor 83 pencil"})
    amina.env["HBW_PASSPHRASE"] = "amina violet harbor 83 pencil"
    amina.run("passphrase", "check")

    say("Wednesday: Amina falls ill and sets herself away")
    amina.run("profile", "--away-until", "+2d")
    say("Her scheduler still sets the old passphrase: the sync runs anyway, says so, and exits 0")
    res = amina.run("sync", "--quiet", extra_env={"HBW_PASSPHRASE": stale})
    print(f"  exit code: {res.returncode}")
    say("Dana, offline, gives Amina's auditor letter to Chidi; Chidi, offline, gives it to Bosco")
    dana.run("task", "assign", audit_task, "chidi")
    chidi.run("task", "assign", audit_task, "bosco")
    for o in (chidi, dana, chidi, bosco):
        o.run("sync", "--quiet", quiet=True)
    say("The relay settles it the same way everywhere, and records the conflict")
    relay_cmd("conflicts", "--data", str(data))
    chidi.run("status")
    say("Rebalancing: Amina's urgent laptop work must not wait for her, and must not go to Bosco")
    relay_cmd("rebalance", "--data", str(data))
    relay_cmd("rebalance", "--data", str(data), "--apply", "--json")
    for o in (dana, chidi, amina, bosco):
        o.run("sync", "--quiet", quiet=True)
    relay_cmd("workload", "--data", str(data))
    amina.run("status", passphrase=False)

    say("Thursday: Bosco at the office desk machine sees his office-day tasks")
    bosco.run("task", "list", "--mine")

    say("Thursday: Chidi's laptop is reported lost. IT revokes it")
    devices = json.loads(relay_cmd("devices", "--data", str(data), "--json").stdout)
    lost = next(d["device"] for d in devices if d["member"] == "chidi")
    relay_cmd("devices", "revoke", "--data", str(data), lost[:8], "--yes")
    res = chidi.run("sync")
    print(f"  (exit code {res.returncode}: the lost laptop can no longer sync)")
    say("Dana's next sync rotates the team key: new work is sealed with a key the lost laptop never had")
    dana.run("sync")
    amina.run("sync")

    say("What the office relay holds: routing metadata and sealed batches, never a title")
    conn = sqlite3.connect(data / "relay.db")
    raw = b"".join(r[0] for r in conn.execute("SELECT data FROM batches"))
    n, size = conn.execute("SELECT COUNT(*), SUM(size) FROM batches").fetchone()
    conn.close()
    print(f"  {n} batches, {size} bytes in all (zstd shrank the 44 KB report before sealing it)")
    print("  'Reconcile October invoices' readable at the relay:", b"Reconcile October" in raw)
    print("  'Two invoices missing' readable at the relay:", b"Two invoices missing" in raw)
    relay_cmd("audit", "--data", str(data), "--limit", "8")

    say("Friday: the registry had already checked the cheques; Dana deletes that task for everyone")
    print("   (it leaves every list and the workload; the relay's audit keeps who deleted it) and exports")
    print("   the week to a spreadsheet for her report")
    dtasks = json.loads(dana.run("task", "list", "--json", quiet=True).stdout)
    cheques = next(t for t in dtasks if t["title"].startswith("Vérifier le registre"))["id"][:6]
    dana.run("task", "delete", cheques, "--yes")
    dana.run("task", "export", str(root / "week-49-report.xlsx"))
    dana.run("sync", "--quiet", quiet=True)
    relay_cmd("audit", "--data", str(data), "--limit", "2")

    say("Friday: everyone who still has a device sees the same tasks")
    for o in (bosco, amina, dana):
        o.run("sync", "--quiet", quiet=True)
    views = {}
    for o in (amina, bosco, dana):
        views[o.name] = {t["id"]: (t["title"], t["assignee"], t["status"], len(t["notes"]))
                         for t in json.loads(o.run("task", "list", "--json", quiet=True).stdout)}
    same = views["amina"] == views["bosco"] == views["dana"]
    print(f"  Amina, Bosco and Dana agree on all {len(views['dana'])} tasks: {same}")
    dana.run("task", "list")
    for o in (amina, dana):
        o.run("doc", "get", doc_id, "-o", str(root / f"report-{o.name}.txt"), quiet=True)
    same_doc = (root / "report-amina.txt").read_bytes() == (root / "report-dana.txt").read_bytes() == report.read_bytes()
    print(f"  Dana's copy of the report is byte-for-byte Amina's latest version: {same_doc}")
    say("Done.")
    same = same and same_doc
    return 0 if same else 1


if __name__ == "__main__":
    t0 = time.time()
    code = main()
    print(f"\n(demo took {time.time() - t0:.1f} s)")
    raise SystemExit(code)
