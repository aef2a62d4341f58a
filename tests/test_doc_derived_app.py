"""A derived version (PROTOCOL.md §18e) in the local app, as Chidi sees it in Debian's Chromium.

Chidi's device keeps no documents (policy ``none``): Dana's one-cell edit of the sheet arrives as
a derived version, pending (no base here). The app must say the document is not on this
computer (not "all versions are on this computer"), and its Download button must fetch the
base, work the manifest out and send the file byte-exact; no error page. Then it says the
version is here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app_browser import AppThread, check_page, open_app
from test_app_browser import off_loop
from test_doc_derived import ROWS, _version, sheet_zip
from relay_helpers import Team, save_version, shared_doc


from test_app_browser import browser  # noqa: F401 - the module's one Chromium, shared


def test_a_pending_document_shows_as_not_here_and_its_download_works_it_out(browser, tmp_path: Path) -> None:
    v1, v2 = sheet_zip(ROWS), sheet_zip(ROWS, 200)

    def setup(team: Team):
        dana, chidi, doc, f = shared_doc(team, tmp_path, v1, policy="none")
        save_version(dana, doc, f, v2)
        chidi.sync()
        with chidi.open() as rep:
            assert rep.versions.is_pending(*_version(rep, doc.id)[:2])
        return chidi, doc.id

    with Team(tmp_path) as team:
        chidi, doc_id = off_loop(setup, team)
        with AppThread(chidi.home) as app:
            page = open_app(browser, app, chidi.passphrase)
            page.get_by_role("link", name="Documents").click()
            row = page.locator("table.tasks tbody tr")
            assert row.count() == 1 and "not on this computer yet" in row.inner_text()
            check_page(page)
            page.get_by_role("link", name="plan.xlsx").click()
            main = page.locator("main").inner_text()
            assert "not on this computer yet" in main and "versions are on this computer" not in main, main
            check_page(page)
            with page.expect_download() as dl:
                page.get_by_role("button", name=re.compile("Download Version 2")).click()
            assert Path(dl.value.path()).read_bytes() == v2
            page.reload()
            assert "All 2 versions are on this computer" in page.locator("main").inner_text()
            assert "not on this computer yet" not in page.locator("main").inner_text()
            with page.expect_download() as dl:
                page.get_by_role("button", name=re.compile("Download Version 1")).click()
            assert Path(dl.value.path()).read_bytes() == v1
        with chidi.open() as rep:
            did, digest, _op = _version(rep, doc_id)
            assert not rep.versions.is_pending(did, digest) and rep.doc(doc_id).local
