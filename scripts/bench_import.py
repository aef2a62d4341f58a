"""Import benchmark: reading, planning and importing a supervisor's plan from .xlsx and a Windows CSV.

Run: .venv/bin/python scripts/bench_import.py [--rows 5000] [--quick] [--json]

Measures, per file kind (.xlsx written by openpyxl with date cells; CSV in Windows-1252 with ';'
and dd/mm/yyyy dates, as LibreOffice Calc saves it on Windows):
* read: the file into rows of cells (python-calamine for .xlsx; our encoding and separator
  detection, then the csv module, for CSV), against a baseline that reads the same file the
  plain way (openpyxl read-only for .xlsx; csv.reader on text already known to be Windows-1252);
* plan: headers, dates, values, members and matching against the store's tasks;
* import: read + plan + one atomic change into a real encrypted store (seal, merge, log, queue);
* re-import: the same file again (every row matched, nothing written).
Also the 40-task week of USERS.md's Monday, end to end.
Targets: the 40-task week imports in under 1 s per file; 5,000 rows import at >= 1,000 rows/s
and re-import at >= 2,000 rows/s. Exit 1 on a miss.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hbw_sync.client import Device, importer  # noqa: E402
from hbw_sync.client.vault import KdfParams  # noqa: E402
import _benchkit  # noqa: E402  (scripts/: what every --json records)

PASS = "orchid lantern 52 ferry"
TEAM = frozenset({"amina", "bosco", "chidi"})
WORDS = ("facture permis inspection budget registre quartier tampon paie audit licence fournisseur conseil "
         "rapport trimestre subvention appel reçu hygiène marché échéancier").split()
HEADER = ["Réf", "Tâche", "Responsable", "Échéance", "Priorité", "Besoins", "Commentaires"]


def rows(n: int, seed: int = 1) -> list[list]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        title = " ".join(rng.choice(WORDS) for _ in range(5)).capitalize()
        out.append([f"S50-{i:05d}", title, rng.choice(sorted(TEAM)), dt.date(2026, 12, 1 + i % 28),
                    rng.choice(["Basse", "Normale", "Haute", "Urgente"]),
                    rng.choice(["", "bureau", "ordinateur, internet", "internet"]),
                    " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30)))])
    return out


def write_xlsx(path: Path, data: list[list]) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(HEADER)
    for r in data:
        ws.append(r)
        ws.cell(ws.max_row, 4).number_format = "dd/mm/yyyy"
    wb.save(path)


def write_csv(path: Path, data: list[list]) -> None:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, delimiter=";", lineterminator="\r\n")
    w.writerow(HEADER)
    for r in data:
        w.writerow([c.strftime("%d/%m/%Y") if isinstance(c, dt.date) else c for c in r])
    path.write_bytes(buf.getvalue().encode("cp1252"))


def baseline_read(path: Path) -> int:
    if path.suffix == ".xlsx":
        from openpyxl import load_workbook

        wb = load_workbook(path, read_only=True)
        n = sum(1 for _ in wb.active.iter_rows(values_only=True))
        wb.close()
        return n
    return sum(1 for _ in csv.reader(io.StringIO(path.read_bytes().decode("cp1252")), delimiter=";"))


def fresh_store(tmp: Path, name: str):
    dev = Device.init(tmp / name, "dana", PASS, kdf=KdfParams(n=2**10))
    rep = dev.unlock(PASS)
    rep.create_team("bench")
    return rep


def timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def bench_file(tmp: Path, path: Path, n: int) -> dict:
    opts = importer.ImportOptions(new_members=TEAM, locale_day_first=True)
    table, t_read = timed(lambda: importer.read_table(path))
    _, t_base = timed(lambda: baseline_read(path))
    rep = fresh_store(tmp, f"store-{path.suffix[1:]}-{n}")
    _, t_plan = timed(lambda: importer.plan_import(table, rep.tasks(every=True), rep.member_names(), opts))
    plan, t_import = timed(lambda: importer.import_file(rep, path, opts))
    assert plan.count("create") == n and not plan.bad, plan.summary()
    again, t_again = timed(lambda: importer.import_file(rep, path, opts))
    assert again.count("unchanged") == n, again.summary()
    outbox = rep.status()["outbox"]["bytes"]
    rep.close()
    return {"rows": n, "file_bytes": path.stat().st_size, "read_s": t_read, "baseline_read_s": t_base,
            "plan_s": t_plan, "import_s": t_import, "import_rows_per_s": n / t_import,
            "reimport_s": t_again, "reimport_rows_per_s": n / t_again, "outbox_bytes_per_task": outbox / n}


def versions() -> dict:
    import openpyxl
    from importlib.metadata import version

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=False).stdout.strip()
    except OSError:
        commit = ""
    return {"commit": commit, "python": platform.python_version(), "machine": platform.machine(),
            "cpus": __import__("os").cpu_count(), "python-calamine": version("python-calamine"),
            "openpyxl": openpyxl.__version__}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=5000, help="rows in the large files (default 5000)")
    ap.add_argument("--quick", action="store_true", help="500 rows: a smoke run")
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args()
    n = 500 if args.quick else args.rows
    results: dict = {"env": versions(), "runs": {}}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for size in (40, n):
            data = rows(size)
            for kind, writer in (("xlsx", write_xlsx), ("csv", write_csv)):
                path = tmp / f"plan-{size}.{kind}"
                writer(path, data)
                results["runs"][f"{kind}-{size}"] = bench_file(tmp, path, size)
    week = [results["runs"][f"{k}-40"]["import_s"] for k in ("xlsx", "csv")]
    big = [results["runs"][f"{k}-{n}"] for k in ("xlsx", "csv")]
    checks = {
        "40-task week imports in under 1 s per file": max(week) < 1.0,
        f"{n} rows import at >= 1,000 rows/s": min(r["import_rows_per_s"] for r in big) >= 1000,
        f"{n} rows re-import at >= 2,000 rows/s": min(r["reimport_rows_per_s"] for r in big) >= 2000,
    }
    results["targets"] = checks
    if args.json:
        print(json.dumps(_benchkit.stamp(results, all(checks.values()), quick=args.quick), indent=2))
    else:
        print("| file | rows | bytes | read (ours) | read (baseline) | plan | import | rows/s | re-import rows/s |"
              " outbox B/task |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, r in results["runs"].items():
            print(f"| {name.split('-')[0]} | {r['rows']:,} | {r['file_bytes']:,} | {r['read_s'] * 1000:,.0f} ms | "
                  f"{r['baseline_read_s'] * 1000:,.0f} ms | {r['plan_s'] * 1000:,.0f} ms | "
                  f"{r['import_s'] * 1000:,.0f} ms | {r['import_rows_per_s']:,.0f} | {r['reimport_rows_per_s']:,.0f} | "
                  f"{r['outbox_bytes_per_task']:,.0f} |")
        print("\nbaseline read: openpyxl read-only (.xlsx), csv.reader on text known to be Windows-1252 (CSV)")
        for what, ok in checks.items():
            print(f"target: {what}: {'PASS' if ok else 'FAIL'}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
