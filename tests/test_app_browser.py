"""The local app in a real browser (issue 14 item 5): Debian's Chromium driven by Playwright.

Every test runs the app as ``hbw-sync app`` serves it (a thread on a loopback port) on real
stores, a real relay where a sync is involved, and clicks and types as a person would. Each
checks its pages for labels, contrast, a working skip link and no sideways scrolling, at
1366×768 and on a 390×844 phone, and saves a screenshot of each page under its tmp dir
(``HBW_SCREENSHOTS=docs/screenshots`` refreshes the README's pictures). One browser per module.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app_browser import DESKTOP, PHONE, AppThread, check_page, launch, open_app, shot, sync_api
from hbw_sync.client import Device
from hbw_sync.client import sync as syncing
from hbw_sync.client import views
from relay_helpers import FAST_KDF, STRONG, Team


def off_loop(fn, *args, **kw):
    """Run a library call that uses ``asyncio.run`` (join, sync) outside Playwright's running loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args, **kw).result()


@pytest.fixture(scope="module")
def browser():
    with sync_api().sync_playwright() as p:
        b = launch(p)
        try:
            yield b
        finally:
            b.close()


def solo(tmp_path: Path, name: str = "amina", team: bool = True) -> tuple[Path, str]:
    """A store with its own local team (no relay): enough for pages that need no sync."""
    home, pp = tmp_path / name, f"{name} {STRONG}"
    Device.init(home, name, pp, kdf=FAST_KDF).close()
    if team:
        with Device.open(home) as dev:
            dev.unlock(pp).create_team("District Finance")
    return home, pp


def test_unlock_add_a_task_and_work_on_it(browser, tmp_path):
    home, pp = solo(tmp_path)
    with AppThread(home) as app:
        page = browser.new_context(viewport=DESKTOP).new_page()
        page.goto(app.url)
        assert "locked" in page.title()
        shot(page, tmp_path, "unlock")
        check_page(page, keyboard=False)  # its passphrase field takes the focus at once
        page.get_by_label("Passphrase").fill("not my passphrase at all")
        page.get_by_role("button", name="Unlock").click()
        assert "does not open" in page.get_by_role("alert").inner_text()
        page.get_by_label("Passphrase").fill(pp)
        page.get_by_role("button", name="Unlock").click()
        page.get_by_role("heading", name="My work").wait_for()
        assert "Nothing assigned to you" in page.content()

        page.get_by_label("New task").fill("Reconcile October invoices")
        page.get_by_label("Due").fill("2026-12-04")
        page.get_by_label("Priority").select_option("urgent")
        page.get_by_role("button", name="Add", exact=True).click()
        page.get_by_label("New task").fill("File the leave forms")
        page.get_by_role("button", name="Add", exact=True).click()
        # Each click posts and loads a new page: wait for what the new page shows, never read the old one
        # (reading at once raced the navigation: a count of 1, or check_page on a page being replaced).
        expect = sync_api().expect
        rows = page.locator("table.tasks tbody tr")
        expect(rows).to_have_count(2)
        assert "Reconcile October invoices" in rows.nth(0).inner_text()  # dated first
        page.get_by_role("button", name="Start Reconcile October invoices").click()
        expect(page.locator("table.tasks tbody tr").nth(0)).to_contain_text("in progress")
        page.wait_for_load_state()
        check_page(page)
        shot(page, tmp_path, "my-work")

        page.get_by_role("link", name="Reconcile October invoices").click()
        page.get_by_label("Add a note").fill("Two invoices are missing; asked the supplier.")
        page.get_by_role("button", name="Add note").click()
        expect(page.locator("ol.history")).to_contain_text("added a note")
        (tmp_path / "invoices.txt").write_text("invoice 1\ninvoice 2\n")
        page.get_by_label("Attach a document").set_input_files(str(tmp_path / "invoices.txt"))
        page.get_by_role("button", name="Attach", exact=True).click()
        page.get_by_role("link", name="invoices.txt").wait_for()
        page.get_by_label("Title").fill("Reconcile October and November invoices")
        page.get_by_role("button", name="Save changes").click()
        page.get_by_role("heading", name="Task: Reconcile October and November invoices").wait_for()
        history = page.locator("ol.history li").all_inner_texts()
        assert "created it (" in history[0] and "priority: urgent" in history[0] and "due: 2026-12-04" in history[0]
        assert any("status: in progress" in h for h in history) and any("added a note" in h for h in history)
        assert "title: Reconcile October and November invoices" in history[-1]
        check_page(page)
        shot(page, tmp_path, "task")

        page.get_by_role("link", name="invoices.txt").click()
        with page.expect_download() as dl:
            page.get_by_role("button", name=re.compile("Download Version 1")).click()
        assert Path(dl.value.path()).read_text() == "invoice 1\ninvoice 2\n"
        page.get_by_role("button", name="Mark confidential").click()  # her own document: she may
        page.get_by_role("button", name=re.compile("Download Version 1")).click()  # no reason: the form says so
        assert page.get_by_label("Reason (recorded for your supervisor)").evaluate("e => !e.validity.valid")
        page.get_by_label("Reason (recorded for your supervisor)").fill("Printing for the supplier meeting")
        with page.expect_download() as dl:
            page.get_by_role("button", name=re.compile("Download Version 1")).click()
        assert Path(dl.value.path()).read_text() == "invoice 1\ninvoice 2\n"
        page.reload()
        assert "Printing for the supplier meeting" in page.locator("main").inner_text()  # recorded, with who
        page.get_by_role("link", name="Documents").click()
        page.get_by_role("heading", name="Add a document").wait_for()
        page.wait_for_load_state()
        check_page(page)
        shot(page, tmp_path, "documents")

        page.get_by_role("link", name="Profile").click()
        page.get_by_label("Away (ill, on leave) until").fill("2026-12-09")
        page.get_by_label("Thursday").check()
        page.get_by_label("Laptop at home").select_option("yes")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("status")).to_contain_text("Saved")
        page.wait_for_load_state()
        check_page(page)
        shot(page, tmp_path, "profile")

    with Device.open(home) as dev:
        rep = dev.unlock(pp)
        t = rep.task(next(t for t in rep.tasks() if t.priority == "urgent").id)
        assert t.title == "Reconcile October and November invoices" and t.status == "in_progress"
        assert [n.text for n in t.notes] == ["Two invoices are missing; asked the supplier."] and len(t.docs) == 1
        p = rep.profile()
        assert p["away_until"] == "2026-12-09" and p["office_days"] == ["thu"] and p["laptop"] is True


