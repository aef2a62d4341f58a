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
from typing import Any

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


def when(ms: int | None, now_ms: int, tz: dt.tzinfo | None = None, *, never: str = "never") -> str:
    """``today 18:05``, ``yesterday 09:30``, ``Mon 30 Nov 14:00``, ``3 Dec 2025 14:00``: local, as people say it."""
    if ms is None:
        return never
    t, now = _local(ms, tz), _local(now_ms, tz)
    days = (now.date() - t.date()).days
    if days == 0:
        return f"today {t:%H:%M}"
    if days == 1:
        return f"yesterday {t:%H:%M}"
    if days == -1:
        return f"tomorrow {t:%H:%M}"
    if 0 < days < 7:
        return f"{t:%a} {t.day} {t:%b %H:%M}"
    return f"{t.day} {t:%b %Y %H:%M}"


def machine_form(data: Any) -> Any:
    """``data`` with every time in the one JSON form: ISO 8601 UTC with Z (issue 11, item 3).

    Library results carry times as integer milliseconds in keys ending ``_ms``
    (cheap to compare and store); what a script reads gets ``at`` =
    ``"2026-12-02T14:05:09Z"`` for ``at_ms``, the same form as every other time
    in JSON output (task ``updated``, note ``at``). Sizes stay integer bytes.
    """
    if isinstance(data, dict):
        out: dict[Any, Any] = {}
        for k, v in data.items():
            if isinstance(k, str) and k.endswith("_ms") and (v is None or (type(v) is int)):
                out[k[:-3]] = iso_utc(v)
            else:
                out[k] = machine_form(v)
        return out
    if isinstance(data, (list, tuple)):
        return [machine_form(v) for v in data]
    return data
