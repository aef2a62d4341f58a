"""Uploads to the app against hostile senders: the real app on a loopback port, a real store, a raw
HTTP client that never stops sending (``upload_helpers``), and aiohttp's client for the forms a
browser sends. What must hold: the CSRF token is the first part and a wrong or missing one is
refused before the body is read; parts, text fields and files have caps; over a cap the sender
gets the reason and the connection is closed, not drained; a refusal keeps nothing; a file's
name arrives as a person can read it and as a folder can hold it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from app_helpers import Running
from hbw_sync import i18n, timefmt
from hbw_sync.client import Device
from hbw_sync.client.app import upload
from hbw_sync.client.app.upload import MAX_PARTS, MAX_TEXT, document_name
from hbw_sync.client.importer.tables import MAX_IMPORT_BYTES
from relay_helpers import FAST_KDF, STRONG
from upload_helpers import BOUNDARY, end, part, send

#: What an endless sender may push before the app's answer: the socket buffers of both ends (a few
#: MiB on Linux), never the body. A sender the app read to the end would push without limit.
SOCKET_SLACK = 24 * 1024 * 1024


def store(tmp_path: Path) -> tuple[Path, str]:
    home, pp = tmp_path / "dana", f"dana {STRONG}"
    Device.init(home, "dana", pp, kdf=FAST_KDF).close()
    with Device.open(home) as dev:
        dev.unlock(pp).create_team("District Finance")
    return home, pp


def docs(home: Path, pp: str) -> list[str]:
    with Device.open(home) as dev:
        return sorted(d.name for d in dev.unlock(pp).docs())


def leftovers(home: Path) -> list[Path]:
    """Upload folders left in the store's folder (every refusal must remove its own)."""
    return [p for p in home.rglob(".hbw-upload-*")]


