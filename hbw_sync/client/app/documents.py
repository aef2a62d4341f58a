"""The app's Documents page: the list with each confidential mark, and the download.

The download is ``Replica.export_doc``, the same call as ``hbw-sync doc get``: a confidential
document needs a reason, typed in the form; without one nothing is sent and nothing is recorded;
with one the export is recorded (who, device, when, why) before the bytes leave. Registered by
``server.create_app``; kept apart so the pages there stay small.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

from aiohttp import web

from ...errors import HbwError
from ...i18n import _
from ...timefmt import human_bytes
from .. import views
from ..device import Device
from .server import GATE, HOME, csrf_field, esc, page, unlock_form

MAX_REASON_FIELD = 4000  # form bytes we read for a reason; the library keeps at most 1,000 characters


async def docs_page(request: web.Request) -> web.StreamResponse:
    """Every document, its size, and a download form (with a reason field for a confidential one)."""
    pp = request.app[GATE].touch(time.monotonic())
    if pp is None:
        return unlock_form(request)
    home = request.app[HOME]

    def load() -> list[views.DocView]:
        with Device.open(home) as dev:  # type: ignore[arg-type]
            return dev.unlock(pp).docs()

    try:
        docs = await asyncio.to_thread(load)
    except HbwError as e:
        return page(request, _("Documents"), f'<p role="alert">{esc(e)}</p>')
    rows = []
    for d in docs:
        mark = f' <strong>{esc(_("Confidential"))}</strong>' if d.confidential else ""
        reason = (f'<label for="r-{esc(d.id)}">{esc(_("Reason (recorded for your supervisor)"))}</label> '
                  f'<input id="r-{esc(d.id)}" name="reason" required maxlength="1000"> ') if d.confidential else ""
        rows.append(f'<li>{esc(d.name)} ({esc(human_bytes(d.size))}){mark}'
                    f'<form method="post" action="/docs/download">{csrf_field(request)}'
                    f'<input type="hidden" name="doc" value="{esc(d.id)}">{reason}'
                    f'<button>{esc(_("Download"))}</button></form></li>')
    body = f"<ul>{''.join(rows)}</ul>" if rows else f"<p>{esc(_('No documents.'))}</p>"
    return page(request, _("Documents"), body + f'<p><a href="/">{esc(_("My work"))}</a></p>')


async def download(request: web.Request) -> web.StreamResponse:
    """The bytes as an attachment, through ``export_doc``; a refusal is a page, with nothing sent."""
    pp = request.app[GATE].touch(time.monotonic())
    if pp is None:
        return unlock_form(request)
    form = await request.post()
    doc, reason = form.get("doc"), form.get("reason")
    if not isinstance(doc, str) or not 2 <= len(doc) <= 64:
        return _refused(request, _("No such document."))
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON_FIELD):
        return _refused(request, _("The reason is too long; nothing was downloaded."))
    home = request.app[HOME]

    def export() -> tuple[Any, bytes]:
        with Device.open(home) as dev:  # type: ignore[arg-type]
            return dev.unlock(pp).export_doc(doc, reason=reason)

    try:
        view, data = await asyncio.to_thread(export)
    except HbwError as e:
        return _refused(request, e.message)
    name = views.safe_filename(view.name)
    return web.Response(body=data, content_type="application/octet-stream", headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}", "Cache-Control": "no-store"})


def _refused(request: web.Request, message: str) -> web.Response:
    resp = page(request, _("Documents"), f'<p role="alert">{esc(message)}</p>'
                f'<p><a href="/docs">{esc(_("Back"))}</a></p>')
    resp.set_status(400)
    return resp


def register(app: web.Application) -> None:
    app.router.add_get("/docs", docs_page)
    app.router.add_post("/docs/download", download)
