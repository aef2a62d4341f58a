"""HTML for the office page: one layout, tables and forms, every text escaped and translated.

Server-rendered, no script, no CDN: the page works on an office machine with no
internet, and the Content-Security-Policy (``guard.SECURITY_HEADERS``) forbids
anything loaded from elsewhere. Every string a person reads goes through ``_()``.
"""

from __future__ import annotations

from html import escape
from typing import Any, Iterable

from ...i18n import _

STYLE = """
body{font:16px/1.45 system-ui,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}
header{background:#16425b;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:.4rem 1rem;align-items:center}
header a{color:#fff} header strong{margin-right:1rem} header form{margin-left:auto}
main{padding:1rem;max-width:72rem} h1{font-size:1.4rem;margin:.2rem 0 1rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem;background:#fff}
th,td{border:1px solid #ccc;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#e8eef2} .bad{color:#a4161a;font-weight:600} .ok{color:#1b6b2a;font-weight:600}
.note{background:#fff7d6;border:1px solid #e0c25a;padding:.6rem .8rem;margin:.6rem 0}
.error{background:#fde2e1;border:1px solid #a4161a;padding:.6rem .8rem;margin:.6rem 0}
form.inline{display:inline} label{display:inline-block;margin:.2rem .8rem .2rem 0}
input,select,button{font:inherit;padding:.2rem .4rem} button{cursor:pointer}
button.danger{background:#a4161a;color:#fff;border:1px solid #6d0e11}
code,.code{font-family:ui-monospace,monospace;word-break:break-all}
a:focus,button:focus,input:focus,select:focus{outline:3px solid #f4a261;outline-offset:1px}
@media (max-width:40rem){th,td{font-size:.9rem;padding:.25rem}}
"""


def e(value: Any) -> str:
    return escape("" if value is None else str(value))


def nav() -> list[tuple[str, str]]:
    return [("/", _("Overview")), ("/devices", _("Devices")), ("/invites", _("Invites")),
            ("/equipment", _("Equipment")), ("/workload", _("Workload")), ("/audit", _("Audit")),
            ("/backups", _("Backups")), ("/health", _("Health"))]


def page(title: str, body: str, team: str = "", csrf: str | None = None) -> str:
    links = " ".join(f'<a href="{href}">{e(text)}</a>' for href, text in nav()) if csrf else ""
    logout = (f'<form method="post" action="/logout">{hidden(csrf)}<button>{e(_("Log out"))}</button></form>'
              if csrf else "")
    return (f'<!doctype html><html lang="{e(_("en"))}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{e(title)} · hbw-relay</title><style>{STYLE}</style></head><body>"
            f'<header><strong>{e(_("hbw-sync office page"))}{" · " + e(team) if team else ""}</strong>'
            f'<nav aria-label="{e(_("Sections"))}">{links}</nav>{logout}</header>'
            f"<main><h1>{e(title)}</h1>{body}</main></body></html>")


def hidden(csrf: str | None, **fields: Any) -> str:
    out = f'<input type="hidden" name="csrf" value="{e(csrf)}">' if csrf else ""
    return out + "".join(f'<input type="hidden" name="{e(k)}" value="{e(v)}">' for k, v in fields.items())


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], empty: str) -> str:
    """A table of already-escaped cells (``e()`` them, or build markup from escaped parts)."""
    rows = list(rows)
    if not rows:
        return f"<p>{e(empty)}</p>"
    head = "".join(f'<th scope="col">{e(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def note(text: str, kind: str = "note") -> str:
    return f'<div class="{kind}" role="{"alert" if kind == "error" else "status"}">{e(text)}</div>'


def field(label: str, name: str, kind: str = "text", value: str = "", required: bool = False,
          extra: str = "") -> str:
    req = " required" if required else ""
    return (f'<label>{e(label)} <input type="{kind}" name="{e(name)}" value="{e(value)}"{req}{extra}></label>')
