"""Documents: the list, add by upload, a document's versions, download any version, a new version.

Uploads are read part by part by ``upload.receive`` (CSRF token first, the file streamed to a
private temporary directory in the store's folder, refused past 4 GiB, ``MAX_DOC_BYTES``, before
it is all read) and handed to ``Replica.add_doc`` or ``update_doc``, the calls ``hbw-sync doc add``
and ``doc update`` make; the form's label says that cap, from the constant. The name a person sees
is ``upload.document_name`` of what the browser sent.

A download is ``Replica.export_stream``, the call ``hbw-sync doc get`` makes (issue 17 item 3), after
fetching a version that is not on this computer from the relay, as ``doc get`` does: a
confidential document needs a reason, typed in the download's form; without one nothing is sent
and nothing is recorded; with one the export is recorded (who, device, when, why) before the
bytes leave. So every download is a POST with the CSRF token, never a link another page could
make the browser follow.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import re
import threading
from typing import Any
from urllib.parse import quote

from aiohttp import web

from ....errors import UsageError
from ....i18n import _, ngettext
from ....timefmt import human_bytes
from ...documents import MAX_DOC_BYTES
from ... import views
from .. import upload
from ..layout import call, esc, flash, form, home_of, human_time, page, text_of, unlocked

DOC_ID = re.compile(r"^[0-9a-f]{16}$")
TASK_ID = re.compile(r"^[0-9a-f]{16}$")
#: Form characters read for a reason; the library keeps at most 1,000 and refuses more, in words.
MAX_REASON_FIELD = 4000


def doc_id(request: web.Request) -> str:
    did = request.match_info["did"]
    if not DOC_ID.match(did):
        raise UsageError(_("That is not a document's address."))
    return did


#: The document forms (add, new version): a document up to the library's cap (4 GiB), and a task to attach to.
DOC_FORM = upload.Spec(file_cap=MAX_DOC_BYTES, texts=frozenset({"task"}))


def upload_label() -> str:
    """The add form's label, with the largest document hbw-sync carries as people read sizes (4.3 GB)."""
    return _("File (up to {size})").format(size=human_bytes(MAX_DOC_BYTES))


_UPLOAD_PATH = re.compile(r"/docs(/[0-9a-f]{1,64}/update)?")


def takes_upload(path: str) -> bool:
    """Whether a POST to ``path`` carries a document (so its body may be as large as a document)."""
    return _UPLOAD_PATH.fullmatch(path) is not None


def upload_form(request: web.Request, action: str, label: str, button: str, task: str | None = None) -> str:
    hidden = f'<input type="hidden" name="task" value="{esc(task)}">' if task else ""
    return form(request, action, (
        hidden + f'<p class="field"><label for="file">{esc(label)}</label>'
        f'<input id="file" name="file" type="file" required></p><p><button>{esc(button)}</button></p>'),
        multipart=True)


@unlocked
async def list_docs(request: web.Request, pp: str) -> web.StreamResponse:
    docs: list[views.DocView] = await call(request, pp, lambda rep: rep.docs())
    if docs:
        head = "".join(f'<th scope="col">{esc(h)}</th>' for h in
                       (_("Name"), _("Size"), _("Versions"), _("Task"), _("Download")))
        rows = []
        for d in docs:
            mark = (f' <span class="tag late">{esc(_("conflict copy: two people edited it offline; both kept"))}</span>'
                    if d.conflict_of else "")
            link = f'/docs/{d.conflict_of}' if d.conflict_of else f"/docs/{d.id}"
            task = f'<a href="/tasks/{d.task}">{esc(d.task[:6])}</a>' if d.task else "-"
            if d.confidential:
                mark += f' <strong class="tag urgent">{esc(_("Confidential"))}</strong>'
            if not d.local:  # policy 'mine'/'none', or a derived version still to be worked out (§18e)
                mark += f' <span class="tag">{esc(_("not on this computer yet"))}</span>'
            rows.append(f'<tr><td data-label="{esc(_("Name"))}"><a href="{link}">{esc(d.name)}</a>{mark}</td>'
                        f'<td data-label="{esc(_("Size"))}">{esc(human_bytes(d.size))}</td>'
                        f'<td data-label="{esc(_("Versions"))}">{d.versions}</td>'
                        f'<td data-label="{esc(_("Task"))}">{task}</td>'
                        f'<td>{download_form(request, d, f"l-{d.id}")}</td></tr>')
        body = f'<table class="tasks"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        body += f'<p class="muted">{esc(_("Every version of every document is kept on this computer, encrypted: opening one needs no link."))}</p>'
    else:
        body = f"<p>{esc(_('No documents yet.'))}</p>"
    # The drop zone: the same form, outlined; drop.js puts a file dragged onto the page in its field.
    drop = (f'<div id="drop-form-box" class="dropzone"><p class="muted">'
            f'{esc(_("Choose a file, or drag one from your folders onto this page."))}</p>'
            + upload_form(request, "/docs", upload_label(), _("Add"))
            + '<p id="drop-state" role="status" aria-live="polite"></p></div>')
    drop = drop.replace('<form method="post" action="/docs"', (
        f'<form id="drop-form" data-drop-here="{esc(_("Drop the file to add it."))}" '
        f'data-one-file="{esc(_("Drop one file at a time."))}" '
        f'data-adding="{esc(_("Adding {name}…"))}" method="post" action="/docs"'), 1)
    body += f'<h2>{esc(_("Add a document"))}</h2>' + drop + '<script src="/static/drop.js" defer></script>'
    return page(request, _("Documents"), body)


