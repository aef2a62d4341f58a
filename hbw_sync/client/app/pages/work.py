"""My work and a task's page: list by due date and priority; add, edit, note, start, done, assign.

Each action is one library call (``Replica.add_task``, ``edit_task``, ``note``, ``set_status``,
``assign``), the same the CLI makes, in a worker thread; after a change the browser is sent back
to the page it came from (POST, redirect, GET), so a reload never repeats an action.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from ....errors import UsageError
from ....i18n import _
from ....ops import Status
from ... import views
from ...importer.plan import show_value
from ..layout import call, esc, field, form, human_time, page, select, text_of, unlocked

TASK_ID = re.compile(r"^[0-9a-f]{16}$")
PRIORITIES = ("low", "normal", "high", "urgent")


def priority_words() -> dict[str, str]:
    return {"low": _("low"), "normal": _("normal"), "high": _("high"), "urgent": _("urgent")}


def status_words() -> dict[str, str]:
    return {"open": _("open"), "in_progress": _("in progress"), "done": _("done"), "blocked": _("blocked")}


def need_words() -> dict[str, str]:
    return {"laptop": _("laptop"), "internet": _("internet"), "office": _("office")}


def task_id(request: web.Request) -> str:
    tid = request.match_info["tid"]
    if not TASK_ID.match(tid):
        raise UsageError(_("That is not a task's address."))
    return tid


def late(t: views.TaskView, today: str) -> bool:
    return bool(t.due and t.due < today and t.status != "done")


def task_rows(request: web.Request, tasks: list[views.TaskView], today: str, actions: bool = True) -> str:
    pw, sw = priority_words(), status_words()
    rows = []
    for t in tasks:
        tags = ""
        if t.priority == "urgent":
            tags += f' <span class="tag urgent">{esc(pw["urgent"])}</span>'
        if late(t, today):
            tags += f' <span class="tag late">{esc(_("late"))}</span>'
        buttons = ""
        if actions and t.status != "done":
            if t.status != "in_progress":
                buttons += form(request, f"/tasks/{t.id}/start",
                                f'<button class="secondary" aria-label="{esc(_("Start {title}").format(title=t.title))}">'
                                f'{esc(_("Start"))}</button>', cls="inline")
            buttons += form(request, f"/tasks/{t.id}/done",
                            f'<button class="secondary" aria-label="{esc(_("Mark {title} done").format(title=t.title))}">'
                            f'{esc(_("Done"))}</button>', cls="inline")
        rows.append(
            f'<tr><td data-label="{esc(_("Task"))}"><a href="/tasks/{t.id}">{esc(t.title)}</a>{tags}</td>'
            f'<td data-label="{esc(_("Due"))}">{esc(t.due or _("no due date"))}</td>'
            f'<td data-label="{esc(_("Priority"))}">{esc(pw.get(t.priority, t.priority))}</td>'
            f'<td data-label="{esc(_("Status"))}">{esc(sw.get(t.status, t.status))}</td>'
            f'<td data-label="{esc(_("Who"))}">{esc(t.assignee or _("nobody"))}</td>'
            f'<td>{buttons}</td></tr>')
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in
                   (_("Task"), _("Due"), _("Priority"), _("Status"), _("Who"), _("Actions")))
    return f'<table class="tasks"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def by_due_then_priority(tasks: list[views.TaskView]) -> list[views.TaskView]:
    """Open work first; then the nearest due date, then the highest priority (undated last)."""
    rank = {p: i for i, p in enumerate(reversed(PRIORITIES))}
    return sorted(tasks, key=lambda t: (t.status == "done", t.due is None, t.due or "", rank.get(t.priority, 9),
                                        t.title))


def member_options(members: list[str], current: str | None) -> list[tuple[str, str]]:
    names = sorted(set(members) | ({current} if current else set()))
    return [("-", _("nobody"))] + [(n, n) for n in names]


@unlocked
async def my_work(request: web.Request, pp: str) -> web.StreamResponse:
    everyone = request.query.get("who") == "all"

    def load(rep: Any) -> tuple[list[views.TaskView], str, list[str]]:
        return rep.tasks(mine=not everyone), rep.store.meta("member"), sorted(rep.member_names())

    tasks, me, members = await call(request, pp, load)
    today = views.format_day(views.parse_date("today")) or ""
    switch = (f'<p><a href="/">{esc(_("Only my tasks"))}</a></p>' if everyone
              else f'<p><a href="/?who=all">{esc(_("Everyone’s tasks"))}</a></p>')
    if tasks:
        listing = task_rows(request, by_due_then_priority(tasks), today)
    else:
        listing = f"<p>{esc(_('Nothing assigned to you.') if not everyone else _('No tasks yet.'))}</p>"
    pw = priority_words()
    add = form(request, "/tasks", (
        f'<h2 id="add">{esc(_("Add a task"))}</h2><div class="row-fields">'
        + field(_("New task"), "title", required=True, fid="title")
        + field(_("Due"), "due", kind="date", fid="due")
        + select(_("Priority"), "priority", [(p, pw[p]) for p in PRIORITIES], "normal")
        + select(_("For"), "assignee", member_options(members, me)[1:], me)
        + f'</div><p><button>{esc(_("Add"))}</button></p>'))
    return page(request, _("My work") if not everyone else _("Everyone’s tasks"), switch + listing + add)


def _due(text: str | None) -> int | None:
    return views.parse_date(text) if text else None


@unlocked
async def add_task(request: web.Request, pp: str) -> web.StreamResponse:
    f = await request.post()
    title = text_of(f, "title", max_len=500, required=True) or ""
    due, pri = text_of(f, "due", max_len=40), text_of(f, "priority", max_len=20)
    who = text_of(f, "assignee", max_len=64)

    def add(rep: Any) -> None:
        rep.add_task(title, assignee=(who.strip().lower() if who and who != "-" else rep.store.meta("member")),
                     due=_due(due), priority=views.parse_priority(pri) if pri else 1)

    await call(request, pp, add)
    raise web.HTTPSeeOther("/")


def _status_action(status: Status) -> Any:
    @unlocked
    async def act(request: web.Request, pp: str) -> web.StreamResponse:
        tid = task_id(request)
        await call(request, pp, lambda rep: rep.set_status(tid, status))
        raise web.HTTPSeeOther(_return_to(request, tid))

    return act


def _return_to(request: web.Request, tid: str) -> str:
    from urllib.parse import urlsplit

    path = urlsplit(request.headers.get("Referer") or "").path
    return path if path in ("/", f"/tasks/{tid}") else f"/tasks/{tid}"


def change_words(changes: dict[str, Any], first: bool) -> str:
    """One change to a task in words: "created it: ...", "status: in progress", "added a note"."""
    labels = {"title": _("title"), "description": _("description"), "assignee": _("for"), "status": _("status"),
              "due": _("due"), "priority": _("priority"), "needs": _("needs"), "pinned": _("pinned"),
              "archived": _("archived"), "deleted": _("deleted"), "ref": _("spreadsheet ref")}
    sw, pw = status_words(), priority_words()
    parts = []
    for name, v in changes.items():
        if name == "note":
            parts.append(_("added a note"))
            continue
        shown = show_value(name, v)
        if name == "status":
            shown = sw.get(shown, shown)
        elif name == "priority":
            shown = pw.get(shown, shown)
        elif name == "description":
            shown = _("changed")
        elif isinstance(v, bool):
            shown = _("yes") if v else _("no")
        elif v is None:
            shown = _("none")
        parts.append(f"{labels.get(name, name)}: {shown}")
    text = "; ".join(parts)
    return _("created it ({what})").format(what=text) if first else text


@unlocked
async def show_task(request: web.Request, pp: str) -> web.StreamResponse:
    tid = task_id(request)

    def load(rep: Any) -> tuple[views.TaskView, list[views.DocView], list[str], list[dict[str, Any]]]:
        t = rep.task(tid)
        docs = [rep.doc(d) for d in t.docs]
        return t, docs, sorted(rep.member_names()), rep.task_history(tid)

    t, docs, members, history = await call(request, pp, load)
    pw, sw, nw = priority_words(), status_words(), need_words()
    facts = [(_("Status"), sw.get(t.status, t.status)), (_("Who"), t.assignee or _("nobody")),
             (_("Due"), t.due or _("no due date")), (_("Priority"), pw.get(t.priority, t.priority)),
             (_("Needs"), ", ".join(nw.get(n, n) for n in t.needs) or _("nothing special")),
             (_("Last changed"), human_time(t.updated))]
    if t.pinned:
        facts.append((_("Pinned"), _("yes: rebalancing will not move it")))
    body = '<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts) + "</dl>"
    if t.description:
        body += f'<h2>{esc(_("Description"))}</h2><p style="white-space: pre-wrap">{esc(t.description)}</p>'
    if t.status != "done" and not t.deleted:
        if t.status != "in_progress":
            body += form(request, f"/tasks/{t.id}/start", f'<button>{esc(_("Start"))}</button>', cls="inline")
        body += form(request, f"/tasks/{t.id}/done", f'<button>{esc(_("Mark done"))}</button>', cls="inline")
    # History: notes in order (never overwritten), then conflicts settled on this task, in words.
    body += f'<h2>{esc(_("Notes"))}</h2>'
    items = [f"<li><strong>{esc(n.by)}</strong>, {esc(human_time(n.at))}: {esc(n.text)}</li>" for n in t.notes]
    if t.deleted_by:
        items.append(f"<li>{esc(_('Deleted by {who}').format(who=t.deleted_by))}</li>")
    body += f'<ul class="cards">{"".join(items)}</ul>' if items else f"<p>{esc(_('No notes yet.'))}</p>"
    body += form(request, f"/tasks/{t.id}/note", (
        f'<p class="field"><label for="note">{esc(_("Add a note"))}</label>'
        f'<textarea id="note" name="text" required></textarea></p><p><button>{esc(_("Add note"))}</button></p>'))
    body += f'<h2>{esc(_("History"))}</h2><ol class="history">' + "".join(
        f"<li>{esc(human_time(h['at']))}, <strong>{esc(h['by'])}</strong>: {esc(change_words(h['changes'], i == 0))}</li>"
        for i, h in enumerate(history)) + "</ol>"
    body += f'<h2>{esc(_("Conflicts"))}</h2>'
    if t.conflicts:
        body += '<ul class="cards">' + "".join(
            f"<li>{esc(_('{field}: {detail}').format(field=c['field'], detail=c['detail']))}</li>"
            for c in t.conflicts) + "</ul>"
    else:
        body += f"<p>{esc(_('None: nobody changed this task in a way that clashed.'))}</p>"
    body += f'<h2>{esc(_("Documents"))}</h2>'
    if docs:
        body += '<ul>' + "".join(
            f'<li><a href="/docs/{d.id}">{esc(d.name)}</a> '
            f'<span class="muted">({esc(_("version {n}").format(n=d.versions))})</span></li>' for d in docs) + "</ul>"
    else:
        body += f"<p>{esc(_('No documents attached.'))}</p>"
    body += form(request, "/docs", (
        f'<input type="hidden" name="task" value="{esc(t.id)}">'
        f'<p class="field"><label for="doc-file">{esc(_("Attach a document"))}</label>'
        f'<input id="doc-file" name="file" type="file" required></p><p><button>{esc(_("Attach"))}</button></p>'),
        multipart=True)
    body += f'<h2>{esc(_("Give it to someone"))}</h2>' + form(request, f"/tasks/{t.id}/assign", (
        select(_("Assign to"), "member", member_options(members, t.assignee), t.assignee or "-")
        + f'<p><button>{esc(_("Assign"))}</button></p>'))
    body += f'<h2>{esc(_("Change it"))}</h2>' + form(request, f"/tasks/{t.id}/edit", (
        field(_("Title"), "title", t.title, required=True)
        + field(_("Due"), "due", t.due or "", kind="date")
        + select(_("Priority"), "priority", [(p, pw[p]) for p in PRIORITIES], t.priority)
        + f'<p class="field"><label for="f-description">{esc(_("Description"))}</label>'
          f'<textarea id="f-description" name="description">{esc(t.description)}</textarea></p>'
        + f'<p><button>{esc(_("Save changes"))}</button></p>'))
    return page(request, _("Task: {title}").format(title=t.title), body)


@unlocked
async def edit_task(request: web.Request, pp: str) -> web.StreamResponse:
    tid = task_id(request)
    f = await request.post()
    title = text_of(f, "title", max_len=500, required=True)
    due, pri = text_of(f, "due", max_len=40), text_of(f, "priority", max_len=20)
    desc = text_of(f, "description") or ""

    def edit(rep: Any) -> None:
        t = rep.task(tid)
        values: dict[str, Any] = {}
        if title != t.title:
            values["title"] = title
        if desc != t.description:
            values["description"] = desc
        if (due or None) != t.due:
            values["due"] = _due(due)
        if pri and pri != t.priority:
            values["priority"] = views.parse_priority(pri)
        if values:
            rep.edit_task(tid, **values)

    await call(request, pp, edit)
    raise web.HTTPSeeOther(f"/tasks/{tid}")


@unlocked
async def note_task(request: web.Request, pp: str) -> web.StreamResponse:
    tid = task_id(request)
    text = text_of(await request.post(), "text", required=True) or ""
    await call(request, pp, lambda rep: rep.note(tid, text))
    raise web.HTTPSeeOther(f"/tasks/{tid}")


@unlocked
async def assign_task(request: web.Request, pp: str) -> web.StreamResponse:
    tid = task_id(request)
    who = text_of(await request.post(), "member", max_len=64, required=True) or "-"
    await call(request, pp, lambda rep: rep.assign(tid, None if who == "-" else who.strip().lower()))
    raise web.HTTPSeeOther(f"/tasks/{tid}")


def register(app: web.Application) -> None:
    app.router.add_get("/", my_work)
    app.router.add_post("/tasks", add_task)
    app.router.add_get("/tasks/{tid}", show_task)
    app.router.add_post("/tasks/{tid}/edit", edit_task)
    app.router.add_post("/tasks/{tid}/note", note_task)
    app.router.add_post("/tasks/{tid}/assign", assign_task)
    app.router.add_post("/tasks/{tid}/start", _status_action(Status.IN_PROGRESS))
    app.router.add_post("/tasks/{tid}/done", _status_action(Status.DONE))
