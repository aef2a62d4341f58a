"""The app's Documents page (issue 17 item 3): the confidential mark shows; a download needs a reason.

A real store and the real app server on a loopback port; the download goes through the same
library call as ``doc get`` (``export_doc``), so a refused download records nothing and sends no bytes.
"""

from __future__ import annotations

from pathlib import Path

from app_helpers import Running
from hbw_sync.client import Device
from relay_helpers import FAST_KDF, STRONG

SECRET = b"Tenant 14: arrears plan.\n"


async def test_documents_page_shows_the_mark_and_a_download_needs_a_reason(tmp_path: Path) -> None:
    home, pp = tmp_path / "dana", f"dana {STRONG}"
    Device.init(home, "dana", pp, kdf=FAST_KDF).close()
    (tmp_path / "case file.txt").write_bytes(SECRET)
    (tmp_path / "leaflet.txt").write_bytes(b"Opening hours.\n")
    with Device.open(home) as dev:
        rep = dev.unlock(pp)
        rep.create_team("District Finance")
        secret = rep.add_doc(tmp_path / "case file.txt").id
        plain = rep.add_doc(tmp_path / "leaflet.txt").id
        rep.mark_confidential(secret)
    async with Running(home, pp) as app:
        async with app.http.get(app.base + "/docs") as r:
            text = await r.text()
        assert "case file.txt" in text and "Confidential" in text and "leaflet.txt" in text
        assert text.count("Confidential") == 1 and 'name="reason" required' in text

        get = {"doc": secret, "csrf": app.csrf}
        async with app.http.post(app.base + "/docs/download", data=get, headers=app.me) as r:
            body = await r.read()
            assert r.status == 400 and SECRET not in body and b"needs a reason" in body
        async with app.http.post(app.base + "/docs/download", data={**get, "reason": "x" * 5000}, headers=app.me) as r:
            assert r.status == 400 and SECRET not in await r.read()
        async with app.http.post(app.base + "/docs/download", data={**get, "reason": "hearing", "csrf": "x" + app.csrf},
                                 headers=app.me) as r:
            assert r.status == 403  # a stale or forged form
        async with app.http.post(app.base + "/docs/download", data={**get, "reason": "hearing"},
                                 headers={"Origin": "http://evil.example"}) as r:
            assert r.status == 403  # another site
        with Device.open(home) as dev:
            assert dev.unlock(pp).doc(secret).exports == []  # nothing recorded, nothing sent

        async with app.http.post(app.base + "/docs/download", data={**get, "reason": "Printing for the hearing"},
                                 headers=app.me) as r:
            assert r.status == 200 and await r.read() == SECRET
            assert "case%20file.txt" in r.headers["Content-Disposition"]
            assert r.headers["Cache-Control"] == "no-store"
        async with app.http.post(app.base + "/docs/download", data={"doc": plain, "csrf": app.csrf}, headers=app.me) as r:
            assert r.status == 200 and await r.read() == b"Opening hours.\n"
        with Device.open(home) as dev:
            rep = dev.unlock(pp)
            assert [(e.by, e.reason) for e in rep.doc(secret).exports] == [("dana", "Printing for the hearing")]
            assert rep.doc(plain).exports == []



