"""What every page of the local app shares: the frame (skip link, navigation, CSS), forms and errors.

Why one small module: each page group (``pages/``) builds its body as escaped HTML strings and
hands it to ``page()``, so the accessibility basics (a skip link, a ``<main>`` landmark, the
language, a visible focus ring from ``static/app.css``) are written once. Every string a person
reads goes through ``_()``; every value from a store or a form goes through ``esc()``.

``unlocked`` is the one way a handler gets the passphrase: it restarts the idle clock, shows the
unlock page when the app is locked, and runs the library call in a worker thread, turning an
``HbwError`` into a page that says what happened and what to do (an expected outcome, not a 500).
"""

from __future__ import annotations

import asyncio
import html
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

from aiohttp import web

from ...errors import HbwError, UsageError, http_status_for
from .hints import app_words
from ...i18n import _
from .security import Gate

COOKIE = "hbw_app"
GATE = web.AppKey("gate", Gate)
HOME = web.AppKey("home", object)
#: What the app learnt at unlock that every page's frame needs (the role decides the navigation).
ROLE_CACHE = web.AppKey("role", dict)
#: Words for the next page a session sees ("Approved ...", "Moved ..."): kept here, not in the URL,
#: so a link from elsewhere cannot make the app say something it did not do.
FLASH = web.AppKey("flash", dict)
#: Whether this request's person is the team's supervisor (the navigation shows Team and Import).
SUPERVISOR = web.RequestKey("supervisor", bool)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")

#: Longest text a form field may carry (a note, a description); longer is refused before any work.
MAX_FIELD = 20_000