@unlocked
async def add_doc(request: web.Request, pp: str) -> web.StreamResponse:
    async with upload.receive(request, DOC_FORM, upload.folder(home_of(request))) as up:
        task = text_of(up, "task", max_len=16)
        if task is not None and not TASK_ID.match(task):
            raise UsageError(_("That is not a task's address."))
        path = up.file()
        d = await call(request, pp, lambda rep: rep.add_doc(path, task=task, name=up.name))
    raise web.HTTPSeeOther(f"/tasks/{task}" if task else f"/docs/{d.id}")


@unlocked
async def show_doc(request: web.Request, pp: str) -> web.StreamResponse:
    did = doc_id(request)

    def load(rep: Any) -> tuple[views.DocView, list[views.DocView]]:
        d = rep.doc(did)
        return d, [c for c in rep.docs() if c.conflict_of == d.id]

    d, copies = await call(request, pp, load)
    facts = [(_("Size"), human_bytes(d.size)), (_("Versions"), str(d.versions)), (_("Last changed"), human_time(d.updated))]
    body = '<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts) + "</dl>"
    if d.task:
        body += f'<p><a href="/tasks/{d.task}">{esc(_("Its task"))}</a></p>'
    if d.confidential:
        body += (f'<p class="alert"><strong>{esc(_("Confidential"))}</strong>: '
                 f'{esc(_("a download needs a reason, which is recorded for your supervisor."))}</p>')
    body += f'<h2>{esc(_("Versions"))}</h2><ul class="cards">'
    for n in range(d.versions, 0, -1):
        label = _("Version {n} (current)").format(n=n) if n == d.versions else _("Version {n}").format(n=n)
        body += f"<li>{esc(label)} " + download_form(request, d, f"v{n}", version=n, label=label) + "</li>"
    body += "</ul>"
    if d.exports:
        body += f'<h2>{esc(_("Recorded downloads"))}</h2><ul>' + "".join(
            f"<li>{esc(_('{who}, {when}: {why}').format(who=e.by, when=human_time(e.at), why=e.reason))}</li>"
            for e in d.exports) + "</ul>"
    body += form(request, f"/docs/{d.id}/confidential", (
        f'<input type="hidden" name="mark" value="{"0" if d.confidential else "1"}">'
        f'<p><button class="secondary">{esc(_("Clear the confidential mark") if d.confidential else _("Mark confidential"))}'
        f'</button></p>'))
    if d.local:
        body += f'<p class="muted">{esc(ngettext("Its {n} version is on this computer.", "All {n} versions are on this computer.", d.versions).format(n=d.versions))}</p>'
    else:  # its download fetches it first (as 'doc get'): say so rather than claim it is here
        note = _("The current version is not on this computer yet: its download fetches it from the relay first.")
        body += f'<p class="muted">{esc(note)}</p>'
    if copies:
        body += f'<h2>{esc(_("Conflict copies"))}</h2><p>{esc(_("Two people saved a version offline at the same time; both are kept. Compare them and save the right one as a new version."))}</p><ul>'
        body += "".join(f"<li>{esc(c.name)} {download_form(request, c, f'c-{c.id}')}</li>" for c in copies)
        body += "</ul>"
    body += f'<h2>{esc(_("Save a new version"))}</h2>' + upload_form(
        request, f"/docs/{d.id}/update", _("File with the new version"), _("Save new version"))
    return page(request, _("Document: {name}").format(name=d.name), body)


@unlocked
async def update_doc(request: web.Request, pp: str) -> web.StreamResponse:
    did = doc_id(request)
    async with upload.receive(request, DOC_FORM, upload.folder(home_of(request))) as up:
        path = up.file()
        await call(request, pp, lambda rep: rep.update_doc(did, path))
    raise web.HTTPSeeOther(f"/docs/{did}")


