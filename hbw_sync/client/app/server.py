"""The app's aiohttp server: the gate as middleware, unlocking, static files, and the page groups.

Every library call runs in a worker thread (``asyncio.to_thread``): SQLite and scrypt must not
stall the page that shows sync progress. Each call opens the store, does one thing and closes it.
The pages themselves live in ``pages/`` (one module per group), registered in ``create_app``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import AsyncIterator, Callable

from aiohttp import web

from ...clock import now_ms
from ...i18n import _
from ..device import Device, forget_store_keys
from .layout import COOKIE, FLASH, GATE, HOME, ROLE_CACHE, Handler, unlock_form
from . import upload
from .pages import documents, importing, profile, syncing, team, work
from .security import Gate

#: Seconds between checks of the idle lock: the app locks within this of its idle limit (a cheap check).
IDLE_CHECK_S = 1.0

STATIC = Path(__file__).parent / "static"
#: Largest body of a form that is not an upload (urlencoded: a note, a reason, a passphrase). Upload
#: forms are multipart and never buffered: ``upload.py`` reads them part by part, each with its cap.
MAX_BODY = 1024 * 1024


def _upload_path(path: str) -> bool:
    return documents.takes_upload(path) or path in (syncing.UPLOAD_PATH, importing.UPLOAD_PATH)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    gate = request.app[GATE]
    if not gate.host_ok(request.headers.get("Host")):
        return web.Response(status=421, text=_("This address is not the app's."))
    if request.method == "POST" and not gate.origin_ok(request.headers.get("Origin")):
        return await _cut(request, web.Response(status=403, text=_("Refused: this request came from another site.")))
    if request.path == "/start":
        return await handler(request)
    sid = request.cookies.get(COOKIE)
    if gate.csrf_for(sid) is None:
        return await _cut(request, web.Response(
            status=403, text=_("Open the app with the address hbw-sync app printed.")))
    if request.method == "POST":
        stale = web.Response(status=403, text=_("Refused: the form is stale; reload the page."))
        if upload.is_multipart(request):
            # Only the upload forms are multipart; their CSRF token is the first part, checked before
            # any other byte of the body is read (a stranger's gigabyte costs a few kilobytes).
            if not _upload_path(request.path):
                return await _cut(request, web.Response(status=415, text=_("This form takes no file.")))
            opened = await upload.open_form(request, lambda sent: gate.csrf_ok(sid, sent))
            if opened is None:
                return await _cut(request, stale)
            request[upload.FORM] = opened
        else:
            form = await request.post()  # at most MAX_BODY, and only after the session is known
            sent = form.get("csrf")
            if not gate.csrf_ok(sid, sent if isinstance(sent, str) else None):
                return stale
    resp = await handler(request)
    if request.method == "POST" and (request.get(upload.CUT) or not request.content.is_eof()):
        return await _cut(request, resp)
    return resp


#: Seconds a cut-off sender gets to read the refusal before the connection is dropped.
CUT_GRACE_S = 1.0


async def _cut(request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
    """Send ``resp`` and close the connection, leaving the rest of the body unread.

    Why not let aiohttp drain it: it would read (and throw away) up to ten seconds of whatever the
    sender keeps sending; an endless body would cost that much of the loop on every request. Why
    not close at once: closing a socket with unread bytes sends a reset, and a reset makes the
    sender's system throw away the refusal it had not read yet, so the person would see "connection
    reset" instead of the reason. So: the refusal, then end of stream (FIN), then ``CUT_GRACE_S``
    during which nothing is read (the sender's window fills and it stops), then the close.
    """
    if request.content.is_eof() or not request.body_exists:
        return resp
    resp.force_close()
    if not resp.prepared:
        await resp.prepare(request)
        await resp.write_eof()
    transport = request.transport
    if transport is not None and transport.can_write_eof():
        transport.write_eof()
        await asyncio.sleep(CUT_GRACE_S)
    request.protocol.force_close()
    return resp


async def start(request: web.Request) -> web.StreamResponse:
    sid = request.app[GATE].open_session(request.query.get("token"))
    if sid is None:
        return web.Response(status=403, text=_("Open the app with the address hbw-sync app printed."))
    resp = web.HTTPSeeOther("/")
    resp.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", path="/")
    raise resp


async def unlock(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    pp = form.get("passphrase")
    home = request.app[HOME]

    def check() -> tuple[bool, str | None]:
        with Device.open(home) as dev:  # type: ignore[arg-type]
            return dev.opens_with(str(pp)), dev.store.meta("role")

    ok, role = await asyncio.to_thread(check) if isinstance(pp, str) and len(pp) <= 1024 else (False, None)
    if not ok:
        return unlock_form(request, _("That passphrase does not open this store."))
    request.app[GATE].unlock(pp, time.monotonic())  # type: ignore[arg-type]
    request.app[ROLE_CACHE]["role"] = role
    raise web.HTTPSeeOther("/")


def create_app(home: Path | None, gate: Gate, *, locale_day_first: bool = True) -> web.Application:
    """The app; ``locale_day_first``: how to read 05/12 in an import when the file does not tell."""
    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY)
    app[importing.LOCALE_DAY_FIRST] = locale_day_first
    app[GATE] = gate
    app[HOME] = home
    app[ROLE_CACHE] = {}
    app[FLASH] = {}
    app.router.add_get("/start", start)
    app.router.add_post("/unlock", unlock)
    app.router.add_static("/static", STATIC)
    for group in (work, documents, syncing, profile, team, importing):
        group.register(app)
    if gate.on_lock is None:
        gate.on_lock = forget_store_keys
    app.cleanup_ctx.append(_idle_lock)
    return app


async def _idle_lock(app: web.Application) -> AsyncIterator[None]:
    """Lock on time even when no request comes: the passphrase and the derived key leave memory.

    At start it also removes upload folders a crashed app left in the store's folder (``upload.sweep``).
    """
    gate = app[GATE]
    home = app[HOME]
    await asyncio.to_thread(upload.sweep, home, now_ms() / 1000)  # type: ignore[arg-type]

    async def tick() -> None:
        while True:
            await asyncio.sleep(IDLE_CHECK_S)
            gate.expire(time.monotonic())

    task = asyncio.create_task(tick())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    gate.lock()  # the app is stopping: forget what it held


async def serve(home: Path | None, port: int = 0, on_ready: Callable[[str], None] | None = None,
                stop: asyncio.Event | None = None, *, locale_day_first: bool = True) -> None:
    """Serve the app on 127.0.0.1 until ``stop`` is set (or forever); ``on_ready`` gets the URL to open."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    gate = Gate(port=sock.getsockname()[1])
    runner = web.AppRunner(create_app(home, gate, locale_day_first=locale_day_first), access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        if on_ready:
            on_ready(f"http://127.0.0.1:{gate.port}/start?token={gate.launch_token}")
        await (stop or asyncio.Event()).wait()
    finally:
        await runner.cleanup()
