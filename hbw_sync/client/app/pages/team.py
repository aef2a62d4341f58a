"""Team (supervisors): workload chart per member, devices waiting for approval, rebalancing suggestions.

The chart is inline SVG drawn here (no chart library: three bars per member need none), with the
same numbers in a table beside it for screen readers and for printing. Waiting devices come
from the store without a network call; "Check for new devices" syncs first (``team.pending``).
Approve is ``team.approve`` with the code the person reads from their device, as the CLI does.
Suggestions come from ``client/workload.py`` and each is applied by a click (one ``assign``).
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from ....errors import UsageError
from ....i18n import _
from ... import keyflow, team as teams, views, workload
from ...device import Device, now_ms
from ..layout import call, esc, field, flash, form, home_of, in_worker, page, select, text_of, unlocked

TASK_ID = re.compile(r"^[0-9a-f]{16}$")
MEMBER = re.compile(r"^[a-z0-9._-]{1,32}$")
#: Bar colours with at least 4.5:1 contrast on white, told apart by position and label too, not colour alone.
COLOURS = {"open": "#0b3d6e", "late": "#7a4b00", "urgent": "#a30000"}


def chart(loads: list[workload.MemberLoad]) -> str:
    """A horizontal bar chart: per member, open, late and urgent tasks, each bar labelled with its number."""
    names = {"open": _("open"), "late": _("late"), "urgent": _("urgent")}
    top = max([1] + [max(m.open, m.late, m.urgent) for m in loads])
    label_w, bar_w, row_h, bar_h = 110, 300, 64, 16
    height = 10 + row_h * len(loads)
    parts = [f'<svg class="chart" role="img" aria-labelledby="chart-title" viewBox="0 0 {label_w + bar_w + 100} {height}" '
             f'width="{label_w + bar_w + 100}" height="{height}"><title id="chart-title">{esc(_("Workload per member"))}</title>']
    for i, m in enumerate(loads):
        y = 8 + i * row_h
        parts.append(f'<text x="0" y="{y + 28}" font-size="15" fill="#1b1b1b">{esc(m.member)}</text>')
        for j, key in enumerate(("open", "late", "urgent")):
            n = getattr(m, key)
            w = max(2, round(bar_w * n / top)) if n else 0
            by = y + j * (bar_h + 2)
            parts.append(f'<rect x="{label_w}" y="{by}" width="{w}" height="{bar_h}" fill="{COLOURS[key]}">'
                         f'<title>{esc(m.member)}: {n} {esc(names[key])}</title></rect>'
                         f'<text x="{label_w + w + 4}" y="{by + 13}" font-size="13" fill="#1b1b1b">{n} {esc(names[key])}</text>')
    parts.append("</svg>")
    legend = '<p class="legend">' + "".join(
        f'<span><i style="background:{COLOURS[k]}"></i>{esc(names[k])}</span>' for k in ("open", "late", "urgent")) + "</p>"
    return "".join(parts) + legend


def load_table(loads: list[workload.MemberLoad]) -> str:
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in
                   (_("Member"), _("Open"), _("Late"), _("Urgent"), _("Capacity"), _("Away until")))
    rows = "".join(f'<tr><th scope="row">{esc(m.member)}</th><td>{m.open}</td><td>{m.late}</td><td>{m.urgent}</td>'
                   f'<td>{m.capacity}</td><td>{esc(m.away_until or "-")}</td></tr>' for m in loads)
    return f'<div class="scroll"><table><caption class="muted">{esc(_("The same numbers as a table"))}</caption><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'


def waiting_devices(home: Any) -> list[dict[str, Any]]:
    with Device.open(home) as dev:
        return [{"device": d.hex(), "member": i.get("member"), "label": i.get("label"), "role": i.get("role")}
                for d, _x, _e, i in keyflow.untrusted_pending(dev.store)]


@unlocked
async def show(request: web.Request, pp: str) -> web.StreamResponse:
    today = views.format_day(views.parse_date("today")) or ""
    now = now_ms()

    def load(rep: Any) -> tuple[Any, Any, Any, Any]:
        if rep.store.meta("role") != "supervisor":
            raise UsageError(_("The Team page is for your team's supervisor."))
        return (workload.workload(rep, today), *workload.suggestions(rep, now), workload.conflicts(rep))

    loads, moves, stuck, clashes = await call(request, pp, load)
    pending = await in_worker(lambda: waiting_devices(home_of(request)))
    body = f'<h2>{esc(_("Workload"))}</h2>' + chart(loads) + load_table(loads)

    body += f'<h2 id="devices">{esc(_("Devices waiting for your approval"))}</h2>'
    if pending:
        body += '<ul class="cards">' + "".join(
            f'<li>{esc(_("{member}’s device “{label}” (enrolled as {role})").format(member=p["member"], label=p["label"] or p["device"][:8], role=p["role"]))}</li>'
            for p in pending) + "</ul>"
        body += f"<p>{esc(_('Ask the person for the 20-digit code their device shows (on its Sync page), and type it here. Approve only a code you heard from them yourself.'))}</p>"
        body += form(request, "/team/approve", (
            field(_("Code from their device"), "code", required=True, extra=' inputmode="numeric" autocomplete="off"')
            + select(_("Approve as"), "role", [("member", _("member")), ("supervisor", _("supervisor"))], "member")
            + f'<p><button>{esc(_("Approve"))}</button></p>'))
    else:
        body += f"<p>{esc(_('No device waits for your approval.'))}</p>"
    body += form(request, "/team/check", f'<p><button class="secondary">{esc(_("Check for new devices"))}</button></p>')

    body += f'<h2 id="suggestions">{esc(_("Rebalancing suggestions"))}</h2>'
    if moves:
        items = []
        for m in moves:
            inner = (f'<input type="hidden" name="task" value="{esc(m.task)}">'
                     f'<input type="hidden" name="from" value="{esc(m.from_member or "-")}">'
                     f'<input type="hidden" name="to" value="{esc(m.to_member)}">'
                     f'<button aria-label="{esc(_("Apply: give {title} to {to}").format(title=m.title, to=m.to_member))}">'
                     f'{esc(_("Apply"))}</button>')
            items.append(f'<li><strong><a href="/tasks/{m.task}">{esc(m.title)}</a></strong>: '
                         f'{esc(_("from {src} to {dst}").format(src=m.from_member or _("nobody"), dst=m.to_member))}. '
                         f'<span class="muted">{esc(_("Why:"))} {esc(m.reason)}</span> '
                         + form(request, "/team/apply", inner, cls="inline") + "</li>")
        body += '<ul class="cards">' + "".join(items) + "</ul>"
    else:
        body += f"<p>{esc(_('Nothing to move: everyone can progress what they hold, and the load is even.'))}</p>"
    if stuck:
        body += f"<p>{esc(_('Nobody can take these now:'))}</p><ul>" + "".join(
            f"<li>{esc(t)}: {esc(why)}</li>" for t, why in stuck) + "</ul>"
    body += f'<h2 id="conflicts">{esc(_("Conflicts"))}</h2>'
    if clashes:
        body += '<ul class="cards">' + "".join(
            f'<li><a href="/tasks/{t.id}">{esc(t.title)}</a>: {esc(c["field"])}: {esc(c["detail"])}</li>'
            for t, c in clashes) + "</ul>"
    else:
        body += f"<p>{esc(_('No conflicts: nobody’s offline changes clashed.'))}</p>"
    return page(request, _("Team"), body)


@unlocked
async def approve(request: web.Request, pp: str) -> web.StreamResponse:
    f = await request.post()
    code = text_of(f, "code", max_len=64, required=True) or ""
    role = text_of(f, "role", max_len=16) or "member"
    if role not in ("member", "supervisor"):
        raise UsageError(_("Approve as member or supervisor."))
    home = home_of(request)
    r = await in_worker(lambda: teams.approve(home, pp, code, role))
    note = _("Approved {member}’s device as {role}: it receives the team key at its next sync.").format(
        member=r["member"], role=r["role"])
    if r["note"]:
        note += " " + _("The approval is kept here and goes with your next sync.")
    flash(request, note)
    raise web.HTTPSeeOther("/team#devices")


@unlocked
async def check(request: web.Request, pp: str) -> web.StreamResponse:
    home = home_of(request)
    r = await in_worker(lambda: teams.pending(home, pp, timeout=30))
    note = _("Could not reach the relay; the list is what this device knew.") if r["note"] else \
        _("The list is up to date.")
    flash(request, note)
    raise web.HTTPSeeOther("/team#devices")


@unlocked
async def apply(request: web.Request, pp: str) -> web.StreamResponse:
    f = await request.post()
    task, src, dst = (text_of(f, k, max_len=64, required=True) or "" for k in ("task", "from", "to"))
    if not TASK_ID.match(task or "") or not MEMBER.match(dst or "") or not (src == "-" or MEMBER.match(src or "")):
        raise UsageError(_("That suggestion is not one this page made."))
    done = await call(request, pp, lambda rep: workload.apply_suggestion(rep, task, None if src == "-" else src, dst))
    note = (_("Moved “{title}” to {to}; it goes with your next sync.").format(title=done.title, to=dst) if done
            else _("Not moved: someone changed who holds that task since the suggestion was made."))
    flash(request, note)
    raise web.HTTPSeeOther("/team#suggestions")


def register(app: web.Application) -> None:
    app.router.add_get("/team", show)
    app.router.add_post("/team/approve", approve)
    app.router.add_post("/team/check", check)
    app.router.add_post("/team/apply", apply)