def test_every_page_fits_a_phone_and_works_by_keyboard(browser, tmp_path):
    home, pp = solo(tmp_path, "dana")
    with Device.open(home) as dev:
        rep = dev.unlock(pp)
        rep.add_task("Plan the week", assignee="dana", priority=3)
        rep.add_task("Check the cheque register", assignee="bosco")
    with AppThread(home) as app:
        page = open_app(browser, app, pp, PHONE)
        for link in ("My work", "Documents", "Sync", "Profile", "Team", "Import"):
            page.get_by_role("link", name=link, exact=True).click()
            page.get_by_role("heading", level=1).wait_for()
            check_page(page)
        shot(page, tmp_path, "phone-import")
        page.get_by_role("link", name="My work", exact=True).click()
        shot(page, tmp_path, "phone-my-work")


def test_sync_now_carries_a_task_to_a_second_device(browser, tmp_path):
    """Amina adds a task for Chidi and clicks Sync now; Chidi's app syncs and shows it in his work."""
    with Team(tmp_path) as team:
        off_loop(team.pair, "dana", "chidi")
        amina = off_loop(team.join, "amina")
        off_loop(amina.sync)
        with AppThread(amina.home) as a_app, AppThread(team.members["chidi"].home) as c_app:
            page = open_app(browser, a_app, amina.passphrase)
            page.get_by_label("New task").fill("Inspect the Nyamirambo market stalls")
            page.get_by_label("For").select_option("chidi")
            page.get_by_role("button", name="Add", exact=True).click()
            page.get_by_role("link", name="Sync", exact=True).click()
            assert "1 change waits to be sent" in page.locator("main").inner_text()
            with page.expect_download() as dl:  # Chidi's way: a file to email; the change stays queued
                page.get_by_role("button", name="Save changes to a file").click()
            assert dl.value.suggested_filename.endswith(".hbw") and Path(dl.value.path()).stat().st_size > 0
            page.reload()
            assert "1 change waits to be sent" in page.locator("main").inner_text()
            page.get_by_role("button", name="Sync now").click()
            page.get_by_text("Sync finished").wait_for(timeout=60_000)
            assert "Nothing waits to be sent" in page.locator("main").inner_text()
            check_page(page)
            shot(page, tmp_path, "sync")

            other = open_app(browser, c_app, team.members["chidi"].passphrase)
            assert "Inspect the Nyamirambo" not in other.locator("main").inner_text()
            other.get_by_role("link", name="Sync", exact=True).click()
            other.get_by_role("button", name="Sync now").click()
            other.get_by_text("Sync finished").wait_for(timeout=60_000)
            other.get_by_role("link", name="My work", exact=True).click()
            row = other.locator("table.tasks tbody tr")
            assert row.count() == 1 and "Inspect the Nyamirambo market stalls" in row.inner_text()


