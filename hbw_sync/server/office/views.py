"""The office page's routes: each reads a form, makes one ``admin`` call in a worker thread, renders HTML.

Why a worker thread: admin calls are short SQLite transactions, but even a short
fsync must not stall the event loop that also serves devices. Every outcome a
person should read (done, refused and why, nothing changed) is a sentence on
the page; an ``HbwError`` is shown with its hint and changes nothing.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any, Callable

from aiohttp import web

from ... import clock, timefmt
from ...messages import words
from ...errors import HbwError
from ...i18n import _, ngettext
from .. import admin
from ..cli_equipment import state_words
from . import guard
from .html import e, field, hidden, note, page, table

DATA = web.AppKey("office_data", Path)
RELAY = web.AppKey("office_relay", web.Application)

routes = web.RouteTableDef()


async def call(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    return await asyncio.to_thread(functools.partial(fn, *args, **kw))


now_ms = clock.now_ms  # the one wall clock (hbw_sync/clock.py); callers import it from here too


DAYS_RANGE = ' min="1" max="365"'


def para(text: str) -> str:
    return f"<p>{e(text)}</p>"


def _csrf(request: web.Request) -> str | None:
    s = request.get(guard.SESSION)
    return s.csrf if s else None


def _team(request: web.Request) -> str:
    relay_app = request.app.get(RELAY)
    if relay_app is not None:
        from ..app import IDENTITY
        return relay_app[IDENTITY].team_name or ""
    return ""


def render(request: web.Request, title: str, body: str, status: int = 200) -> web.Response:
    return web.Response(text=page(title, body, _team(request), _csrf(request)), status=status,
                        content_type="text/html", charset="utf-8")


def failure(err: HbwError) -> str:
    message, hint = words(err)  # in the page's language, from the code when the raise site gave English
    text = message + (f" ({hint})" if hint else "")
    return note(_("Nothing changed: {reason}").format(reason=text), "error")


def ago(ms: int | None) -> str:
    if ms is None:
        return e(_("never"))
    return f'<span title="{e(timefmt.human(ms))}">{e(timefmt.when(ms, now_ms()))}</span>'


async def _form(request: web.Request) -> dict[str, str]:
    form = await request.post()
    return {k: v.strip() for k, v in form.items() if isinstance(v, str)}


# -- login ---------------------------------------------------------------------------------------

def _login_page(request: web.Request, message: str = "", status: int = 200) -> web.Response:
    intro = para(_("Enter the admin token. It was printed when the office page first started, and is kept in the "
                   "relay data directory, in the file admin.token."))
    token = field(_("Admin token"), "token", "password", required=True, extra=' autocomplete="off" autofocus')
    body = f'{message}{intro}<form method="post" action="/login">{token}<button>{e(_("Log in"))}</button></form>'
    return render(request, _("Log in"), body, status)


@routes.get("/login")
async def login_form(request: web.Request) -> web.Response:
    return _login_page(request)


@routes.post("/login")
async def login(request: web.Request) -> web.StreamResponse:
    g = request.app[guard.GUARD]
    if g.locked_out():
        return _login_page(request, note(_("Too many wrong tokens: wait a minute, then try again."), "error"), 429)
    form = await _form(request)
    sid = g.login(form.get("token", ""))
    if sid is None:
        return _login_page(request, note(_("That is not the admin token."), "error"), 403)
    resp = web.HTTPSeeOther("/")
    resp.set_cookie(guard.COOKIE, sid, httponly=True, samesite="Strict", path="/")
    raise resp


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    request.app[guard.GUARD].logout(request)
    resp = web.HTTPSeeOther("/login")
    resp.del_cookie(guard.COOKIE, path="/")
    raise resp


# -- overview and health -------------------------------------------------------------------------

def _health(request: web.Request) -> tuple[dict[str, Any] | None, str | None]:
    relay_app = request.app.get(RELAY)
    if relay_app is None:
        return None, None
    from ..app import GUARD, METRICS, WRITER, health_report

    body, _fault = health_report(relay_app)
    m = relay_app[METRICS]
    metrics = {"requests": sum(m.requests.values()), "bytes_in": m.bytes_in, "bytes_out": m.bytes_out,
               "batches_in": m.batches_in, "batches_out": m.batches_out, "devices_seen": len(m.devices_seen),
               "commits": relay_app[WRITER].commits, "connections": relay_app[GUARD].stats().get("open", 0)}
    body["metrics"] = metrics
    return body, None


def _health_html(h: dict[str, Any] | None) -> str:
    if h is None:
        return note(_("The relay does not run in this process, so its health is not known here."))
    if h["ok"]:
        state = f'<p class="ok">{e(_("Healthy: the relay can take writes."))}</p>'
    else:
        state = (f'<p class="bad">{e(_("Not healthy: {reason}").format(reason=h.get("reason")))}</p>'
                 f'<p>{e(_("What to do: {hint}").format(hint=h.get("hint") or ""))}</p>')
    m = h["metrics"]
    rows = [
        (_("Team"), e(h.get("team"))),
        (_("Version"), e(h.get("version"))),
        (_("Free space on the data disk"), e(timefmt.human_bytes(h["free_bytes"])) if "free_bytes" in h else "-"),
        (_("Requests since start"), e(m["requests"])),
        (_("Received / sent"), e(f"{timefmt.human_bytes(m['bytes_in'])} / {timefmt.human_bytes(m['bytes_out'])}")),
        (_("Batches in / out"), e(f"{m['batches_in']} / {m['batches_out']}")),
        (_("Devices that synced since start"), e(m["devices_seen"])),
        (_("Database commits"), e(m["commits"])),
        (_("Open connections"), e(m["connections"])),
        (_("Relay key"), f'<span class="code">{e(h.get("relay_key"))}</span>'),
    ]
    return state + table((_("What"), _("Now")), rows, "")


@routes.get("/")
async def overview(request: web.Request) -> web.Response:
    data = request.app[DATA]
    h, _x = _health(request)
    devs = await call(admin.devices, data)
    items = await call(admin.equipment_list, data)
    backups = await call(admin.backups, data)
    active = sum(1 for d in devs if not d["revoked_ms"])
    lent = sum(1 for i in items if i["state"] == "lent")
    lost = sum(1 for i in items if i["state"] == "lost")
    rows = [
        (f'<a href="/devices">{e(_("Devices"))}</a>',
         e(_("{active} active, {revoked} revoked").format(active=active, revoked=len(devs) - active))),
        (f'<a href="/equipment">{e(_("Equipment"))}</a>',
         e(_("{n} recorded: {lent} lent, {lost} lost").format(n=len(items), lent=lent, lost=lost))),
        (f'<a href="/backups">{e(_("Last backup"))}</a>',
         ago(backups[0]["made_ms"]) if backups else f'<span class="bad">{e(_("none made here yet"))}</span>'),
    ]
    body = _health_html(h) + table((_("What"), _("State")), rows, "")
    return render(request, _("Overview"), body)


@routes.get("/health")
async def health_page(request: web.Request) -> web.Response:
    h, _x = _health(request)
    body = _health_html(h) + f'<p>{e(_("Monitoring reads the same at /healthz and /metrics on the relay port."))}</p>'
    return render(request, _("Health and metrics"), body)


# -- devices -------------------------------------------------------------------------------------

async def _devices_html(request: web.Request) -> str:
    data = request.app[DATA]
    devs = await call(admin.devices, data)
    assets = {i["device"]: i["asset"] for i in await call(admin.equipment_list, data) if i["device"]}
    rows = []
    for d in devs:
        if d["revoked_ms"]:
            state = f'<span class="bad">{e(_("revoked {when}").format(when=timefmt.human(d["revoked_ms"])))}</span>'
            action = ""
        else:
            state = e(_("active"))
            action = (f'<a href="/devices/revoke?device={e(d["device"])}">'
                      f'{e(_("Revoke device {id}").format(id=d["device"][:8]))}</a>')
        rows.append((f'<span class="code">{e(d["device"][:8])}</span>', e(d["member"]), e(d["label"] or ""),
                     e(assets.get(d["device"], "")), ago(d["enrolled_ms"]), ago(d["last_seen_ms"]), state, action))
    return table((_("Device"), _("Member"), _("Label"), _("Equipment"), _("Enrolled"), _("Last seen"), _("State"),
                  _("Action")), rows, _("No devices enrolled yet: make an invite."))


@routes.get("/devices")
async def devices(request: web.Request) -> web.Response:
    return render(request, _("Devices"), await _devices_html(request))


@routes.get("/devices/revoke")
async def revoke_confirm(request: web.Request) -> web.Response:
    try:
        d = await call(admin.find_device, request.app[DATA], request.query.get("device", ""))
    except HbwError as err:
        return render(request, _("Revoke a device"), failure(err), 400)
    if d["revoked_ms"]:
        return render(request, _("Revoke a device"), note(_("Device {id} of {member} is already revoked.").format(
            id=d["device"][:8], member=d["member"])))
    what = _("device {id} of {member}").format(id=d["device"][:8], member=d["member"]) + (
        f" ({d['label']})" if d["label"] else "")
    body = (para(_("Revoke {what}, last seen {when}?").format(what=what, when=timefmt.human(d["last_seen_ms"])))
            + para(_("It will no longer sync, and this cannot be undone: a found laptop joins again with a new "
                     "invite. The next supervisor device to sync rotates the team key."))
            + f'<form method="post" action="/devices/revoke">{hidden(_csrf(request), device=d["device"], confirm="yes")}'
            f'<button class="danger">{e(_("Yes, revoke it"))}</button></form> '
            f'<p><a href="/devices">{e(_("No, go back"))}</a></p>')
    return render(request, _("Revoke a device"), body)


@routes.post("/devices/revoke")
async def revoke(request: web.Request) -> web.Response:
    form = await _form(request)
    if form.get("confirm") != "yes":
        return render(request, _("Revoke a device"), note(
            _("Revoking needs the confirmation step; nothing changed."), "error"), 400)
    try:
        r = await call(admin.revoke, request.app[DATA], form.get("device", ""))
    except HbwError as err:
        return render(request, _("Revoke a device"), failure(err), 400)
    msg = note(_("Device {id} of {member} is revoked: it can no longer sync. The team key will rotate at the next "
                 "supervisor sync.").format(id=r["device"][:8], member=r["member"]))
    return render(request, _("Devices"), msg + await _devices_html(request))


# -- invites -------------------------------------------------------------------------------------

def _invite_form(request: web.Request) -> str:
    return (f'<form method="post" action="/invites">{hidden(_csrf(request))}'
            f'{field(_("Member (e.g. amina)"), "member", required=True)}'
            f'<label>{e(_("Role"))} <select name="role"><option value="member">{e(_("member"))}</option>'
            f'<option value="supervisor">{e(_("supervisor"))}</option></select></label>'
            f'{field(_("Valid for (days)"), "days", "number", "14", extra=DAYS_RANGE)}'
            f'{field(_("Equipment asset tag (optional)"), "asset")}'
            f'<label><input type="checkbox" name="words" value="yes" checked> '
            f'{e(_("also a word code to read out by phone"))}</label> '
            f'<button>{e(_("Make the invite"))}</button></form>')


@routes.get("/invites")
async def invites(request: web.Request) -> web.Response:
    body = para(_("An invite lets one device join the team, once. Hand it over in person or read the word code "
                  "out by phone; never send it by email.")) + _invite_form(request)
    return render(request, _("Invites"), body)


def qr_svg(text: str) -> str:
    import segno  # only here: the rest of the relay does not need it

    return segno.make(text.upper(), error="m").svg_inline(scale=4, border=4)


@routes.post("/invites")
async def invite(request: web.Request) -> web.Response:
    form = await _form(request)
    try:
        days = int(form.get("days") or 14)
    except ValueError:
        days = 0
    member, role, asset = form.get("member", ""), form.get("role", "member"), form.get("asset") or None
    try:
        if form.get("words") == "yes":
            inv, code = await call(admin.invite_with_code, request.app[DATA], member, role, None, days, asset=asset)
        else:
            inv, code = await call(admin.invite, request.app[DATA], member, role, None, days, asset=asset), None
    except HbwError as err:
        return render(request, _("Invites"), failure(err) + _invite_form(request), 400)
    text = inv.encode()
    body = note(_("Invite for {member} ({role}), valid {days} days, usable once. This page shows it only now.")
                .format(member=inv.member, role=inv.role, days=days))
    body += (f'<p>{e(_("Scan this QR code on the device, or type the invite:"))}</p>'
             f'<div aria-label="{e(_("QR code of the invite"))}">{qr_svg(text)}</div>'
             f'<p class="code">{e(text)}</p>'
             f'<p>{e(_("On the device: hbw-sync join followed by the invite."))}</p>')
    if code:
        body += (f'<p>{e(_("By phone (valid 24 hours, ends when used), read out:"))}</p>'
                 f'<p class="code" style="font-size:1.3rem">{e(code.replace("-", " "))}</p>'
                 f'<p>{e(_("On the device: hbw-sync join --relay {url} {code}").format(url=inv.url, code=code))}</p>')
    if asset:
        body += note(_("Equipment {tag} is lent to {member}; the device that joins with this invite is recorded as "
                       "its device.").format(tag=asset, member=inv.member))
    return render(request, _("Invites"), body)


# -- equipment -----------------------------------------------------------------------------------

async def _equipment_html(request: web.Request) -> str:
    items = await call(admin.equipment_list, request.app[DATA])
    csrf = _csrf(request)
    rows = []
    for i in items:
        actions = ""
        if i["state"] == "lent":
            actions += (f'<form class="inline" method="post" action="/equipment/return">'
                        f'{hidden(csrf, asset=i["asset"])}<button>{e(_("Returned"))}</button></form> ')
        elif i["state"] == "in_stock":
            actions += (f'<form class="inline" method="post" action="/equipment/lend">{hidden(csrf, asset=i["asset"])}'
                        f'<label>{e(_("Lend {tag} to").format(tag=i["asset"]))} '
                        f'<input name="member" required size="10"></label><button>{e(_("Lend"))}</button></form> ')
        if i["state"] != "lost":
            actions += (f'<a href="/equipment/lost?asset={e(i["asset"])}">'
                        f'{e(_("Report {tag} lost").format(tag=i["asset"]))}</a>')
        rows.append((e(i["asset"]), e(i["model"] or ""), e(i["serial"] or ""),
                     (f'<span class="bad">{e(state_words(i))}</span>' if i["state"] == "lost" else e(state_words(i))),
                     f'<span class="code">{e((i["device"] or "")[:8])}</span>', e(i["note"] or ""), actions))
    add = (f'<h2>{e(_("Record equipment"))}</h2><form method="post" action="/equipment/add">{hidden(csrf)}'
           f'{field(_("Asset tag"), "asset", required=True)}{field(_("Serial number"), "serial")}'
           f'{field(_("Model"), "model")}{field(_("Note"), "note")}<button>{e(_("Record"))}</button></form>'
           f'<p>{e(_("To tie a laptop to its device, make its invite with the asset tag (Invites page)."))}</p>')
    return table((_("Asset tag"), _("Model"), _("Serial"), _("State"), _("Device"), _("Note"), _("Action")), rows,
                 _("The register is empty.")) + add


@routes.get("/equipment")
async def equipment_page(request: web.Request) -> web.Response:
    return render(request, _("Equipment register"), await _equipment_html(request))


async def _equipment_action(request: web.Request, fn: Callable[..., dict[str, Any]], args: tuple[Any, ...],
                            said: Callable[[dict[str, Any]], str]) -> web.Response:
    try:
        r = await call(fn, request.app[DATA], *args)
    except HbwError as err:
        return render(request, _("Equipment register"), failure(err) + await _equipment_html(request), 400)
    return render(request, _("Equipment register"), note(said(r)) + await _equipment_html(request))


@routes.post("/equipment/add")
async def equipment_add(request: web.Request) -> web.Response:
    f = await _form(request)
    return await _equipment_action(request, admin.equipment_add,
                                   (f.get("asset", ""), f.get("serial"), f.get("model"), f.get("note")),
                                   lambda r: _("Recorded {tag} in the register, in stock.").format(tag=r["asset"]))


@routes.post("/equipment/lend")
async def equipment_lend(request: web.Request) -> web.Response:
    f = await _form(request)
    return await _equipment_action(request, admin.equipment_lend, (f.get("asset", ""), f.get("member", "")),
                                   lambda r: _("{tag} is lent to {member} from now.").format(tag=r["asset"],
                                                                                             member=r["holder"]))


@routes.post("/equipment/return")
async def equipment_return(request: web.Request) -> web.Response:
    f = await _form(request)

    def said(r: dict[str, Any]) -> str:
        text = _("{tag} is back from {member}, in stock.").format(tag=r["asset"], member=r["holder"])
        if r["device_active"]:
            text += " " + _("Its device {device} is still enrolled: revoke it on the Devices page if the laptop "
                            "will be wiped or lent to someone else.").format(device=r["device"][:8])
        return text
    return await _equipment_action(request, admin.equipment_return, (f.get("asset", ""),), said)


@routes.get("/equipment/lost")
async def lost_confirm(request: web.Request) -> web.Response:
    tag = request.query.get("asset", "")
    body = (para(_("Mark {tag} lost? The device enrolled on it is revoked at once: it can no longer sync, and "
                   "this cannot be undone. The next supervisor device to sync rotates the team key.").format(tag=tag))
            + f'<form method="post" action="/equipment/lost">{hidden(_csrf(request), asset=tag, confirm="yes")}'
            f'<button class="danger">{e(_("Yes, {tag} is lost").format(tag=tag))}</button></form>'
            f'<p><a href="/equipment">{e(_("No, go back"))}</a></p>')
    return render(request, _("Report equipment lost"), body)


@routes.post("/equipment/lost")
async def equipment_lost(request: web.Request) -> web.Response:
    f = await _form(request)
    if f.get("confirm") != "yes":
        return render(request, _("Report equipment lost"), note(
            _("Reporting a loss needs the confirmation step; nothing changed."), "error"), 400)

    def said(r: dict[str, Any]) -> str:
        text = _("{tag} is recorded as lost.").format(tag=r["asset"])
        if r["revoked"]:
            return text + " " + _("Its device {device} ({member}) is revoked: it can no longer sync.").format(
                device=r["revoked"][:8], member=r["holder"])
        return text + " " + _("No active device was recorded on it, so none was revoked.")
    return await _equipment_action(request, admin.equipment_lost, (f.get("asset", ""),), said)


# -- workload, audit, backups --------------------------------------------------------------------

@routes.get("/workload")
async def workload(request: web.Request) -> web.Response:
    rows = await call(admin.workload, request.app[DATA])
    yn = {True: _("yes"), False: _("no"), None: _("not said")}
    cells = [(e(r["member"]), e(f"{r['open']} / {r['capacity']}"), e(r["overdue"]), e(r["urgent"]),
              e(yn[r["laptop"]]), e(yn[r["internet"]]), e(", ".join(r["office_days"]) or "-"),
              e(r["away_until"] or "-"), ago(r["last_seen_ms"])) for r in rows]
    body = (f'<p>{e(_("From routing data only: the relay never reads task titles or documents."))}</p>' +
            table((_("Member"), _("Open / capacity"), _("Late"), _("Urgent"), _("Laptop"), _("Internet"),
                   _("Office days"), _("Away until"), _("Last seen")), cells, _("No members yet.")))
    return render(request, _("Workload per member"), body)


@routes.get("/audit")
async def audit(request: web.Request) -> web.Response:
    rows = await call(admin.audit_log, request.app[DATA], 200)
    cells = [(f'<span title="{e(r["when"])}">{e(r["time"])}</span>', e(r["who"]), e(r["what"])) for r in rows]
    n = len(rows)
    body = (para(ngettext("The latest {n} entry, newest first.", "The latest {n} entries, newest first.", n).format(n=n))
            + table((_("When"), _("Who"), _("What")), cells, _("Nothing recorded yet.")))
    return render(request, _("Audit"), body)


async def _backups_html(request: web.Request) -> str:
    rows = await call(admin.backups, request.app[DATA])
    cells = [(e(r["name"]), ago(r["made_ms"]), e(timefmt.human_bytes(r["bytes"]))) for r in rows]
    return (table((_("File"), _("Made"), _("Size")), cells, _("No backup in the data directory's backups folder yet."))
            + f'<form method="post" action="/backups">{hidden(_csrf(request))}'
              f'<button>{e(_("Make a backup now"))}</button></form>'
            + f'<p>{e(_("Copy backups and the file relay.key to another disk; restore with hbw-relay restore."))}</p>')


@routes.get("/backups")
async def backups(request: web.Request) -> web.Response:
    return render(request, _("Backups"), await _backups_html(request))


@routes.post("/backups")
async def backup_now(request: web.Request) -> web.Response:
    try:
        r = await call(admin.backup_now, request.app[DATA])
    except HbwError as err:
        return render(request, _("Backups"), failure(err) + await _backups_html(request), 400)
    msg = note(_("Backed up {size} to {file}.").format(size=timefmt.human_bytes(r["bytes"]), file=r["backup"]))
    return render(request, _("Backups"), msg + await _backups_html(request))
