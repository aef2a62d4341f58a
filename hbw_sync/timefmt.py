"""Times and sizes as people read them, and as logs and JSON record them (sans-IO).

Why one module: the relay's audit, its log lines and the client's status all
show times; a person reads local time ("Wed 2 Dec 2026, 14:05 EAT"), a script
or a log collector wants an unambiguous ISO 8601 stamp. Keeping both here means
every front end (relay CLI, client CLI, a future web app) says the same thing
the same way, and the server need not import the client for it. The time zone
is an argument (default: this computer's), so tests pin it.
"""

from __future__ import annotations

import datetime as dt

UTC = dt.timezone.utc


def _local(ms: int, tz: dt.tzinfo | None) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz)


def iso_utc(ms: int | None, *, millis: bool = False) -> str | None:
    """``2026-12-02T14:05:09Z`` (with ``millis``: ``...09.123Z``): for logs and machine output."""
    if ms is None:
        return None
    t = dt.datetime.fromtimestamp(ms / 1000, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{ms % 1000:03d}" if millis else "") + "Z"


def iso_local(ms: int | None, tz: dt.tzinfo | None = None) -> str | None:
    """``2026-12-02T17:05:09+03:00``: local time with its offset, for JSON a person may also read."""
    if ms is None:
        return None
    return _local(ms, tz).isoformat(timespec="seconds")


def human(ms: int | None, tz: dt.tzinfo | None = None, *, never: str = "never") -> str:
    """``Wed 2 Dec 2026, 17:05 EAT``: local time as a person reads it (``never`` for no time)."""
    if ms is None:
        return never
    t = _local(ms, tz)
    zone = t.tzname() or t.strftime("%z")
    return f"{t:%a} {t.day} {t:%b %Y, %H:%M} {zone}"


def ago(ms: int | None, now_ms: int, *, never: str = "never") -> str:
    """``5 min ago``, ``3 h ago``, ``2 days ago``: how long since, rounded down."""
    if ms is None:
        return never
    s = max(0, (now_ms - ms) // 1000)
    if s < 60:
        return "just now"
    if s < 3600:
        return f"{s // 60} min ago"
    if s < 86_400:
        return f"{s // 3600} h ago"
    days = s // 86_400
    return f"{days} day{'s' if days != 1 else ''} ago"


def human_bytes(n: int) -> str:
    """``812 B``, ``4.2 KB``, ``1.3 MB`` (decimal units, as file managers on the officials' laptops show)."""
    x = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if x < 1000 or unit == "GB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1000
    return f"{n} B"