def test_supervisor_approves_a_waiting_device(browser, tmp_path):
    """Bosco's device joined through office IT; Dana checks, types the code his device shows, approves."""
    with Team(tmp_path) as team:
        dana = off_loop(team.join, "dana", "supervisor")
        off_loop(dana.sync)
        bosco_home, bosco_pp = tmp_path / "dev-bosco", f"bosco {STRONG}"
        off_loop(syncing.join, bosco_home, team.it_invite("bosco"), bosco_pp, kdf=FAST_KDF)
        with Device.open(bosco_home) as dev:
            code = next(w["code"] for w in dev.status()["key_flow"] if w.get("code"))
        with AppThread(bosco_home) as b_app, AppThread(dana.home) as d_app:
            waiting = open_app(browser, b_app, bosco_pp)
            waiting.get_by_role("link", name="Sync", exact=True).click()
            assert code in waiting.locator("main").inner_text()  # the code his Sync page shows him
            shot(waiting, tmp_path, "sync-waiting-for-approval")

            page = open_app(browser, d_app, dana.passphrase)
            page.get_by_role("link", name="Team", exact=True).click()
            page.get_by_role("button", name="Check for new devices").click()
            assert "bosco" in page.locator("#devices + ul").inner_text()
            page.get_by_label("Code from their device").fill("1234 5678 9012 3456 7890")
            page.get_by_role("button", name="Approve", exact=True).click()
            assert "no device waiting for approval shows this code" in page.get_by_role("alert").inner_text()
            page.go_back()
            page.get_by_label("Code from their device").fill(code)
            page.get_by_role("button", name="Approve", exact=True).click()
            assert "Approved bosco" in page.get_by_role("status").first.inner_text()
            assert "No device waits for your approval" in page.locator("main").inner_text()
        off_loop(syncing.sync, bosco_home, bosco_pp)
        with Device.open(bosco_home) as dev:
            assert not [w for w in dev.status()["key_flow"] if w["waits_for"] == "approval"]
            assert dev.store.meta("key_epoch") is not None  # the team key arrived


def test_import_a_spreadsheet_after_its_preview(browser, tmp_path):
    home, pp = solo(tmp_path, "dana")
    sheet = tmp_path / "week-49.csv"
    sheet.write_text("Titre;Responsable;Échéance;Priorité\r\n"
                     "Vérifier le registre des chèques;bosco;07/12/2026;haute\r\n"
                     "Rapport mensuel;amina;08/12/2026;normale\r\n"
                     "Visite du marché;chidi;31/31/2026;urgente\r\n", encoding="cp1252")
    with AppThread(home) as app:
        page = open_app(browser, app, pp)
        page.get_by_role("link", name="Import", exact=True).click()
        page.get_by_label("Spreadsheet (.xlsx, .ods, .csv)").set_input_files(str(sheet))
        page.get_by_label("Dates like 05/12/2026 are").select_option("day")
        page.get_by_label("Names to accept although their device has not joined yet").fill("bosco, amina, chidi")
        page.get_by_role("button", name="Show what it would do").click()
        rows = page.locator("table.tasks tbody tr")
        assert rows.count() == 3
        assert "new task" in rows.nth(0).inner_text() and "2026-12-07" in rows.nth(0).inner_text()
        assert "cannot be imported" in rows.nth(2).inner_text()
        check_page(page, keyboard=False)
        shot(page, tmp_path, "import-preview")
        with Device.open(home) as dev:
            assert dev.unlock(pp).tasks() == []  # a preview changes nothing
        page.get_by_role("button", name="Import these tasks").click()
        assert page.get_by_label("Leave out the rows that cannot be imported").evaluate("e => !e.validity.valid")
        page.get_by_label("Leave out the rows that cannot be imported").check()
        page.get_by_role("button", name="Import these tasks").click()
        assert "Imported: 2 new tasks" in page.get_by_role("status").inner_text()
    with Device.open(home) as dev:
        got = {(t.title, t.assignee, t.due) for t in dev.unlock(pp).tasks()}
    assert got == {("Vérifier le registre des chèques", "bosco", "2026-12-07"),
                   ("Rapport mensuel", "amina", "2026-12-08")}


