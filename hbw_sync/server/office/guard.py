"""Who may use the office page: the admin token, a session cookie, CSRF tokens, Host and Origin checks.

Why each check: the page can revoke devices and make invites, so it must only
answer office IT. It listens on loopback by default, but a web page open in
IT's own browser can still send requests to 127.0.0.1: the **Host** check
refuses DNS-rebinding (a foreign name resolving to 127.0.0.1), the **Origin**
check and the per-session **CSRF** token refuse a form posted from another
site, and the cookie is ``HttpOnly; SameSite=Strict``. The token itself lives
0600 in the data directory (``admin.office_token``); a session ends after
``IDLE_S`` without a request. Sessions live in memory: a restart logs IT out.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

COOKIE = "hbw_office"
IDLE_S = 30 * 60
MAX_SESSIONS = 32
#: Failed logins tolerated per minute before every login is refused for the rest of it.
MAX_FAILURES = 10

#: Paths that answer without a session (the login form and its POST).
OPEN_PATHS = frozenset({"/login"})


@dataclass
class Session:
    csrf: str
    last: float


@dataclass
class Guard:
    token: str
    hosts: frozenset[str]  # acceptable Host headers ("127.0.0.1:8766", "localhost:8766"); empty: any
    sessions: dict[str, Session] = field(default_factory=dict)
    failures: list[float] = field(default_factory=list)

    def host_ok(self, host: str) -> bool:
        return not self.hosts or host.lower() in self.hosts

    def origin_ok(self, request: web.Request) -> bool:
        """A POST must come from a page of this very site: Origin (or, lacking it, Referer) names it."""
        own = f"{request.scheme}://{request.host}".lower()
        origin = request.headers.get("Origin")
        if origin is not None:
            return origin.lower() == own
        referer = request.headers.get("Referer", "").lower()
        return referer == own or referer.startswith(own + "/")

    def login(self, offered: str) -> str | None:
        """A new session id when ``offered`` is the token, else None (and a failure counted)."""
        now = time.monotonic()
        self.failures = [t for t in self.failures if now - t < 60]
        if len(self.failures) >= MAX_FAILURES:
            return None
        if not hmac.compare_digest(offered.strip().encode(), self.token.encode()):
            self.failures.append(now)
            return None
        self._expire(now)
        while len(self.sessions) >= MAX_SESSIONS:
            del self.sessions[min(self.sessions, key=lambda s: self.sessions[s].last)]
        sid = secrets.token_urlsafe(32)
        self.sessions[sid] = Session(csrf=secrets.token_urlsafe(32), last=now)
        return sid

    def locked_out(self) -> bool:
        now = time.monotonic()
        return len([t for t in self.failures if now - t < 60]) >= MAX_FAILURES

    def session(self, request: web.Request) -> Session | None:
        sid = request.cookies.get(COOKIE)
        if not sid:
            return None
        now = time.monotonic()
        self._expire(now)
        s = self.sessions.get(sid)
        if s is not None:
            s.last = now
        return s

    def logout(self, request: web.Request) -> None:
        self.sessions.pop(request.cookies.get(COOKIE, ""), None)

    def _expire(self, now: float) -> None:
        for sid in [k for k, s in self.sessions.items() if now - s.last > IDLE_S]:
            del self.sessions[sid]


GUARD = web.AppKey("office_guard", Guard)
SESSION = web.RequestKey("office_session", Session)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SECURITY_HEADERS = {
    # Inline style and the inline SVG QR code only; no script at all; forms post only here.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def refusal(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain", charset="utf-8",
                        headers=SECURITY_HEADERS)


def middleware(refuse_words: Callable[[str], str]) -> Middleware:
    """The checks above, in order, before any handler runs; ``refuse_words`` translates the refusals."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        guard = request.app[GUARD]
        if not guard.host_ok(request.host):
            return refusal(421, refuse_words("host"))
        if request.method not in ("GET", "HEAD", "POST"):
            return refusal(405, refuse_words("method"))
        if request.method == "POST" and not guard.origin_ok(request):
            return refusal(403, refuse_words("origin"))
        if request.path not in OPEN_PATHS:
            session = guard.session(request)
            if session is None:
                if request.method == "POST":
                    return refusal(401, refuse_words("login"))
                raise web.HTTPSeeOther("/login", headers=SECURITY_HEADERS)
            if request.method == "POST":
                form = await request.post()
                offered = form.get("csrf")
                if not isinstance(offered, str) or not hmac.compare_digest(offered.encode(), session.csrf.encode()):
                    return refusal(403, refuse_words("csrf"))
            request[SESSION] = session
        resp = await handler(request)
        resp.headers.update(SECURITY_HEADERS)
        return resp

    return check