def file_head(csrf: str, filename: str) -> bytes:
    """The token part, then the start of a file part whose content the sender goes on with for ever."""
    return part("csrf", csrf.encode()) + (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n\r\n').encode()


def sid_of(app: Running) -> str:
    return next(iter(app.gate.sessions))


@pytest.mark.parametrize("first", [
    part("csrf", b"not the token"),                      # wrong token
    part("file", b"%PDF-1.7", "scan.pdf"),                # no token: the file first
    part("task", b"0123456789abcdef"),                    # no token: another field first
    part("csrf", b"x" * 70_000),                          # a "token" that never ends
])
async def test_no_csrf_first_part_is_refused_before_the_body_is_read(tmp_path: Path, first: bytes) -> None:
    home, pp = store(tmp_path)
    async with Running(home, pp) as app:
        got = await send(app.port, "/docs", sid_of(app), first, endless=True)
    assert got.status == 403 and "stale" in got.text
    # The sender could push only what the two sockets buffer: the app read a few KiB, then closed.
    assert got.sent < SOCKET_SLACK
    assert docs(home, pp) == [] and leftovers(home) == []


async def test_a_good_token_then_too_many_parts_is_refused_and_cut(tmp_path: Path) -> None:
    home, pp = store(tmp_path)
    async with Running(home, pp) as app:
        body = part("csrf", app.csrf.encode()) + b"".join(part(f"x{i}", b"1") for i in range(MAX_PARTS + 2))
        got = await send(app.port, "/docs", sid_of(app), body, endless=True,
                         filler=part("more", b"1") * 1000)
    assert got.status == 400 and f"at most {MAX_PARTS}" in got.text and got.sent < SOCKET_SLACK
    assert docs(home, pp) == [] and leftovers(home) == []


async def test_an_oversize_text_field_is_refused_without_being_buffered(tmp_path: Path) -> None:
    home, pp = store(tmp_path)
    async with Running(home, pp) as app:
        body = part("csrf", app.csrf.encode()) + part("task", b"0" * (MAX_TEXT + 1))
        got = await send(app.port, "/docs", sid_of(app), body + part("file", b"hello", "a.txt") + end())
        assert got.status == 413 and "longer than 65.5 KB" in got.text
        # and a text field that never ends (a 100 MiB one, as far as the sender is concerned)
        head = part("csrf", app.csrf.encode()) + f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="task"\r\n\r\n'.encode()
        got = await send(app.port, "/docs", sid_of(app), head, endless=True)
    assert got.status == 413 and got.sent < SOCKET_SLACK
    assert docs(home, pp) == [] and leftovers(home) == []


async def test_an_oversize_file_is_cut_at_its_forms_cap_and_nothing_is_kept(tmp_path: Path) -> None:
    home, pp = store(tmp_path)
    async with Running(home, pp) as app:
        got = await send(app.port, "/import/preview", sid_of(app), file_head(app.csrf, "week.csv"), endless=True)
        assert got.status == 413 and "larger than this form takes (16.8 MB)" in got.text
        assert MAX_IMPORT_BYTES < got.sent < MAX_IMPORT_BYTES + SOCKET_SLACK  # read to the cap, not past it
        assert list(Path(app.app[upload_spool()]).iterdir()) == []  # no preview kept
        # The app still serves the same session afterwards.
        async with app.http.get(app.base + "/docs") as r:
            assert r.status == 200
    assert docs(home, pp) == [] and leftovers(home) == []


def upload_spool():  # the import page's spool folder key
    from hbw_sync.client.app.pages.importing import SPOOL

    return SPOOL


async def test_a_locked_app_refuses_an_upload_without_reading_it(tmp_path: Path) -> None:
    home, pp = store(tmp_path)
    async with Running(home, pp) as app:
        app.gate.lock()
        got = await send(app.port, "/docs", sid_of(app), file_head(app.csrf, "scan.pdf"), endless=True)
    assert got.status == 200 and "locked" in got.text and got.sent < SOCKET_SLACK
    assert docs(home, pp) == [] and leftovers(home) == []


async def test_multipart_to_a_form_without_a_file_is_refused(tmp_path: Path) -> None:
    home, pp = store(tmp_path)
    async with Running(home, pp) as app:
        form = app.form()
        form.add_field("title", "Reconcile invoices")
        form.add_field("file", b"x", filename="x.txt")
        status, text = await app.post("/tasks", form)
    assert status == 415
    with Device.open(home) as dev:
        assert dev.unlock(pp).tasks() == []


@pytest.mark.parametrize("sent, shown", [
    ("..%2F..%2Fetc%2Fpasswd", "passwd"),
    ("../../.ssh/authorized_keys", "authorized_keys"),
    ("C:\\Users\\dana\\Desktop\\rapport.docx", "rapport.docx"),
    ("invoice\u202egpj.exe", "invoicegpj.exe"),                      # right-to-left override
    ("\u2067report\u2069\u200f.pdf", "report.pdf"),                    # isolates and marks
    ("rapport%20final%20%C3%A9t%C3%A9.odt", "rapport final été.odt"),   # percent-escaped UTF-8
    ("e\u0301te\u0301.txt", "\u00e9t\u00e9.txt"),                       # NFD from a Mac: NFC
    ("tab\there\nnew\x00line.txt", "tabherenewline.txt"),             # control characters
    ("..", "document"), ("", "document"), ("%2F", "document"), ("\u202e", "document"),
    ("name. . .", "name"),
])
def test_document_name_makes_a_sent_name_safe_and_human(sent: str, shown: str) -> None:
    assert document_name(sent) == shown


def test_document_name_is_at_most_200_characters_and_keeps_the_extension() -> None:
    long = document_name("é" * 500 + ".pdf")
    assert len(long) == 200 and long.endswith("é.pdf")
    assert len(document_name("x" * 1000)) == 200


async def test_every_form_names_the_document_as_sent_but_safe(tmp_path: Path) -> None:
    """The add form, a task's attach form and a new version: names through ``document_name``, never a path."""
    home, pp = store(tmp_path)
    with Device.open(home) as dev:
        tid = dev.unlock(pp).add_task("Reconcile invoices").id
    async with Running(home, pp) as app:
        for filename, extra in (("..%2F..%2Fminutes\u202etxt.exe", {}), ("../../notes.txt", {"task": tid})):
            form = app.form()
            for k, v in extra.items():
                form.add_field(k, v)
            form.add_field("file", b"hello", filename=filename, content_type="text/plain")
            async with app.http.post(app.base + "/docs", data=form, headers=app.me) as r:
                assert r.status == 200, await r.text()
        got = docs(home, pp)
        assert got == ["minutestxt.exe", "notes.txt"]
        with Device.open(home) as dev:
            did = next(d.id for d in dev.unlock(pp).docs() if d.name == "notes.txt")
        form = app.form()
        form.add_field("file", b"hello again", filename="../other.txt")
        async with app.http.post(app.base + f"/docs/{did}/update", data=form, headers=app.me) as r:
            assert r.status == 200
    with Device.open(home) as dev:
        d = dev.unlock(pp).doc(did)
        assert d.versions == 2 and d.name == "notes.txt"
    assert not list(tmp_path.rglob("minutes*")) and not list(tmp_path.rglob("*.exe")) and leftovers(home) == []


async def test_an_upload_form_without_its_file_says_so(tmp_path: Path) -> None:
    home, pp = store(tmp_path)
    async with Running(home, pp) as app:
        status, text = await app.post("/bundle/import", app.form())
        assert status == 400 and "Choose a file first" in text
        status, text = await app.post("/docs", {"task": "0123456789abcdef"})  # urlencoded: no file part
        assert status == 400 and "Choose a file first" in text
    assert leftovers(home) == []


def test_sizes_follow_the_language_and_json_keeps_bytes() -> None:
    assert timefmt.human_bytes(945_800) == "945.8 KB"
    i18n.set_language("fr")
    try:
        assert timefmt.human_bytes(945_800) == "945,8\u00a0ko"
        assert timefmt.human_bytes(812) == "812\u00a0o"
        assert timefmt.human_bytes(4 * 1024**3) == "4,3\u00a0Go"
        assert timefmt.machine_form({"size": 945_800}) == {"size": 945_800}
    finally:
        i18n.set_language("en")


async def test_the_form_pages_put_the_token_first(tmp_path: Path) -> None:
    """The app's own upload forms send the CSRF token as their first part (browsers keep DOM order)."""
    import re

    home, pp = store(tmp_path)
    async with Running(home, pp) as app:
        for path in ("/docs", "/sync", "/import"):
            async with app.http.get(app.base + path) as r:
                html = await r.text()
            for f in re.findall(r'<form[^>]*multipart/form-data[^>]*>(.*?)</form>', html, re.S):
                first = re.search(r"<(input|select|textarea)\b[^>]*>", f)
                assert first and 'name="csrf"' in first.group(0), (path, f[:200])


async def test_an_app_starting_removes_what_a_crashed_one_left_and_only_that(tmp_path: Path) -> None:
    import os
    import time

    home, pp = store(tmp_path)
    old, fresh, other = home / ".hbw-upload-crashed", home / ".hbw-upload-busy", home / "keep-me"
    for d in (old, fresh, other):
        d.mkdir()
        (d / "scan.pdf").write_bytes(b"%PDF")
    day_ago = time.time() - upload.LEFTOVER_AGE_S - 60
    os.utime(old, (day_ago, day_ago))
    os.utime(other, (day_ago, day_ago))
    async with Running(home, pp):
        pass
    assert not old.exists() and fresh.exists() and other.exists()


def test_saving_changes_with_a_document_over_the_mail_cap_gives_one_whole_file(team, tmp_path: Path) -> None:
    """The Sync page's "Save changes to a file" with a 12 MB scan waiting: one download (a browser gets
    one file per click; the CLI's 10 MB mail split would leave the person with a part), streamed, that
    the office ingests whole, and Dana then holds the scan byte for byte. No file is left behind."""
    from hbw_sync.server import admin
    from relay_helpers import incompressible, member_cli

    dana, chidi = team.pair("dana", "chidi")
    scan = incompressible(12_000_000, 3)
    (tmp_path / "scan.pdf").write_bytes(scan)
    code, out = member_cli(chidi, "doc", "add", str(tmp_path / "scan.pdf"))
    assert code == 0, out
    saved = tmp_path / "saved.hbw"

    async def save_changes() -> None:  # the app in this test's own loop (syncs call asyncio.run, so not here)
        async with Running(chidi.home, chidi.passphrase) as app:
            async with app.http.get(app.base + "/sync") as r:
                assert "more than most mail servers take" in await r.text()  # said before the person saves
            async with app.http.post(app.base + "/bundle/export", data={"csrf": app.csrf}, headers=app.me) as r:
                assert r.status == 200, await r.text()
                assert r.headers["Content-Disposition"].startswith('attachment; filename="hbw-changes-')
                with saved.open("wb") as f:
                    async for piece in r.content.iter_chunked(1 << 16):
                        f.write(piece)
            assert int(r.headers["Content-Length"]) == saved.stat().st_size > 12_000_000

    asyncio.run(save_changes())
    assert not list(chidi.home.glob(".hbw-upload-*"))
    admin.ingest_bundle(team.data, saved, tmp_path / "replies")
    assert dana.sync().ok
    with dana.open() as rep:
        (doc,) = [d for d in rep.docs() if d.name == "scan.pdf"]
    code, out = member_cli(dana, "doc", "get", doc.id, "-o", str(tmp_path / "copy.pdf"))
    assert code == 0, out
    assert (tmp_path / "copy.pdf").read_bytes() == scan
