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

