"""Sync: what waits, the last sync, Sync now with live progress, and bundle export and import.

Why a background job: on Amina's 3G link a sync takes minutes and she does not watch it. "Sync
now" starts the library's ``sync`` (the CLI's call, with a 10-minute deadline so a dropped link
goes on where it stopped) in a worker thread and answers at once; the page polls
``/sync/progress`` (JSON) for the ``Progress`` events and shows them in a progress bar and a
live region, and says in words how it ended. One sync at a time: the job is the app's, so a
second click while one runs just shows it.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ....bundle import MAX_BUNDLE
from ....errors import HbwError
from ..hints import app_words
from ....i18n import _, ngettext
from ....timefmt import ago, human_bytes, when
from ... import bundles, sync as syncing
from ...device import Device, now_ms
from ...progress import Progress
from ..layout import GATE, esc, form, home_of, in_worker, page, unlocked
from .. import upload

#: How long Sync now keeps going after a dropped link (the CLI's default on a terminal).
SYNC_DEADLINE_S = 600.0


@dataclass
class SyncJob:
    """The app's one sync: written by the worker thread, read by the progress endpoint."""

    running: bool = False
    phase: str = ""
    done: int = 0
    total: int | None = None
    finished_ms: int | None = None
    ok: bool | None = None
    words: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def progress(self, p: Progress) -> None:
        self.phase, self.done, self.total = p.phase, p.done, p.total

    def to_dict(self) -> dict[str, Any]:
        return {"running": self.running, "phase": self.phase, "done_bytes": self.done, "total_bytes": self.total,
                "ok": self.ok, "text": self.text(), "words": self.words}

    def text(self) -> str:
        if self.running:
            phase = {"upload": _("Sending"), "download": _("Receiving")}.get(self.phase, _("Connecting"))
            if self.total:
                return _("{phase}: {done} of {total}").format(phase=phase, done=human_bytes(self.done),
                                                             total=human_bytes(self.total))
            return _("{phase}: {done}").format(phase=phase, done=human_bytes(self.done)) if self.done \
                else _("Syncing…")
        return " ".join(self.words)


JOB = web.AppKey("sync_job", SyncJob)


def report_words(r: syncing.SyncReport) -> list[str]:
    out = [_("Sync finished: sent {sent} ({sb}), received {rcv} ({rb}).").format(
        sent=ngettext("{n} batch", "{n} batches", r.sent_batches).format(n=r.sent_batches),
        sb=human_bytes(r.sent_bytes),
        rcv=ngettext("{n} batch", "{n} batches", r.received_batches).format(n=r.received_batches),
        rb=human_bytes(r.received_bytes))]
    if r.waiting_to_apply:
        out.append(_("Some of what arrived will be applied at your next action."))
    out += list(r.notes)
    return out


def run_sync(home: Path | None, passphrase: str, job: SyncJob) -> None:
    """The worker: the library's sync, its outcome kept in words on the job."""
    try:
        r = syncing.sync(home, passphrase, on_progress=job.progress, deadline=SYNC_DEADLINE_S)
        job.ok, job.words = not r.rejected, report_words(r)
    except HbwError as e:
        job.ok = False
        what, hint = app_words(e)
        job.words = [_("Sync did not finish: {what}").format(what=what)]
        if hint:
            job.words.append(_("What to do: {hint}").format(hint=hint))
        job.words.append(_("Nothing is lost: what did not go waits here for the next sync."))
    finally:
        job.finished_ms = now_ms()
        job.running = False


def waiting_words(status: dict[str, Any]) -> list[str]:
    o = status["outbox"]
    if o["changes"]:
        lines = [ngettext("{n} change waits to be sent ({size}).", "{n} changes wait to be sent ({size}).",
                          o["changes"]).format(n=o["changes"], size=human_bytes(o["bytes"]))]
    else:
        lines = [_("Nothing waits to be sent.")]
    if status["waiting_for_team_key"]:
        lines.append(ngettext("{n} change waits for the team key: it is kept here and sent once this device holds it.",
                              "{n} changes wait for the team key: they are kept here and sent once this device holds it.",
                              status["waiting_for_team_key"])
                     .format(n=status["waiting_for_team_key"]))
    return lines