def test_workload_chart_and_a_rebalancing_suggestion_applied_by_a_click(browser, tmp_path):
    home, pp = solo(tmp_path, "dana")
    with Device.open(home) as dev:
        rep = dev.unlock(pp)
        for i in range(6):  # the first is long overdue, the first two urgent
            rep.add_task(f"Case file {i + 1}", assignee="amina", priority=3 if i < 2 else 1,
                         due=views.parse_date("2020-01-06") if i == 0 else None)
        rep.add_task("Register the new cheques", assignee="chidi")
    with AppThread(home) as app:
        page = open_app(browser, app, pp)
        page.get_by_role("link", name="Team", exact=True).click()
        chart = page.locator("svg.chart")
        assert chart.is_visible()
        labels = chart.locator("text").all_text_contents()
        assert labels[:4] == ["amina", "6 open", "1 late", "2 urgent"], labels
        assert "chidi" in labels and "1 open" in labels
        bars = chart.locator("rect")
        widths = [float(bars.nth(i).get_attribute("width")) for i in range(bars.count())]
        assert widths[0] > widths[3] > 0  # amina's open bar is longer than chidi's
        check_page(page)
        shot(page, tmp_path, "team")
        suggestion = page.locator("#suggestions + ul li").first
        assert "from amina to chidi" in suggestion.inner_text() and "Why:" in suggestion.inner_text()
        suggestion.get_by_role("button", name=re.compile("^Apply: give Case file")).click()
        assert "to chidi" in page.get_by_role("status").first.inner_text()
    with Device.open(home) as dev:
        held = [t.assignee for t in dev.unlock(pp).tasks()]
    assert held.count("chidi") == 2 and held.count("amina") == 5


def test_a_conflict_is_told_in_words_on_the_task_and_the_team_page(browser, tmp_path):
    """Dana gives a task to bosco while Chidi, offline, gives it to amina: the supervisor's change wins."""
    with Team(tmp_path) as team:
        dana, chidi = off_loop(team.pair, "dana", "chidi")
        with dana.open() as rep:
            tid = rep.add_task("Reconcile invoices", assignee="chidi").id
        off_loop(dana.sync)
        off_loop(chidi.sync)
        with dana.open() as rep:
            rep.assign(tid, "bosco")
        with chidi.open() as rep:
            rep.assign(tid, "amina")
        off_loop(dana.sync)
        off_loop(chidi.sync)
        off_loop(dana.sync)
        with AppThread(dana.home) as app:
            page = open_app(browser, app, dana.passphrase)
            page.goto(f"{app.base}/tasks/{tid}")
            told = page.locator("#main .cards").last.inner_text()
            assert "assignee" in told and "a supervisor's change beats a member's" in told, told
            page.get_by_role("link", name="Team", exact=True).click()
            assert "Reconcile invoices" in page.locator("#conflicts + ul").inner_text()
            check_page(page)


def test_chidi_syncs_by_email_with_a_saved_file_and_the_office_reply(browser, tmp_path):
    """No data plan: Chidi saves his changes to a file, the office ingests it, he opens the reply."""
    from hbw_sync.server import admin

    with Team(tmp_path) as team:
        dana, chidi = off_loop(team.pair, "dana", "chidi")
        with dana.open() as rep:
            rep.add_task("Sent from the office", assignee="chidi")
        off_loop(dana.sync)
        with AppThread(chidi.home) as app:
            page = open_app(browser, app, chidi.passphrase)
            page.get_by_label("New task").fill("Ward 4 inspection report")
            page.get_by_role("button", name="Add", exact=True).click()
            page.get_by_role("link", name="Sync", exact=True).click()
            with page.expect_download() as dl:
                page.get_by_role("button", name="Save changes to a file").click()
            mailed = tmp_path / dl.value.suggested_filename
            dl.value.save_as(mailed)
            reply = Path(admin.ingest_bundle(team.data, mailed, tmp_path / "replies")["reply"])
            page.get_by_label("Reply file from the office").set_input_files(str(reply))
            page.get_by_role("button", name="Open reply").click()
            assert "1 of your batches confirmed" in page.get_by_role("status").inner_text()
            page.get_by_role("link", name="Back to Sync").click()
            assert "Nothing waits to be sent" in page.locator("main").inner_text()
            page.get_by_role("link", name="My work", exact=True).click()
            assert "Sent from the office" in page.locator("table.tasks").inner_text()
            page.get_by_role("link", name="Sync", exact=True).click()
            page.get_by_label("Reply file from the office").set_input_files(str(reply))
            page.get_by_role("button", name="Open reply").click()
            assert "already opened; nothing changed" in page.get_by_role("status").inner_text()
        off_loop(dana.sync)
        with dana.open() as rep:
            assert "Ward 4 inspection report" in {t.title for t in rep.tasks()}


