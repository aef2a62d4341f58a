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
from typing import Any, overload

from .i18n import N_, _, ngettext

# Names from tables, not strftime's %a/%b: those follow the C locale, not the person's language.
WEEKDAYS = (N_("Mon"), N_("Tue"), N_("Wed"), N_("Thu"), N_("Fri"), N_("Sat"), N_("Sun"))
MONTHS = (N_("Jan"), N_("Feb"), N_("Mar"), N_("Apr"), N_("May"), N_("Jun"), N_("Jul"), N_("Aug"), N_("Sep"),
          N_("Oct"), N_("Nov"), N_("Dec"))


def _day_name(t: dt.datetime) -> str:
    return _(WEEKDAYS[t.weekday()])


def _month_name(t: dt.datetime) -> str:
    return _(MONTHS[t.month - 1])

UTC = dt.timezone.utc


def _local(ms: int, tz: dt.tzinfo | None) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz)


@overload
def iso_utc(ms: int, *, millis: bool = False) -> str: ...
@overload
def iso_utc(ms: None, *, millis: bool = False) -> None: ...
@overload
def iso_utc(ms: int | None, *, millis: bool = False) -> str | None: ...
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


def human(ms: int | None, tz: dt.tzinfo | None = None, *, never: str | None = None) -> str:
    """``Wed 2 Dec 2026, 17:05 EAT``: local time as a person reads it (``never`` for no time)."""
    if ms is None:
        return _("never") if never is None else never
    t = _local(ms, tz)
    zone = t.tzname() or t.strftime("%z")
    return _("{weekday} {day} {month} {year}, {time} {zone}").format(
        weekday=_day_name(t), day=t.day, month=_month_name(t), year=t.year, time=f"{t:%H:%M}", zone=zone)


def ago(ms: int | None, now_ms: int, *, never: str | None = None) -> str:
    """``5 min ago``, ``3 h ago``, ``2 days ago``: how long since, rounded down."""
    if ms is None:
        return _("never") if never is None else never
    s = max(0, (now_ms - ms) // 1000)
    if s < 60:
        return _("just now")
    if s < 3600:
        return _("{n} min ago").format(n=s // 60)
    if s < 86_400:
        return _("{n} h ago").format(n=s // 3600)
    days = s // 86_400
    return ngettext("{n} day ago", "{n} days ago", days).format(n=days)


def decimal(x: float, places: int = 1) -> str:
    """``x`` rounded to ``places`` decimals, with the language's decimal sign (``4.2``; French ``4,2``).

    Why a catalog entry and not ``locale``: the app and the CLI follow the person's chosen language
    (``HBW_LANG``, ``config language``), which need not be the process's C locale, and ``locale``
    is process-wide state a web server must not flip per request.
    """
    # translators: the decimal sign of your language (French: ",")
    return f"{x:.{places}f}".replace(".", _("."))


def human_bytes(n: int) -> str:
    """``812 B``, ``4.2 KB``, ``1.3 MB`` (decimal units, as file managers on the officials' laptops show).

    In the person's language: French says ``945,8\u00a0ko`` (its decimal sign, and a no-break space
    so that a number is never wrapped away from its unit). JSON and ``--json`` keep integer bytes.
    """
    x = float(n)
    for unit in (N_("B"), N_("KB"), N_("MB"), N_("GB")):
        if x < 1000 or unit == "GB":
            number = f"{x:.0f}" if unit == "B" else decimal(x)
            # translators: a size: {number} then {unit} (French puts a no-break space between them)
            return _("{number} {unit}").format(number=number, unit=_(unit))
        x /= 1000
    return f"{n} {_('B')}"


def when(ms: int | None, now_ms: int, tz: dt.tzinfo | None = None, *, never: str | None = None) -> str:
    """``today 18:05``, ``yesterday 09:30``, ``Mon 30 Nov 14:00``, ``3 Dec 2025 14:00``: local, as people say it."""
    if ms is None:
        return _("never") if never is None else never
    t, now = _local(ms, tz), _local(now_ms, tz)
    days = (now.date() - t.date()).days
    hm = f"{t:%H:%M}"
    if days == 0:
        return _("today {time}").format(time=hm)
    if days == 1:
        return _("yesterday {time}").format(time=hm)
    if days == -1:
        return _("tomorrow {time}").format(time=hm)
    if 0 < days < 7:
        return _("{weekday} {day} {month} {time}").format(weekday=_day_name(t), day=t.day, month=_month_name(t),
                                                          time=hm)
    return _("{day} {month} {year} {time}").format(day=t.day, month=_month_name(t), year=t.year, time=hm)


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