def mail_cap_words(status: dict[str, Any]) -> str:
    """A warning before saving a file most mail servers would refuse (the app saves one file, whatever its size)."""
    o = status["outbox"]
    size = o["bytes"] + o["document_bytes"]
    if size <= bundles.DEFAULT_MAX_BYTES:
        return ""
    return '<p class="alert">' + esc(_("The file will be about {size}: more than most mail servers take ({cap}). "
                                       "Carry it to the office on a USB stick, or sync online.").format(
        size=human_bytes(size), cap=human_bytes(bundles.DEFAULT_MAX_BYTES))) + "</p>"


def key_flow_words(w: dict[str, Any]) -> str:
    """What the key flow waits for, said for this app (the library's ``todo`` names CLI commands)."""
    said = {
        "approval": _("This device waits for your supervisor’s approval. Tell them the code below (in person or by "
                      "phone); they approve it on their Team page. Until then this device holds no team key."),
        "welcome": _("This device waits for the team key from the supervisor who invited you: sync again later; if "
                     "it stays, ask them."),
        "unlock": _("The team key has arrived; it opens with your next action here."),
        "your approval": _("A device waits for your approval: see the Team page."),
    }
    return said.get(w.get("waits_for", ""), w.get("todo", ""))


@unlocked
async def sync_page(request: web.Request, pp: str) -> web.StreamResponse:
    home = home_of(request)

    def load() -> dict[str, Any]:
        with Device.open(home) as dev:
            return dev.status()

    s = await in_worker(load)
    job = request.app[JOB]
    now = now_ms()
    body = f'<h2>{esc(_("Waiting to be sent"))}</h2>' + "".join(f"<p>{esc(x)}</p>" for x in waiting_words(s))
    for w in s["key_flow"]:
        code = f'<br><strong>{esc(_("Code to show your supervisor:"))} <span class="code">{esc(w["code"])}</span></strong>' \
            if w.get("code") else ""
        body += f'<p class="alert">{esc(key_flow_words(w))}{code}</p>'
    body += f'<h2>{esc(_("Last sync"))}</h2>'
    last = s["last_sync"]
    if last is None:
        body += f"<p>{esc(_('Never synced.'))}</p>"
    else:
        at = f"{when(last['at_ms'], now)} ({ago(last['at_ms'], now)})"
        body += "<p>" + esc((_("Last sync {at}: it worked.") if last["ok"]
                             else _("Last sync {at}: it failed ({why}).")).format(at=at, why=last["detail"])) + "</p>"
        if not last["ok"] and s["last_successful_sync_ms"]:
            body += "<p>" + esc(_("Last sync that worked: {at}.").format(
                at=when(s["last_successful_sync_ms"], now))) + "</p>"
    for n in s["notices"]:
        body += f"<p>{esc(n)}</p>"
    if s["conflict_details"]:
        body += f'<h2>{esc(_("Conflicts settled"))}</h2><ul class="cards">' + "".join(
            f"<li>{esc(c)}</li>" for c in s["conflict_details"]) + "</ul>"
    state = job.to_dict()
    bar = (f'<progress id="sync-bar" max="{state["total_bytes"] or 1}" value="{state["done_bytes"] if state["total_bytes"] else 0}"'
           f'{"" if job.running else " hidden"} aria-label="{esc(_("Sync progress"))}"></progress>')
    outcome = "alert" if job.ok is False else ("ok" if job.ok else "")
    body += (f'<h2>{esc(_("Sync now"))}</h2>'
             + form(request, "/sync", f'<button id="sync-now"{" disabled" if job.running else ""}>{esc(_("Sync now"))}</button>')
             + bar + f'<p id="sync-state" class="{outcome}" role="status" aria-live="polite" '
               f'data-running="{"1" if job.running else "0"}">{esc(job.text())}</p>'
             + '<script src="/static/sync.js" defer></script>')
    body += (f'<h2>{esc(_("No link? Sync by file"))}</h2>'
             f'<p>{esc(_("Save your changes as a file, send it to the office by email or on a USB stick, and open the reply they send back here."))}</p>'
             + mail_cap_words(s)
             + form(request, "/bundle/export", f'<p><button>{esc(_("Save changes to a file"))}</button></p>')
             + form(request, "/bundle/import", (
                 f'<p class="field"><label for="bundle">{esc(_("Reply file from the office"))}</label>'
                 f'<input id="bundle" name="file" type="file" required></p>'
                 f'<p><button>{esc(_("Open reply"))}</button></p>'), multipart=True))
    return page(request, _("Sync"), body)


