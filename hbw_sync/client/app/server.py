"""The app's aiohttp server: the gate as middleware, and the first pages (unlock, My work).

Every library call runs in a worker thread (``asyncio.to_thread``): SQLite and scrypt must not
stall the page that shows sync progress. Each call opens the store, does one thing and closes it.
"""

from __future__ import annotations

import asyncio
import html
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from ...errors import HbwError
from ...i18n import _
from ..device import Device
from .security import Gate

COOKIE = "hbw_app"
GATE = web.AppKey("gate", Gate)
HOME = web.AppKey("home", object)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def esc(v: Any) -> str:
    return html.escape("" if v is None else str(v))


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    gate = request.app[GATE]
    if not gate.host_ok(request.headers.get("Host")):
        return web.Response(status=421, text=_("This address is not the app's."))
    if request.method == "POST" and not gate.origin_ok(request.headers.get("Origin")):
        return web.Response(status=403, text=_("Refused: this request came from another site."))
    if request.path == "/start":
        return await handler(request)
    sid = request.cookies.get(COOKIE)
    if gate.csrf_for(sid) is None:
        return web.Response(status=403, text=_("Open the app with the address hbw-sync app printed."))
    if request.method == "POST":
        form = await request.post()
        if not gate.csrf_ok(sid, form.get("csrf") if isinstance(form.get("csrf"), str) else None):
            return web.Response(status=403, text=_("Refused: the form is stale; reload the page."))
    return await handler(request)


def page(request: web.Request, title: str, body: str) -> web.Response:
    return web.Response(content_type="text/html", text=(
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title></head>'
        f'<body><main><h1>{esc(title)}</h1>{body}</main></body></html>'))


def csrf_field(request: web.Request) -> str:
    token = request.app[GATE].csrf_for(request.cookies.get(COOKIE))
    return f'<input type="hidden" name="csrf" value="{esc(token)}">'


async def start(request: web.Request) -> web.StreamResponse:
    sid = request.app[GATE].open_session(request.query.get("token"))
    if sid is None:
        return web.Response(status=403, text=_("Open the app with the address hbw-sync app printed."))
    resp = web.HTTPSeeOther("/")
    resp.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", path="/")
    raise resp


def unlock_form(request: web.Request, problem: str = "") -> web.Response:
    body = (f'<p role="alert">{esc(problem)}</p>' if problem else "") + (
        f'<form method="post" action="/unlock">{csrf_field(request)}'
        f'<label for="pp">{esc(_("Passphrase"))}</label> '
        f'<input id="pp" name="passphrase" type="password" autocomplete="current-password" required autofocus> '
        f'<button>{esc(_("Unlock"))}</button></form>')
    return page(request, _("hbw-sync is locked"), body)


async def unlock(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    pp = form.get("passphrase")
    home = request.app[HOME]

    def check() -> bool:
        with Device.open(home) as dev:  # type: ignore[arg-type]
            return dev.opens_with(str(pp))

    if not isinstance(pp, str) or not await asyncio.to_thread(check):
        return unlock_form(request, _("That passphrase does not open this store."))
    request.app[GATE].unlock(pp, time.monotonic())
    raise web.HTTPSeeOther("/")


async def my_work(request: web.Request) -> web.StreamResponse:
    pp = request.app[GATE].touch(time.monotonic())
    if pp is None:
        return unlock_form(request)
    home = request.app[HOME]

    def load() -> list[Any]:
        with Device.open(home) as dev:  # type: ignore[arg-type]
            return dev.unlock(pp).tasks(mine=True)

    try:
        tasks = await asyncio.to_thread(load)
    except HbwError as e:
        return page(request, _("My work"), f'<p role="alert">{esc(e)}</p>')
    rows = "".join(f"<li>{esc(t.title)} ({esc(t.due or _('no due date'))}, {esc(t.priority)})</li>" for t in tasks)
    listing = f"<ul>{rows}</ul>" if rows else f"<p>{esc(_('Nothing assigned to you.'))}</p>"
    add = (f'<form method="post" action="/tasks">{csrf_field(request)}'
           f'<label for="title">{esc(_("New task"))}</label> <input id="title" name="title" required> '
           f'<label for="due">{esc(_("Due"))}</label> <input id="due" name="due" type="date"> '
           f'<button>{esc(_("Add"))}</button></form>')
    return page(request, _("My work"), listing + add + f'<p><a href="/docs">{esc(_("Documents"))}</a></p>')


async def add_task(request: web.Request) -> web.StreamResponse:
    pp = request.app[GATE].touch(time.monotonic())
    if pp is None:
        return unlock_form(request)
    form = await request.post()
    title, due = form.get("title"), form.get("due")
    home = request.app[HOME]

    def add() -> None:
        from .. import views

        with Device.open(home) as dev:  # type: ignore[arg-type]
            rep = dev.unlock(pp)
            rep.add_task(str(title or ""), assignee=rep.store.meta("member"),
                         due=views.parse_date(due) if isinstance(due, str) else None)

    try:
        await asyncio.to_thread(add)
    except HbwError as e:
        return page(request, _("My work"), f'<p role="alert">{esc(e)}</p><p><a href="/">{esc(_("Back"))}</a></p>')
    raise web.HTTPSeeOther("/")


def create_app(home: Path | None, gate: Gate) -> web.Application:
    app = web.Application(middlewares=[guard])
    app[GATE] = gate
    app[HOME] = home
    app.router.add_get("/start", start)
    app.router.add_get("/", my_work)
    app.router.add_post("/unlock", unlock)
    app.router.add_post("/tasks", add_task)
    from . import documents  # it imports this module's helpers

    documents.register(app)
    return app


async def serve(home: Path | None, port: int = 0, on_ready: Callable[[str], None] | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Serve the app on 127.0.0.1 until ``stop`` is set (or forever); ``on_ready`` gets the URL to open."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    gate = Gate(port=sock.getsockname()[1])
    runner = web.AppRunner(create_app(home, gate), access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        if on_ready:
            on_ready(f"http://127.0.0.1:{gate.port}/start?token={gate.launch_token}")
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()
