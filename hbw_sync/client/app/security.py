"""Who may drive the local app: only the person at this login (sans-IO rules, no aiohttp here).

Why: the app listens on 127.0.0.1, which every program and every web page in any browser of
this machine can reach. So a request is served only when
* its Host names our loopback address and port (a DNS-rebinding page names its own host);
* a POST's Origin, when the browser sends one, is our own origin (a foreign page's form is refused);
* it carries the session cookie, obtained once by presenting the random per-launch token that
  is in the URL the app opened (other local users cannot read it; the cookie is HttpOnly and
  SameSite=Strict, so no other site's page sends it);
* a POST carries the session's CSRF token;
* and content needs the store unlocked: after ``idle_s`` without a request the app forgets the
  passphrase and shows the unlock page again (a family member at the laptop sees nothing).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from typing import Callable

#: Minutes without a request after which the app locks (issue 14: "locks after inactivity").
IDLE_LOCK_S = 15 * 60


def new_token() -> str:
    """A random token for a URL, a cookie or a form (256 bits)."""
    return secrets.token_urlsafe(32)


def same(a: str | None, b: str) -> bool:
    """Constant-time comparison; a missing value never matches."""
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


@dataclass
class Gate:
    """The state of one launch: its token, its sessions and when the person last did something."""

    port: int
    idle_s: float = IDLE_LOCK_S
    launch_token: str = field(default_factory=new_token)
    sessions: dict[str, str] = field(default_factory=dict)  # session cookie -> its CSRF token
    last_active: float = 0.0
    passphrase: str | None = None  # held only while unlocked
    #: Called when the app locks: the server forgets the store keys derived in this process
    #: (``device.forget_store_keys``), or the key would outlive the passphrase it came from.
    on_lock: Callable[[], None] | None = None

    def host_ok(self, host: str | None) -> bool:
        return host in (f"127.0.0.1:{self.port}", f"localhost:{self.port}")

    def origin_ok(self, origin: str | None) -> bool:
        """A POST's Origin: absent (the CSRF token still decides) or exactly ours."""
        return origin is None or origin in (f"http://127.0.0.1:{self.port}", f"http://localhost:{self.port}")

    def open_session(self, token: str | None) -> str | None:
        """Exchange the launch token for a new session id (the cookie), or None for a wrong token."""
        if not same(token, self.launch_token):
            return None
        sid = new_token()
        self.sessions[sid] = new_token()
        return sid

    def csrf_for(self, sid: str | None) -> str | None:
        return self.sessions.get(sid) if sid else None

    def csrf_ok(self, sid: str | None, sent: str | None) -> bool:
        expected = self.csrf_for(sid)
        return expected is not None and same(sent, expected)

    def unlock(self, passphrase: str, now: float) -> None:
        self.passphrase = passphrase
        self.last_active = now

    def lock(self) -> None:
        """Forget the passphrase and, through ``on_lock``, what was derived from it."""
        self.passphrase = None
        if self.on_lock is not None:
            self.on_lock()

    def expire(self, now: float) -> bool:
        """Lock if idle for longer than ``idle_s`` at ``now``; True if it locked just now.

        The server calls it on a timer too: without a request the passphrase and the store key would
        otherwise stay in memory past the idle limit, until someone came back to the page.
        """
        if self.passphrase is not None and now - self.last_active > self.idle_s:
            self.lock()
            return True
        return False

    def touch(self, now: float) -> str | None:
        """A request at ``now``: the passphrase if still unlocked (and the idle clock restarts), else None."""
        self.expire(now)
        if self.passphrase is not None:
            self.last_active = now
        return self.passphrase