@unlocked
async def sync_now(request: web.Request, pp: str) -> web.StreamResponse:
    job = request.app[JOB]
    with job.lock:
        if not job.running:
            job.running, job.ok, job.words, job.phase, job.done, job.total = True, None, [], "", 0, None
            task = asyncio.ensure_future(in_worker(lambda: run_sync(home_of(request), pp, job)))
            request.app[TASKS].add(task)  # held so it is not collected mid-sync; dropped when done
            task.add_done_callback(request.app[TASKS].discard)
    raise web.HTTPSeeOther("/sync")


async def progress(request: web.Request) -> web.StreamResponse:
    """JSON for the page's poller; it carries no content, only how far the sync is."""
    if request.app[GATE].touch(time.monotonic()) is None and not request.app[JOB].running:
        return web.json_response({"locked": True})
    return web.json_response(request.app[JOB].to_dict())


#: Pieces of a saved bundle sent to the browser at a time.
EXPORT_PIECE = 1 << 20


@unlocked
async def bundle_export(request: web.Request, pp: str) -> web.StreamResponse:
    """The outbox as one bundle file to download, whatever its size, streamed from disk.

    Why one file with no size cap (the CLI's ``bundle export`` splits at 10 MB for mail): a browser
    download is one file per click, and a split export would leave the person with a part and no
    way to get the others. The file is written in the store's own folder (``.hbw-upload-``, swept
    if the app is killed) and removed once sent; the outbox stays as it is until the relay's reply
    confirms the bundle arrived, so a download that never reaches the office loses nothing.
    """
    home = home_of(request)
    tmp = Path(tempfile.mkdtemp(prefix=".hbw-upload-", dir=upload.folder(home)))
    try:
        path = tmp / "bundle.hbw"
        await in_worker(lambda: bundles.export_bundle(home, path, None, passphrase=pp))
        name = f"hbw-changes-{time.strftime('%Y-%m-%d-%H%M')}.hbw"
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream",
                                           "Content-Disposition": f'attachment; filename="{name}"',
                                           "Content-Length": str(path.stat().st_size), "Cache-Control": "no-store"})
        await resp.prepare(request)
        with path.open("rb") as f:
            while piece := await in_worker(lambda: f.read(EXPORT_PIECE)):
                await resp.write(piece)
        await resp.write_eof()
        return resp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


#: Where the reply file is posted; the form takes one file, up to the largest bundle either side opens.
UPLOAD_PATH = "/bundle/import"
BUNDLE_FORM = upload.Spec(file_cap=MAX_BUNDLE)


@unlocked
async def bundle_import(request: web.Request, pp: str) -> web.StreamResponse:
    home = home_of(request)
    async with upload.receive(request, BUNDLE_FORM, upload.folder(home)) as up:
        path = up.file()
        r = await in_worker(lambda: bundles.import_bundle(home, path, pp))
    if r["already_imported"]:
        words = _("This reply was already opened; nothing changed.")
    else:
        words = _("Reply opened: {acks} of your batches confirmed, {got} received ({n} changes).").format(
            acks=r["acks"], got=r["received_batches"], n=r["applied_ops"])
        if r["more_waiting"]:
            words += " " + _("More waits at the office: save your changes to a file again to get it.")
    return page(request, _("Sync"), f'<p class="ok" role="status">{esc(words)}</p><p><a href="/sync">{esc(_("Back to Sync"))}</a></p>')


TASKS: web.AppKey[set[asyncio.Task[None]]] = web.AppKey("sync_tasks", set)


async def _wait_for_sync(app: web.Application) -> None:
    for t in app[TASKS].copy():
        await asyncio.wait([t], timeout=30)


def register(app: web.Application) -> None:
    app[JOB] = SyncJob()
    app[TASKS] = set()
    app.on_cleanup.append(_wait_for_sync)
    app.router.add_get("/sync", sync_page)
    app.router.add_post("/sync", sync_now)
    app.router.add_get("/sync/progress", progress)
    app.router.add_post("/bundle/export", bundle_export)
    app.router.add_post(UPLOAD_PATH, bundle_import)
