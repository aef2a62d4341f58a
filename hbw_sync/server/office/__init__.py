"""The office page: ``hbw-relay serve --admin``, a small web page for office IT beside the relay.

Why: office IT enrolls laptops, revokes the lost one, keeps the equipment
register and backs up the relay; not everyone in IT lives in a terminal. The
page is server-rendered HTML over the same library calls as ``hbw-relay``'s
commands (``server/admin.py``), never a shell-out, so the two cannot disagree.
It listens on its own port, on loopback unless IT explicitly opts in to more
(``check_bind``), behind the admin token (``guard``).

Admin calls open their own short SQLite transactions (WAL lets the relay go on)
and run in a worker thread, so the event loop that serves devices never blocks.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from ...errors import UsageError
from ...i18n import _
from . import guard, views


@dataclass
class OfficeConfig:
    host: str = "127.0.0.1"
    port: int = 8766
    #: Listening beyond loopback needs this opt-in (``--admin-remote``).
    allow_remote: bool = False


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(cfg: OfficeConfig) -> None:
    """Refuse a non-loopback address unless IT said so explicitly.

    Raises:
        UsageError: ``usage.admin_bind``; nothing was started.
    """
    if not is_loopback(cfg.host) and not cfg.allow_remote:
        raise UsageError(_("the office page listens on this computer only (127.0.0.1) unless you add "
                           "--admin-remote; {host} would expose it to the network").format(host=cfg.host),
                         code="usage.admin_bind",
                         hint=_("prefer an SSH tunnel: ssh -L 8766:127.0.0.1:8766 OFFICE-HOST"))


def _hosts(cfg: OfficeConfig, port: int) -> frozenset[str]:
    """Host headers this page answers to; any, when bound to a wildcard address on IT's opt-in."""
    if cfg.host in ("0.0.0.0", "::", ""):
        return frozenset()
    names = {cfg.host, "localhost", "127.0.0.1", "[::1]"} if is_loopback(cfg.host) else {cfg.host}
    names = {f"[{n}]" if ":" in n and not n.startswith("[") else n for n in names}
    return frozenset(f"{n}:{port}".lower() for n in names)


def _refusal_words(why: str) -> str:
    return {
        "host": _("This page answers only under the address it listens on; nothing was done."),
        "method": _("Only GET and POST are used here; nothing was done."),
        "origin": _("This form was not sent from the office page itself; nothing was done."),
        "login": _("Log in first (your session may have ended); nothing was done."),
        "csrf": _("This form is out of date or was not made by the office page; reload the page and try again. "
                  "Nothing was done."),
    }[why]


def create_office_app(data: Path, token: str, cfg: OfficeConfig, port: int,
                      relay_app: web.Application | None = None) -> web.Application:
    """The office page's application; ``relay_app``, when in the same process, gives health and metrics."""
    app = web.Application(client_max_size=64 * 1024, middlewares=[guard.middleware(_refusal_words)])
    app[guard.GUARD] = guard.Guard(token=token, hosts=_hosts(cfg, port))
    app[views.DATA] = Path(data)
    if relay_app is not None:
        app[views.RELAY] = relay_app
    app.add_routes(views.routes)
    return app


async def start(data: Path, cfg: OfficeConfig, relay_app: web.Application | None,
                token: str) -> tuple[web.AppRunner, str]:
    """Bind the office page (after ``check_bind``) and start it; returns its runner and URL."""
    check_bind(cfg)
    # The port must be known for the Host check before the app exists: bind first, then serve.
    import socket

    family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((cfg.host.strip("[]"), cfg.port))
    port = sock.getsockname()[1]
    app = create_office_app(data, token, cfg, port, relay_app)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    host = f"[{cfg.host}]" if ":" in cfg.host and not cfg.host.startswith("[") else cfg.host
    return runner, f"http://{host}:{port}"
