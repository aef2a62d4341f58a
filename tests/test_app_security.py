"""The local app's gate (hbw_sync/client/app/security.py): hostile requests are refused."""

import pytest

from hbw_sync.client.app.security import Gate


def test_host_must_be_our_loopback_port():
    g = Gate(port=8123)
    assert g.host_ok("127.0.0.1:8123") and g.host_ok("localhost:8123")
    for bad in (None, "evil.example:8123", "127.0.0.1:8124", "127.0.0.1", "127.0.0.1.evil:8123"):
        assert not g.host_ok(bad)


def test_foreign_origin_is_refused():
    g = Gate(port=8123)
    assert g.origin_ok(None) and g.origin_ok("http://127.0.0.1:8123")
    for bad in ("http://evil.example", "http://127.0.0.1:9", "https://127.0.0.1:8123", "null"):
        assert not g.origin_ok(bad)


def test_only_the_launch_token_opens_a_session_and_csrf_is_per_session():
    g = Gate(port=1)
    assert g.open_session(None) is None and g.open_session("guess") is None
    sid = g.open_session(g.launch_token)
    other = g.open_session(g.launch_token)
    assert sid and other and sid != other
    assert g.csrf_ok(sid, g.csrf_for(sid))
    assert not g.csrf_ok(sid, None) and not g.csrf_ok(sid, g.csrf_for(other)) and not g.csrf_ok(None, "x")


def test_locks_after_inactivity_and_forgets_the_passphrase():
    g = Gate(port=1, idle_s=900)
    assert g.touch(0) is None  # sealed until unlocked
    g.unlock("pp", now=1000)
    assert g.touch(1800) == "pp"  # 800 s idle: still open, clock restarts
    assert g.touch(2600) == "pp"
    assert g.touch(3501) is None  # 901 s idle: locked
    assert g.passphrase is None and g.touch(3502) is None


# -- the same rules on a real server and a real store ---------------------------------------------

import socket  # noqa: E402

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from hbw_sync.client import Device  # noqa: E402
from hbw_sync.client.app.server import create_app  # noqa: E402
from relay_helpers import FAST_KDF, STRONG  # noqa: E402


async def test_server_refuses_hostile_requests_and_unlocks_with_the_passphrase(tmp_path):
    home = tmp_path / "amina"
    Device.init(home, "amina", f"amina {STRONG}", kdf=FAST_KDF).close()
    with Device.open(home) as dev:
        dev.unlock(f"amina {STRONG}").create_team("District Finance")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gate = Gate(port=port)
    runner = web.AppRunner(create_app(home, gate))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base, me = f"http://127.0.0.1:{port}", {"Origin": f"http://127.0.0.1:{port}"}
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:  # unsafe: an IP host
            async with http.get(base + "/", headers={"Host": "evil.example"}) as r:
                assert r.status == 421
            async with http.get(base + "/") as r:  # no session
                assert r.status == 403
            async with http.get(base + "/start?token=guess") as r:
                assert r.status == 403
            async with http.get(base + f"/start?token={gate.launch_token}") as r:
                assert r.status == 200 and "locked" in await r.text()  # sealed until unlocked
            async with http.post(base + "/unlock", data={"passphrase": f"amina {STRONG}"}, headers=me) as r:
                assert r.status == 403  # no CSRF token
            sid = next(iter(gate.sessions))
            csrf = gate.csrf_for(sid)
            async with http.post(base + "/unlock", data={"passphrase": f"amina {STRONG}", "csrf": csrf},
                                 headers={"Origin": "http://evil.example"}) as r:
                assert r.status == 403  # foreign Origin
            assert gate.passphrase is None
            async with http.post(base + "/unlock", data={"passphrase": "wrong one", "csrf": csrf}, headers=me) as r:
                assert "does not open" in await r.text() and gate.passphrase is None
            async with http.post(base + "/unlock", data={"passphrase": f"amina {STRONG}", "csrf": csrf},
                                 headers=me) as r:
                assert r.status == 200 and "My work" in await r.text()
            async with http.post(base + "/tasks", data={"title": "Reconcile invoices", "due": "2026-12-05"},
                                 headers=me) as r:
                assert r.status == 403  # no CSRF token: nothing added
            async with http.post(base + "/tasks", data={"title": "Reconcile invoices", "due": "2026-12-05",
                                                         "csrf": csrf}, headers=me) as r:
                assert "Reconcile invoices" in await r.text()
            with Device.open(home) as dev:
                assert [t.title for t in dev.unlock(f"amina {STRONG}").tasks(mine=True)] == ["Reconcile invoices"]
            gate.last_active -= gate.idle_s + 1  # as if 15 min passed without a request
            async with http.get(base + "/") as r:
                assert "locked" in await r.text() and gate.passphrase is None
    finally:
        await runner.cleanup()


