"""Import a spreadsheet (.xlsx, .ods, CSV, JSON): upload, see the preview row by row, then import.

Two steps, like ``hbw-sync task import --dry-run`` then without: the upload is kept in a
temporary directory of this launch under a random key, the preview is the importer's dry-run
plan, and "Import these tasks" runs ``importer.import_file`` on the same file with the same
choices (all or nothing, or the good rows with "leave out bad rows"). The file never leaves this
computer; only the tasks it makes are synced, signed and encrypted, like any other change.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from ....errors import UsageError
from ....i18n import _, ngettext
from ... import importer
from ...importer.tables import MAX_IMPORT_BYTES
from ..layout import HOME, call, esc, flash, form, page, select, text_of, unlocked
from ...importer.plan import show_value
from .. import upload

#: Where the spreadsheet is posted; the form takes one file up to the importer's cap, and two text fields.
UPLOAD_PATH = "/import/preview"
SHEET_FORM = upload.Spec(file_cap=MAX_IMPORT_BYTES, texts=frozenset({"dates", "new_members"}))

#: Previews kept at once; the oldest is dropped past this (each is one uploaded file on disk).
MAX_PENDING = 8


@dataclass
class Pending:
    path: Path
    day_first: bool | None
    new_members: frozenset[str]


PENDING = web.AppKey("imports", dict)
SPOOL = web.AppKey("import_spool", str)


def action_words() -> dict[str, str]:
    return {"create": _("new task"), "update": _("update"), "unchanged": _("already up to date"),
            "skip": _("left as it is"), "bad": _("cannot be imported")}


#: Whether this computer's locale writes the day first (from ClientConfig, at the app's start).
LOCALE_DAY_FIRST = web.AppKey("locale_day_first", bool)


def options(p: Pending, locale_day_first: bool) -> importer.ImportOptions:
    return importer.ImportOptions(day_first=p.day_first, locale_day_first=locale_day_first,
                                  new_members=p.new_members)


def upload_form(request: web.Request) -> str:
    return form(request, "/import/preview", (
        f'<p class="field"><label for="sheet">{esc(_("Spreadsheet (.xlsx, .ods, .csv)"))}</label>'
        f'<input id="sheet" name="file" type="file" required accept=".xlsx,.ods,.csv,.json"></p>'
        + select(_("Dates like 05/12/2026 are"), "dates",
                 [("auto", _("read from the file and this computer")), ("day", _("day first (5 December)")),
                  ("month", _("month first (12 May)"))], "auto")
        + f'<p class="field"><label for="newm">{esc(_("Names to accept although their device has not joined yet (comma-separated)"))}</label>'
          f'<input id="newm" name="new_members"></p>'
        + f'<p><button>{esc(_("Show what it would do"))}</button></p>'), multipart=True)


@unlocked
async def show(request: web.Request, pp: str) -> web.StreamResponse:
    intro = _("Headers in English or French, any order: title, assignee, due, priority, needs, description, status, "
              "ref. Nothing is imported before you have seen the preview.")
    return page(request, _("Import a spreadsheet"), f"<p>{esc(intro)}</p>" + upload_form(request))


def preview_table(plan: importer.ImportPlan) -> str:
    aw = action_words()
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in (_("Line"), _("What happens"), _("Task"), _("Details")))
    rows = []
    for r in plan.rows:
        if r.action == "bad":
            detail = "; ".join(r.problems)
        elif r.action == "update":
            detail = ", ".join(f"{k}: {show_value(k, r.before.get(k))} → {show_value(k, v)}"
                               for k, v in r.values.items())
        else:
            shown = {k: show_value(k, v) for k, v in r.values.items() if k not in ("title", "status")}
            detail = ", ".join(f"{k}: {v}" for k, v in shown.items() if v not in (None, "", "nothing")) or r.note
        cls = ' class="alert"' if r.action == "bad" else ""
        rows.append(f'<tr{cls}><td data-label="{esc(_("Line"))}">{r.line}</td>'
                    f'<td data-label="{esc(_("What happens"))}">{esc(aw.get(r.action, r.action))}</td>'
                    f'<td data-label="{esc(_("Task"))}">{esc(r.title)}</td>'
                    f'<td data-label="{esc(_("Details"))}">{esc(detail)}</td></tr>')
    return f'<table class="tasks"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


@unlocked
async def preview(request: web.Request, pp: str) -> web.StreamResponse:
    async with upload.receive(request, SHEET_FORM, Path(request.app[SPOOL])) as up:
        dates = text_of(up, "dates", max_len=10) or "auto"
        if dates not in ("auto", "day", "month"):
            raise UsageError(_("Pick how dates are written from the list."))
        names = text_of(up, "new_members", max_len=2000) or ""
        ext = Path(up.name).suffix.lower()
        src = up.file()
        if ext not in (".xlsx", ".ods", ".csv", ".json", ".tsv", ".txt"):
            raise UsageError(_("hbw-sync reads .xlsx, .ods, .csv and .json files."))
        key = secrets.token_urlsafe(16)
        folder = Path(request.app[SPOOL]) / key
        folder.mkdir()
        path = folder / f"upload{ext}"
        src.rename(path)  # the same folder's disk: kept for "Import these tasks", under a random key
    pend = Pending(path, None if dates == "auto" else dates == "day",
                   frozenset(n.strip().lower() for n in names.split(",") if n.strip()))
    pending = request.app[PENDING]
    while len(pending) >= MAX_PENDING:
        _drop(pending, next(iter(pending)))
    pending[key] = pend
    plan = await call(request, pp, lambda rep: importer.import_file(rep, path, options(pend, request.app[LOCALE_DAY_FIRST]), dry_run=True))
    counts = ngettext("{n} row", "{n} rows", len(plan.rows)).format(n=len(plan.rows))
    body = (f"<p>{esc(_('{file}: {rows}: {new} new, {upd} to update, {same} already up to date, {bad} that cannot be imported. Dates read {order}.').format(file=up.name, rows=counts, new=plan.count('create'), upd=plan.count('update'), same=plan.count('unchanged'), bad=len(plan.bad), order=plan.date_order))}</p>"
            + preview_table(plan))
    go = f'<input type="hidden" name="key" value="{key}">'
    if plan.bad:
        go += (f'<p class="alert">{esc(_("Some rows cannot be imported (see why above). Fix them in the spreadsheet and show the preview again, or import the good rows only."))}</p>'
               f'<p><label><input type="checkbox" name="skip_bad" value="1" required> '
               f'{esc(_("Leave out the rows that cannot be imported"))}</label></p>')
    if plan.count("create") + plan.count("update"):
        body += form(request, "/import/run", go + f'<p><button>{esc(_("Import these tasks"))}</button></p>')
    else:
        body += f"<p>{esc(_('Nothing to import.'))}</p>"
    body += f'<p><a href="/import">{esc(_("Choose another file"))}</a></p>'
    return page(request, _("Import preview"), body)


def _drop(pending: dict[str, Pending], key: str) -> None:
    p = pending.pop(key, None)
    if p is not None:
        shutil.rmtree(p.path.parent, ignore_errors=True)


@unlocked
async def run(request: web.Request, pp: str) -> web.StreamResponse:
    f = await request.post()
    key = text_of(f, "key", max_len=64, required=True) or ""
    pend = request.app[PENDING].get(key)
    if pend is None:
        raise UsageError(_("That preview is gone (the app was restarted, or it was imported already)."),
                         hint=_("Choose the file again."))
    skip = f.get("skip_bad") == "1"

    def go(rep: Any) -> importer.ImportPlan:
        return importer.import_file(rep, pend.path, options(pend, request.app[LOCALE_DAY_FIRST]), skip_bad=skip)

    plan = await call(request, pp, go)
    _drop(request.app[PENDING], key)
    flash(request, _("Imported: {new} new tasks, {upd} updated; they go to your team at your next sync.").format(
        new=plan.count("create"), upd=plan.count("update")))
    raise web.HTTPSeeOther("/?who=all")


async def _cleanup(app: web.Application) -> None:
    shutil.rmtree(app[SPOOL], ignore_errors=True)


def register(app: web.Application) -> None:
    app[PENDING] = {}
    app.setdefault(LOCALE_DAY_FIRST, True)  # create_app sets it from the locale
    # In the store's folder when it exists (its disk, its owner's permissions; mkdtemp makes it 0700).
    home = upload.folder(app[HOME])  # type: ignore[arg-type]
    app[SPOOL] = tempfile.mkdtemp(prefix=".hbw-import-", dir=home if home.is_dir() else None)
    app.on_cleanup.append(_cleanup)
    app.router.add_get("/import", show)
    app.router.add_post(UPLOAD_PATH, preview)
    app.router.add_post("/import/run", run)