def esc(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def home_of(request: web.Request) -> Path | None:
    return request.app[HOME]  # type: ignore[return-value]


def nav_items(supervisor: bool) -> list[tuple[str, str]]:
    items = [("/", _("My work")), ("/docs", _("Documents")), ("/sync", _("Sync")), ("/profile", _("Profile"))]
    if supervisor:
        items += [("/team", _("Team")), ("/import", _("Import"))]
    return items


def flash(request: web.Request, text: str) -> None:
    """Say ``text`` on the next page this session opens (after a POST's redirect)."""
    request.app[FLASH].setdefault(request.cookies.get(COOKIE), []).append(text)


def page(request: web.Request, title: str, body: str, *, nav: bool = True, status: int = 200) -> web.Response:
    """The whole HTML document around ``body`` (already escaped), with any words a last action left."""
    said = request.app[FLASH].pop(request.cookies.get(COOKIE), []) if FLASH in request.app else []
    body = "".join(done_note(t) for t in said) + body
    links = ""
    if nav:
        here = request.path
        sup = bool(request.get(SUPERVISOR))
        links = "".join(
            f'<li><a href="{href}"{" aria-current=page" if (href == here or (href != "/" and here.startswith(href))) else ""}>'
            f"{esc(label)}</a></li>" for href, label in nav_items(sup))
        links = f'<nav aria-label="{esc(_("Pages"))}"><ul>{links}</ul></nav>'
    return web.Response(status=status, content_type="text/html", text=(
        f'<!doctype html><html lang="{esc(_("en"))}"><head>'  # translators: this language's code (fr)
        f'<meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{esc(title)} · hbw-sync</title><link rel="stylesheet" href="/static/app.css"></head><body>'
        f'<a class="skip" href="#main">{esc(_("Skip to content"))}</a>'
        f'<header><span class="brand">hbw-sync</span>{links}</header>'
        f'<main id="main" tabindex="-1"><h1>{esc(title)}</h1>{body}</main></body></html>'))


def csrf_field(request: web.Request) -> str:
    token = request.app[GATE].csrf_for(request.cookies.get(COOKIE))
    return f'<input type="hidden" name="csrf" value="{esc(token)}">'


def form(request: web.Request, action: str, inner: str, *, multipart: bool = False, cls: str = "") -> str:
    enc = ' enctype="multipart/form-data"' if multipart else ""
    klass = f' class="{cls}"' if cls else ""
    return f'<form method="post" action="{esc(action)}"{enc}{klass}>{csrf_field(request)}{inner}</form>'


def field(label: str, name: str, value: Any = "", *, kind: str = "text", required: bool = False,
          extra: str = "", fid: str | None = None) -> str:
    """A labelled input: every input has a visible label tied to it (keyboard and screen readers)."""
    fid = fid or f"f-{name}"
    req = " required" if required else ""
    return (f'<p class="field"><label for="{fid}">{esc(label)}</label>'
            f'<input id="{fid}" name="{name}" type="{kind}" value="{esc(value)}"{req}{extra}></p>')


def select(label: str, name: str, options: list[tuple[str, str]], current: str | None = None,
           fid: str | None = None) -> str:
    fid = fid or f"f-{name}"
    opts = "".join(f'<option value="{esc(v)}"{" selected" if v == current else ""}>{esc(t)}</option>'
                   for v, t in options)
    return f'<p class="field"><label for="{fid}">{esc(label)}</label><select id="{fid}" name="{name}">{opts}</select></p>'


def alert(text: str, hint: str | None = None) -> str:
    more = f"<br>{esc(_('What to do:'))} {esc(hint)}" if hint else ""
    return f'<p class="alert" role="alert">{esc(text)}{more}</p>'


def done_note(text: str) -> str:
    return f'<p class="ok" role="status">{esc(text)}</p>'


def text_of(form_data: Any, name: str, *, max_len: int = MAX_FIELD, required: bool = False) -> str | None:
    """A text field of a posted form, type- and size-checked; None when absent or empty."""
    v = form_data.get(name)
    if v is None or v == "":
        if required:
            raise UsageError(_("'{name}' is missing").format(name=name))
        return None
    if not isinstance(v, str):
        raise UsageError(_("'{name}' must be text").format(name=name))
    if len(v) > max_len:
        raise UsageError(_("'{name}' is too long (at most {n} characters)").format(name=name, n=max_len))
    return v


def human_time(iso: str | None) -> str:
    """A view's ISO 8601 UTC time as people say it, in this computer's zone: ``today 18:05``."""
    import datetime as dt

    from ...timefmt import when
    from ..device import now_ms

    if not iso:
        return "-"
    try:
        ms = int(dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return iso
    return when(ms, now_ms())


def back_path(request: web.Request) -> str:
    """Where "Back" goes: the page the form was on (only a path of ours), else My work."""
    from urllib.parse import urlsplit

    path = urlsplit(request.headers.get("Referer") or "").path
    return path if path.startswith("/") and not path.startswith("//") else "/"


def with_replica(home: Path | None, passphrase: str, fn: Callable[[Any], T]) -> T:
    """Open the store, unlock it, run ``fn(replica)`` and close it (in the worker thread)."""
    from ..device import Device

    with Device.open(home) as dev:
        return fn(dev.unlock(passphrase))


async def call(request: web.Request, passphrase: str, fn: Callable[[Any], T]) -> T:
    """``with_replica`` in a worker thread."""
    home = home_of(request)
    return await in_worker(lambda: with_replica(home, passphrase, fn))


def error_words(e: HbwError) -> str:
    """The error in the person's language, from its code (``messages.py``), with the app's own hint."""
    return alert(*app_words(e))


async def in_worker(fn: Callable[[], T]) -> T:
    """Library calls (SQLite, scrypt, network) leave the event loop free for progress polling."""
    return await asyncio.to_thread(fn)


def passphrase_or_none(request: web.Request) -> str | None:
    return request.app[GATE].touch(time.monotonic())


def unlock_form(request: web.Request, problem: str = "") -> web.Response:
    body = (alert(problem) if problem else "") + form(request, "/unlock", (
        f'<p class="field"><label for="pp">{esc(_("Passphrase"))}</label>'
        f'<input id="pp" name="passphrase" type="password" autocomplete="current-password" required autofocus></p>'
        f'<p><button>{esc(_("Unlock"))}</button></p>'))
    return page(request, _("hbw-sync is locked"), body, nav=False)


PageFn = Callable[[web.Request, str], Awaitable[web.StreamResponse]]


def unlocked(fn: PageFn) -> Handler:
    """Wrap a handler that needs the store open: locked shows the unlock page; errors become words."""

    async def handler(request: web.Request) -> web.StreamResponse:
        pp = passphrase_or_none(request)
        if pp is None:
            return unlock_form(request)
        request[SUPERVISOR] = request.app[ROLE_CACHE].get("role") == "supervisor"
        try:
            return await fn(request, pp)
        except HbwError as e:
            back = f'<p><a href="{esc(back_path(request))}">{esc(_("Back"))}</a></p>'
            return page(request, _("That did not work"), error_words(e) + back, status=http_status_for(e))

    return handler