def test_hbw_sync_app_prints_an_address_that_opens_the_locked_app(tmp_path):
    """The real command in a subprocess: the printed URL carries the token; without it, refused."""
    import subprocess
    import sys
    import urllib.error
    import urllib.request
    from http.cookiejar import CookieJar

    home = tmp_path / "amina"
    Device.init(home, "amina", f"amina {STRONG}", kdf=FAST_KDF).close()
    proc = subprocess.Popen([sys.executable, "-m", "hbw_sync.client.cli", "--home", str(home), "app", "--no-browser"],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = line.strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:") and "/start?token=" in url, line
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        assert "locked" in opener.open(url, timeout=30).read().decode()
        try:
            urllib.request.urlopen(url.split("/start")[0] + "/", timeout=30)
            raise AssertionError("served without the token")
        except urllib.error.HTTPError as e:
            assert e.code == 403
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_locking_calls_on_lock_once_and_only_when_it_locks():
    called = []
    g = Gate(port=1, idle_s=900, on_lock=lambda: called.append(1))
    assert not g.expire(5000) and called == []  # locked already: nothing to forget
    g.unlock("pp", now=1000)
    assert not g.expire(1900) and called == []  # 900 s idle: still open
    assert g.expire(1901) and called == [1] and g.passphrase is None
    assert not g.expire(9999) and called == [1]


async def test_the_locked_app_holds_no_store_key_and_needs_the_passphrase_again(tmp_path):
    """Issue 14: the store key derived at unlock leaves the process when the app locks (on its own timer)."""
    import asyncio

    from app_helpers import Running
    from hbw_sync.client import locked  # the store-key cache lives with the locked view
    from hbw_sync.client.device import Device
    from hbw_sync.client.vault import KdfParams
    from hbw_sync.errors import WrongKeyError

    pp = "orchid lantern 52 ferry"
    home = tmp_path / "dana"
    Device.init(home, "dana", pp, kdf=KdfParams(n=2**10)).close()
    with Device.open(home) as dev:
        dev.unlock(pp).create_team("District Finance")
    async with Running(home, pp) as app:
        async with app.http.get(app.base + "/") as r:
            assert "My work" in await r.text()
        assert locked._STORE_KEYS  # unlocked: derived once, kept for the next page
        app.gate.idle_s = 0.2  # nobody touches the page: the timer locks it (checks every second here)
        for _ in range(50):
            if app.gate.passphrase is None:
                break
            await asyncio.sleep(0.1)
        assert app.gate.passphrase is None and locked._STORE_KEYS == {}
        async with app.http.get(app.base + "/") as r:
            text = await r.text()
            assert "Passphrase" in text and "My work" not in text
        # the store opens only with the passphrase again
        with Device.open(home) as dev:
            with pytest.raises(WrongKeyError):
                dev.unlock("not the passphrase")
        status, text = await app.post("/unlock", {"passphrase": pp})
        assert "My work" in text and locked._STORE_KEYS