def download_form(request: web.Request, d: views.DocView, key: str, version: int | None = None,
                  label: str | None = None) -> str:
    """A download button (a POST, through ``export_doc``), with a reason field for a confidential document."""
    inner = f'<input type="hidden" name="doc" value="{esc(d.id)}">'
    if version is not None:
        inner += f'<input type="hidden" name="version" value="{version}">'
    if d.confidential:
        inner += (f'<label for="r-{esc(key)}">{esc(_("Reason (recorded for your supervisor)"))}</label> '
                  f'<input id="r-{esc(key)}" name="reason" required maxlength="1000"> ')
    name = _("Download {what}").format(what=label or d.name)
    return form(request, "/docs/download", inner + f'<button aria-label="{esc(name)}">{esc(_("Download"))}</button>',
                cls="inline")


#: Pieces (chunks of at most 256 KiB) between the store and the browser: memory stays flat.
STREAM_QUEUE = 4


class _Stopped(Exception):
    """The browser went away: the worker stops reading the store."""


@unlocked
async def download(request: web.Request, pp: str) -> web.StreamResponse:
    """The bytes as an attachment, streamed from the store; a refusal is a page in words, with nothing sent.

    As ``hbw-sync doc get``: a version not on this computer is fetched from the relay first
    (``sync.fetch_doc``; a confidential one only once its reason is given), then sent one
    chunk at a time through ``Replica.export_stream``, which records a confidential export
    before the first byte. The worker thread holds the store open and hands pieces over a small
    queue: a 2 GiB scan never sits whole in memory, and if the browser goes away the worker
    stops. A version whose bytes do not match its hash is cut short (the browser reports a
    failed download), never completed with wrong bytes.
    """
    f = await request.post()
    did = text_of(f, "doc", max_len=64, required=True) or ""
    if not DOC_ID.match(did):
        raise UsageError(_("That is not a document's address."))
    v = text_of(f, "version", max_len=7)
    if v is not None and not v.isdigit():
        raise UsageError(_("That is not a version number."))
    reason = text_of(f, "reason", max_len=MAX_REASON_FIELD)
    version = int(v) if v else None
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=STREAM_QUEUE)
    stop = threading.Event()

    def put(item: Any) -> None:
        fut = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        while True:
            try:
                fut.result(timeout=0.5)
                return
            except concurrent.futures.TimeoutError:
                if stop.is_set():
                    fut.cancel()
                    raise _Stopped from None

    def produce(rep: Any) -> None:
        from ...sync import fetch_doc

        try:
            rep.check_export_reason(rep.doc_info(did, version), reason)  # no fetch for a refused download
            if rep.doc_missing(did, version):
                fetch_doc(rep, did, version)
            d, size, parts = rep.export_stream(did, version, reason=reason)
            put(("head", d, size))
            for part in parts:
                put(part)
            put(None)
        except _Stopped:
            pass
        except BaseException as e:  # told to the handler: a page before the head, a cut stream after it
            with contextlib.suppress(_Stopped):
                put(("error", e))

    work = asyncio.ensure_future(call(request, pp, produce))
    try:
        first = await queue.get()
        if first[0] == "error":
            raise first[1]
        _tag, d, size = first
        resp = web.StreamResponse(headers={
            "Content-Type": "application/octet-stream", "Cache-Control": "no-store",
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(views.safe_filename(d.name))}"})
        resp.content_length = size
        await resp.prepare(request)
        while (item := await queue.get()) is not None:
            if isinstance(item, tuple):  # an error after bytes went: cut the download short
                if request.transport is not None:
                    request.transport.close()
                return resp
            await resp.write(item)
        await resp.write_eof()
        return resp
    finally:
        stop.set()
        while not queue.empty():
            queue.get_nowait()
        with contextlib.suppress(Exception):
            await work


@unlocked
async def mark(request: web.Request, pp: str) -> web.StreamResponse:
    """Set or clear the confidential mark (its author or a supervisor; the library says no to others)."""
    did = doc_id(request)
    on = (await request.post()).get("mark") == "1"
    await call(request, pp, lambda rep: rep.mark_confidential(did, on))
    flash(request, _("Marked confidential: downloads now need a reason.") if on else _("The confidential mark is cleared."))
    raise web.HTTPSeeOther(f"/docs/{did}")


def register(app: web.Application) -> None:
    app.router.add_get("/docs", list_docs)
    app.router.add_post("/docs", add_doc)
    app.router.add_get("/docs/{did}", show_doc)
    app.router.add_post("/docs/{did}/update", update_doc)
    app.router.add_post("/docs/download", download)
    app.router.add_post("/docs/{did}/confidential", mark)