def test_a_file_dropped_on_the_documents_page_is_added_and_choosing_one_still_works(browser, tmp_path):
    """Issue 14: a drop zone on Documents; the keyboard's "choose a file" stays. Real drag events, real store."""
    home, pp = solo(tmp_path)
    (tmp_path / "minutes.txt").write_text("chosen with the keyboard\n")
    with AppThread(home) as app:
        page = open_app(browser, app, pp)
        page.get_by_role("link", name="Documents").click()
        page.get_by_role("heading", name="Add a document").wait_for()
        assert "drag one from your folders" in page.locator("main").inner_text()

        # A file dragged from the desktop: a DataTransfer holding it, over the page, then dropped.
        data = page.evaluate_handle("""() => {
            const dt = new DataTransfer();
            dt.items.add(new File(["signed form, scanned\\n"], "leave-form.pdf", {type: "application/pdf"}));
            return dt; }""")
        page.dispatch_event("main", "dragenter", {"dataTransfer": data})
        page.dispatch_event("main", "dragover", {"dataTransfer": data})
        assert page.evaluate("() => document.body.classList.contains('dragging')")
        assert page.locator("#drop-state").inner_text() == "Drop the file to add it."
        check_page(page, keyboard=False)  # the highlighted zone keeps its contrast
        shot(page, tmp_path, "documents-drop")
        page.dispatch_event("main", "drop", {"dataTransfer": data})
        page.wait_for_url(re.compile(r"/docs/[0-9a-f]+$"))
        assert "leave-form.pdf" in page.locator("main").inner_text()

        # Two files at once: one at a time, nothing added.
        page.get_by_role("link", name="Documents").click()
        page.get_by_role("heading", name="Add a document").wait_for()
        two = page.evaluate_handle("""() => {
            const dt = new DataTransfer();
            dt.items.add(new File(["a"], "a.txt")); dt.items.add(new File(["b"], "b.txt"));
            return dt; }""")
        page.dispatch_event("main", "drop", {"dataTransfer": two})
        assert page.locator("#drop-state").inner_text() == "Drop one file at a time."

        # The keyboard way, unchanged.
        page.get_by_label("File (up to 4.3 GB)").set_input_files(str(tmp_path / "minutes.txt"))
        page.get_by_role("button", name="Add", exact=True).click()
        page.wait_for_url(re.compile(r"/docs/[0-9a-f]+$"))

        # A name that reads backwards on screen (a right-to-left override: "invoiceexe.jpg") arrives as
        # what it is, through Chromium's own multipart form (its CSRF token first, as the page orders it).
        odd = tmp_path / "invoice\u202egpj.exe"
        odd.write_text("not a picture\n")
        page.get_by_role("link", name="Documents").click()
        page.get_by_label("File (up to 4.3 GB)").set_input_files(str(odd))
        page.get_by_role("button", name="Add", exact=True).click()
        page.wait_for_url(re.compile(r"/docs/[0-9a-f]+$"))
        assert "invoicegpj.exe" in page.title() and "\u202e" not in page.content()
        page.get_by_role("link", name="Documents").click()
        page.get_by_role("heading", name="Add a document").wait_for()
        check_page(page)

    with Device.open(home) as dev:
        rep = dev.unlock(pp)
        assert sorted(d.name for d in rep.docs()) == ["invoicegpj.exe", "leave-form.pdf", "minutes.txt"]
        pdf = next(d for d in rep.docs() if d.name == "leave-form.pdf")
        assert rep.doc_bytes(pdf.id)[1] == b"signed form, scanned\n"
