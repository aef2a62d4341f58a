"""The local app in a real browser (issue 14 item 5): Debian's Chromium driven by Playwright.

Every test runs the app as ``hbw-sync app`` serves it (a thread on a loopback port) on real
stores, a real relay where a sync is involved, and clicks and types as a person would. Each
checks its pages for labels, contrast, a working skip link and no sideways scrolling, at
1366×768 and on a 390×844 phone, and saves a screenshot of each page under its tmp dir
(``HBW_SCREENSHOTS=docs/screenshots`` refreshes the README's pictures). One browser per module.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app_browser import DESKTOP, PHONE, AppThread, check_page, launch, open_app, shot
from hbw_sync.client import Device
from hbw_sync.client import sync as syncing
from relay_helpers import FAST_KDF, STRONG, Team

pw_api = pytest.importorskip("playwright.sync_api", reason="SKIPPED LOUDLY: pip install playwright (test extra)")


@pytest.fixture(scope="module")
def browser():
    with pw_api.sync_playwright() as p:
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
        rows = page.locator("table.tasks tbody tr")
        assert rows.count() == 2 and "Reconcile October invoices" in rows.nth(0).inner_text()  # dated first
        page.get_by_role("button", name="Start Reconcile October invoices").click()
        assert "in progress" in page.locator("table.tasks tbody tr").nth(0).inner_text()
        check_page(page)
        shot(page, tmp_path, "my-work")

        page.get_by_role("link", name="Reconcile October invoices").click()
        page.get_by_label("Add a note").fill("Two invoices are missing; asked the supplier.")
        page.get_by_role("button", name="Add note").click()
        assert "Two invoices are missing" in page.locator("main").inner_text()
        (tmp_path / "invoices.txt").write_text("invoice 1\ninvoice 2\n")
        page.get_by_label("Attach a document").set_input_files(str(tmp_path / "invoices.txt"))
        page.get_by_role("button", name="Attach", exact=True).click()
        page.get_by_role("link", name="invoices.txt").wait_for()
        page.get_by_label("Title").fill("Reconcile October and November invoices")
        page.get_by_role("button", name="Save changes").click()
        page.get_by_role("heading", name="Task: Reconcile October and November invoices").wait_for()
        check_page(page)
        shot(page, tmp_path, "task")

        page.get_by_role("link", name="invoices.txt").click()
        with page.expect_download() as dl:
            page.get_by_role("link", name=re.compile("Download Version 1")).click()
        assert Path(dl.value.path()).read_text() == "invoice 1\ninvoice 2\n"
        page.get_by_role("link", name="Documents").click()
        check_page(page)
        shot(page, tmp_path, "documents")

        page.get_by_role("link", name="Profile").click()
        page.get_by_label("Away (ill, on leave) until").fill("2026-12-09")
        page.get_by_label("Thursday").check()
        page.get_by_label("Laptop at home").select_option("yes")
        page.get_by_role("button", name="Save").click()
        assert "Saved" in page.get_by_role("status").inner_text()
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