async def test_download_fetches_a_missing_document_from_the_relay_and_streams_it(team, tmp_path: Path) -> None:
    """Issue 12 item 5: a chunked document not on this computer is fetched (as ``doc get``), then sent
    to the browser one chunk at a time; a confidential one without a reason fetches nothing."""
    import random

    import asyncio

    scan = random.Random(5).randbytes(3_000_000)
    (tmp_path / "scan.pdf").write_bytes(scan)
    (tmp_path / "secret.pdf").write_bytes(scan[::-1])

    def setup():  # syncs run their own event loop: in a thread, off this test's loop
        dana, chidi = team.pair("dana", "chidi")
        with dana.open() as rep:
            doc = rep.add_doc(tmp_path / "scan.pdf").id
            secret = rep.add_doc(tmp_path / "secret.pdf").id
            rep.mark_confidential(secret)
        dana.sync()
        chidi.sync()
        return chidi, doc, secret

    chidi, doc, secret = await asyncio.to_thread(setup)

    def held() -> int:
        with Device.open(chidi.home) as dev:
            return dev.store.execute("SELECT COUNT(*) FROM doc_chunks").fetchone()[0]

    assert held() == 0  # policy mine: neither is on chidi's computer
    async with Running(chidi.home, chidi.passphrase) as app:
        async with app.http.post(app.base + "/docs/download", data={"doc": secret, "csrf": app.csrf},
                                 headers=app.me) as r:
            assert r.status == 400 and b"needs a reason" in await r.read()
        assert held() == 0, "a refused download fetches nothing"
        pieces = []
        async with app.http.post(app.base + "/docs/download", data={"doc": doc, "csrf": app.csrf},
                                 headers=app.me) as r:
            assert r.status == 200 and r.headers["Content-Length"] == str(len(scan))
            async for piece in r.content.iter_any():
                pieces.append(piece)
        assert b"".join(pieces) == scan
        assert held() > 10  # fetched, and kept: the next download reads the store
        async with app.http.post(app.base + "/docs/download", data={"doc": secret, "reason": "hearing",
                                                                      "csrf": app.csrf}, headers=app.me) as r:
            assert r.status == 200 and await r.read() == scan[::-1]
    with chidi.open() as rep:
        assert [e.reason for e in rep.doc(secret).exports] == ["hearing"]


async def test_the_add_form_says_the_real_limit_and_takes_a_document_over_the_old_cap(tmp_path: Path) -> None:
    """Issue 12 (docdelta gaps) item 2: the label said 'up to 32 MiB' while documents may be 4 GiB. It now
    says the library's limit in words, translated, and a 45 MB document added through the form arrives
    whole (the app's body cap was 40 MiB); other forms keep the small cap."""
    import random

    import aiohttp

    from hbw_sync import i18n
    from hbw_sync.client.app.pages.documents import takes_upload, upload_label
    from hbw_sync.client.documents import MAX_DOC_BYTES

    assert MAX_DOC_BYTES == 4 * 1024**3 and upload_label() == "File (up to 4.3 GB)"
    i18n.set_language("fr")
    try:
        assert upload_label() == "Fichier (jusqu'à 4,3\u00a0Go)"
    finally:
        i18n.set_language("en")
    assert takes_upload("/docs") and takes_upload("/docs/0a1b2c3d4e5f6071/update")
    assert not any(takes_upload(p) for p in ("/docs/download", "/docs/x/update", "/docs/", "/import/run", "/docsx"))

    home, pp = tmp_path / "dana", f"dana {STRONG}"
    Device.init(home, "dana", pp, kdf=FAST_KDF).close()
    with Device.open(home) as dev:
        dev.unlock(pp).create_team("District Finance")
    scan = random.Random(3).randbytes(45_000_000)
    async with Running(home, pp) as app:
        async with app.http.get(app.base + "/docs") as r:
            text = await r.text()
        assert "File (up to 4.3 GB)" in text and "32 MiB" not in text
        form = aiohttp.FormData()
        form.add_field("csrf", app.csrf)
        form.add_field("file", scan, filename="minutes-scan.pdf", content_type="application/pdf")
        async with app.http.post(app.base + "/docs", data=form, headers=app.me) as r:
            page = await r.text()
            assert r.status == 200 and "minutes-scan.pdf" in page, page[-3000:]
        big = {"doc": "0" * 16, "csrf": app.csrf, "reason": "x" * (41 * 1024 * 1024)}
        async with app.http.post(app.base + "/docs/download", data=big, headers=app.me) as r:
            assert r.status == 413  # not a document's form: the 40 MiB cap stands
    with Device.open(home) as dev:
        rep = dev.unlock(pp)
        (doc,) = [d for d in rep.docs() if d.name == "minutes-scan.pdf"]
        assert doc.size == len(scan) and rep.doc_bytes(doc.id)[1] == scan
