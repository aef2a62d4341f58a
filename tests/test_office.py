"""The office page (issue 14 item 3) through real HTTP against a real relay: login, pages, and hostile requests."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from hbw_sync.errors import UsageError
from hbw_sync.server import admin
from hbw_sync.server.app import RelayConfig
from hbw_sync.server.office import OfficeConfig, check_bind
from hbw_sync.server.runner import RelayThread

from relay_helpers import FAST_KDF, STRONG, Member
from hbw_sync.client import Device
from hbw_sync.client import sync as syncing


@pytest.fixture
def office(tmp_path):
    data = tmp_path / "relay"
    admin.init(data, "District Finance", "http://127.0.0.1:9")
    t = RelayThread(RelayConfig(data=data, port=0, access_log=False), office_cfg=OfficeConfig(port=0))
    url = t.start()
    try:
        yield data, url, t.office_url
    finally:
        t.stop()


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html)[1]  # type: ignore[index]


async def logged_in(s: aiohttp.ClientSession, base: str, token: str) -> str:
    async with s.post(base + "/login", data={"token": token}, headers={"Origin": base}) as r:
        assert r.status == 200 and str(r.url).endswith("/")
        return csrf_of(await r.text())


def test_office_page_end_to_end(office, tmp_path) -> None:
    data, relay_url, base = office
    token = (data / admin.TOKEN_FILE).read_text().strip()
    assert (data / admin.TOKEN_FILE).stat().st_mode & 0o777 == 0o600
    admin.invite(data, "dana", "supervisor", url=relay_url)
    dana = Member("dana", tmp_path / "dev-dana", f"dana {STRONG}", "supervisor")
    syncing.join(dana.home, admin.invite(data, "dana", "supervisor", url=relay_url).encode(), dana.passphrase,
                 kdf=FAST_KDF)
    with Device.open(dana.home) as dev:
        dana_id = dev.identity.device_id.hex()

    async def go() -> None:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            async with s.get(base + "/devices") as r:  # no session: the login form
                assert str(r.url).endswith("/login") and "admin token" in (await r.text())
            async with s.post(base + "/login", data={"token": "wrong"}, headers={"Origin": base}) as r:
                assert r.status == 403
            csrf = await logged_in(s, base, token)
            for path, words in (("/", "Healthy"), ("/health", "Free space"), ("/audit", "invited dana"),
                                ("/workload", "dana"), ("/backups", "Make a backup now"),
                                ("/equipment", "The register is empty"), ("/devices", dana_id[:8])):
                async with s.get(base + path) as r:
                    text = await r.text()
                    assert r.status == 200 and words in text, path
                    assert "{'" not in text and "'?'" not in text
                    assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")
            h = {"Origin": base}
            async with s.post(base + "/equipment/add", data={"csrf": csrf, "asset": "LT-9", "model": "T14"},
                              headers=h) as r:
                assert r.status == 200 and "Recorded LT-9" in await r.text()
            async with s.post(base + "/invites", data={"csrf": csrf, "member": "amina", "role": "member",
                                                        "days": "7", "words": "yes", "asset": "LT-9"}, headers=h) as r:
                text = await r.text()
                assert r.status == 200 and "<svg" in text and "hbw-sync join --relay" in text
            assert next(i for i in admin.equipment_list(data))["holder"] == "amina"
            async with s.get(base + "/equipment") as r:  # the register, as office IT reads it (issue 17 item 2)
                text = await r.text()
                assert r.status == 200 and "LT-9" in text and "T14" in text and "lent to amina since" in text
                assert "Report LT-9 lost" in text and "The register is empty" not in text
            async with s.post(base + "/backups", data={"csrf": csrf}, headers=h) as r:
                assert r.status == 200 and "Backed up" in await r.text()
            assert len(admin.backups(data)) == 1
            # Revoke: without the confirmation step nothing changes; with it, the device is revoked.
            async with s.post(base + "/devices/revoke", data={"csrf": csrf, "device": dana_id}, headers=h) as r:
                assert r.status == 400
            assert not admin.find_device(data, dana_id)["revoked_ms"]
            async with s.get(base + f"/devices/revoke?device={dana_id}") as r:
                assert "cannot be undone" in await r.text()
            async with s.post(base + "/devices/revoke", data={"csrf": csrf, "device": dana_id, "confirm": "yes"},
                              headers=h) as r:
                assert r.status == 200 and "is revoked" in await r.text()
            assert admin.find_device(data, dana_id)["revoked_ms"]

    asyncio.run(go())


def test_office_page_refuses_hostile_requests(office) -> None:
    data, _relay, base = office
    token = (data / admin.TOKEN_FILE).read_text().strip()
    admin.equipment_add(data, "LT-1")
    admin.equipment_lend(data, "LT-1", "amina")

    async def go() -> None:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            # No session at all.
            async with s.post(base + "/equipment/lost", data={"asset": "LT-1", "confirm": "yes"},
                              headers={"Origin": base}) as r:
                assert r.status == 401
            # A foreign Host (DNS rebinding) and a foreign Origin.
            async with s.get(base + "/login", headers={"Host": "evil.example:80"}) as r:
                assert r.status == 421
            async with s.post(base + "/login", data={"token": token}, headers={"Origin": "http://evil.example"}) as r:
                assert r.status == 403
            async with s.post(base + "/login", data={"token": token}) as r:  # neither Origin nor Referer
                assert r.status == 403
            csrf = await logged_in(s, base, token)
            lost = {"asset": "LT-1", "confirm": "yes"}
            async with s.post(base + "/equipment/lost", data=lost, headers={"Origin": base}) as r:  # CSRF missing
                assert r.status == 403
            async with s.post(base + "/equipment/lost", data={**lost, "csrf": "x" + csrf},
                              headers={"Origin": base}) as r:
                assert r.status == 403
            async with s.post(base + "/equipment/lost", data={**lost, "csrf": csrf},
                              headers={"Origin": "http://evil.example"}) as r:
                assert r.status == 403
            async with s.post(base + "/equipment/lost", data={"asset": "LT-1", "csrf": csrf},
                              headers={"Origin": base}) as r:  # no confirmation
                assert r.status == 400
            assert admin.equipment_list(data)[0]["state"] == "lent"  # nothing changed
        # A wrong token, from a fresh client: refused, no session.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            async with s.post(base + "/login", data={"token": token[:-1]}, headers={"Origin": base}) as r:
                assert r.status == 403
            async with s.get(base + "/equipment") as r:
                assert str(r.url).endswith("/login")

    asyncio.run(go())


def test_office_page_refuses_a_non_loopback_bind_without_the_flag() -> None:
    with pytest.raises(UsageError) as e:
        check_bind(OfficeConfig(host="0.0.0.0"))
    assert e.value.code == "usage.admin_bind"
    check_bind(OfficeConfig(host="0.0.0.0", allow_remote=True))
    check_bind(OfficeConfig(host="::1"))
