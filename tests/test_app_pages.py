"""The app's pages over real HTTP without a browser: hostile and malformed requests change nothing.

A real server (``create_app`` on a loopback port) and a real store. Every POST endpoint is
refused without the CSRF token; a bad id, an oversized field, a missing upload, a forged
suggestion or a stale preview each gets words, never a 500, and the store is unchanged.
"""

from __future__ import annotations

import socket

import aiohttp

from app_helpers import Running as _Running
from hbw_sync.client import Device
from relay_helpers import FAST_KDF, STRONG

PP = f"dana {STRONG}"
POSTS = ["/tasks", "/tasks/0123456789abcdef/edit", "/tasks/0123456789abcdef/note", "/tasks/0123456789abcdef/assign",
         "/tasks/0123456789abcdef/start", "/tasks/0123456789abcdef/done", "/docs", "/docs/0123456789abcdef/update", "/docs/download", "/docs/0123456789abcdef/confidential",
         "/sync", "/bundle/export", "/bundle/import", "/profile", "/team/approve", "/team/check", "/team/apply",
         "/import/preview", "/import/run"]


class Running(_Running):
    """The app on Dana's store, unlocked with her passphrase."""

    def __init__(self, home, passphrase: str = PP):
        super().__init__(home, passphrase)


def store(tmp_path):
    home = tmp_path / "dana"
    Device.init(home, "dana", PP, kdf=FAST_KDF).close()
    with Device.open(home) as dev:
        rep = dev.unlock(PP)
        rep.create_team("District Finance")
        tid = rep.add_task("Plan the week", assignee="dana").id
    return home, tid


def snapshot(home):
    with Device.open(home) as dev:
        return [t.to_dict() for t in dev.unlock(PP).tasks(every=True)], dev.unlock(PP).profile()


async def test_every_post_is_refused_without_the_csrf_token_and_changes_nothing(tmp_path):
    home, _tid = store(tmp_path)
    before = snapshot(home)
    async with Running(home) as app:
        for path in POSTS:
            status, text = await app.post(path, {"title": "x", "text": "x", "member": "bosco", "code": "1" * 20},
                                          csrf=False)
            assert status == 403 and "stale" in text, path
        async with app.http.get(app.base + "/sync/progress", cookies={"hbw_app": "guess"}) as r:
            assert r.status in (200, 403)
    assert snapshot(home) == before


async def test_bad_input_gets_words_and_changes_nothing(tmp_path):
    home, tid = store(tmp_path)
    before = snapshot(home)
    async with Running(home) as app:
        cases = [
            ("/tasks/not-a-task/note", {"text": "hello"}, "not a task"),
            ("/tasks/ffffffffffffffff/note", {"text": "hello"}, "no task"),
            (f"/tasks/{tid}/note", {"text": "x" * 20_001}, "too long"),
            (f"/tasks/{tid}/note", {"text": "   "}, "must not be empty"),
            (f"/tasks/{tid}/assign", {"member": "Not A Name!"}, "not a valid member name"),
            ("/tasks", {"title": ""}, "missing"),
            ("/tasks", {"title": "Ok", "due": "the 45th"}, ""),
            ("/docs", {"name": "x"}, "Choose a file"),
            ("/profile", {"office_days": "someday"}, "office days"),
            ("/profile", {"laptop": "maybe"}, "yes or no"),
            ("/team/apply", {"task": tid, "from": "dana", "to": "<script>"}, "not one this page made"),
            ("/team/approve", {"code": "12"}, ""),
            ("/import/run", {"key": "made-up"}, "preview is gone"),
        ]
        for path, data, words in cases:
            status, text = await app.post(path, data)
            assert status == 400 and "That did not work" in text and words in text, (path, status, text[-400:])
            assert "<script>" not in text
        form = app.form()
        form.add_field("file", b"\x00not a spreadsheet", filename="week.exe")
        status, text = await app.post("/import/preview", form)
        assert status == 400 and ".xlsx" in text
        form = app.form()
        form.add_field("file", b"garbage", filename="reply.hbw")
        status, text = await app.post("/bundle/import", form)
        assert "That did not work" in text and "join" in text and status >= 400  # no relay yet: says what to do
        for data, words in (({"doc": "ffffffffffffffff", "version": "9999999"}, "ffffffffffffffff"),
                            ({"doc": "ffffffffffffffff", "version": "12345678"}, "too long"),
                            ({"doc": "../../etc/passwd"}, "not a document"),
                            ({"doc": "ffffffffffffffff", "version": "-1"}, "not a version")):
            status, text = await app.post("/docs/download", data)
            assert status == 400 and words in text, (data, text[-300:])
        async with app.http.get(app.base + "/docs/ffffffffffffffff/download") as r:
            assert r.status in (404, 405)  # a download is a POST (a reason may be needed), never a link
    assert snapshot(home) == before


async def test_without_the_supervisor_role_there_is_no_team_page(tmp_path):
    """A store that is not a supervisor's (here: one not yet in a team) has no Team link, and the page says why."""
    home, pp = tmp_path / "amina", f"amina {STRONG}"
    Device.init(home, "amina", pp, kdf=FAST_KDF).close()
    async with Running(home, pp) as app:
        async with app.http.get(app.base + "/") as r:
            assert 'href="/team"' not in await r.text()
        async with app.http.get(app.base + "/team") as r:
            assert r.status == 400 and "is for your team" in await r.text()
        status, text = await app.post("/team/apply", {"task": "0123456789abcdef", "from": "dana", "to": "amina"})
        assert status == 400 and "That did not work" in text


def test_sync_progress_is_told_in_words_and_sizes():
    from hbw_sync.client.app.pages.syncing import SyncJob
    from hbw_sync.client.progress import Progress

    job = SyncJob(running=True)
    assert job.text() == "Syncing…"
    job.progress(Progress("upload", 1500, 4000))
    assert job.text() == "Sending: 1.5 KB of 4.0 KB"
    assert job.to_dict() | {"text": None} == {"running": True, "phase": "upload", "done_bytes": 1500,
                                              "total_bytes": 4000, "ok": None, "text": None, "words": []}
    job.progress(Progress("download", 700, None))
    assert job.text() == "Receiving: 700 B"


async def test_sync_now_that_cannot_reach_a_relay_says_so_and_keeps_everything(tmp_path, monkeypatch):
    """A store whose relay is a closed port: Sync now ends in words, the task still waits to be sent."""
    import asyncio

    home, _tid = store(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with Device.open(home) as dev:
        with dev.store.transaction():
            dev.store.set_meta("relay_url", f"http://127.0.0.1:{closed}")
        waiting = dev.status()["outbox"]
    from hbw_sync.client.app.pages import syncing as page

    monkeypatch.setattr(page, "SYNC_DEADLINE_S", 0.0)  # one attempt: the test need not wait for retries
    async with Running(home) as app:
        status, text = await app.post("/sync")
        assert status == 200 and "Sync now" in text
        for _ in range(600):
            async with app.http.get(app.base + "/sync/progress") as r:
                state = await r.json()
            if not state["running"]:
                break
            await asyncio.sleep(0.1)
        assert state["ok"] is False and "Sync did not finish" in state["text"] and "Nothing is lost" in state["text"]
        async with app.http.get(app.base + "/sync") as r:
            assert "Sync did not finish" in await r.text()
    with Device.open(home) as dev:
        assert dev.status()["outbox"] == waiting
