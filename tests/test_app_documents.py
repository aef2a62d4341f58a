"""The app's Documents page (issue 17 item 3): the confidential mark shows; a download needs a reason.

A real store and the real app server on a loopback port; the download goes through the same
library call as ``doc get`` (``export_doc``), so a refused download records nothing and sends no bytes.
"""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp
from aiohttp import web

from hbw_sync.client import Device
from hbw_sync.client.app.security import Gate
from hbw_sync.client.app.server import create_app

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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gate = Gate(port=port)
    runner = web.AppRunner(create_app(home, gate))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base, me = f"http://127.0.0.1:{port}", {"Origin": f"http://127.0.0.1:{port}"}
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(base + f"/start?token={gate.launch_token}") as r:
                assert r.status == 200
            csrf = gate.csrf_for(next(iter(gate.sessions)))
            async with http.post(base + "/unlock", data={"passphrase": pp, "csrf": csrf}, headers=me) as r:
                assert 'href="/docs"' in await r.text()
            async with http.get(base + "/docs") as r:
                text = await r.text()
            assert "case file.txt" in text and "Confidential" in text and "leaflet.txt" in text
            assert text.count("Confidential") == 1 and 'name="reason" required' in text

            get = {"doc": secret, "csrf": csrf}
            async with http.post(base + "/docs/download", data=get, headers=me) as r:
                body = await r.read()
                assert r.status == 400 and SECRET not in body and b"needs a reason" in body
            async with http.post(base + "/docs/download", data={**get, "reason": "x" * 5000}, headers=me) as r:
                assert r.status == 400 and SECRET not in await r.read()
            async with http.post(base + "/docs/download", data={**get, "reason": "hearing", "csrf": "x" + csrf},
                                 headers=me) as r:
                assert r.status == 403  # a stale or forged form
            async with http.post(base + "/docs/download", data={**get, "reason": "hearing"},
                                 headers={"Origin": "http://evil.example"}) as r:
                assert r.status == 403  # another site
            with Device.open(home) as dev:
                assert dev.unlock(pp).doc(secret).exports == []  # nothing recorded, nothing sent

            async with http.post(base + "/docs/download", data={**get, "reason": "Printing for the hearing"},
                                 headers=me) as r:
                assert r.status == 200 and await r.read() == SECRET
                assert "case%20file.txt" in r.headers["Content-Disposition"]
                assert r.headers["Cache-Control"] == "no-store"
            async with http.post(base + "/docs/download", data={"doc": plain, "csrf": csrf}, headers=me) as r:
                assert r.status == 200 and await r.read() == b"Opening hours.\n"
            with Device.open(home) as dev:
                rep = dev.unlock(pp)
                assert [(e.by, e.reason) for e in rep.doc(secret).exports] == [("dana", "Printing for the hearing")]
                assert rep.doc(plain).exports == []
    finally:
        await runner.cleanup()
