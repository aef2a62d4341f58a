"""What the client shows: plain data classes built from merged state, and parsing of user values.

Kept apart from the replica so the CLI, a future tray app and tests format the
same things the same way, and so that parsing a date or a list of needs gives
the same error message everywhere.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import clock, hlc
from ..errors import UsageError
from ..ops import WEEKDAYS, Need, Priority, Status, date_to_day, day_to_date, days_to_names, needs_to_names
from ..i18n import _

STATUS_NAMES = {s: s.name.lower() for s in Status}
PRIORITY_NAMES = {p: p.name.lower() for p in Priority}


def iso_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class NoteView:
    text: str
    at: str | None
    by: str


@dataclass
class TaskView:
    id: str
    title: str
    description: str
    assignee: str | None
    status: str
    due: str | None
    priority: str
    needs: list[str]
    pinned: bool
    updated: str | None
    notes: list[NoteView] = field(default_factory=list)
    docs: list[str] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    ref: str | None = None  # the supervisor's row key from an imported spreadsheet
    archived: bool = False
    deleted: bool = False
    deleted_by: str | None = None  # "dana at 2026-12-02T09:00:00Z"

    @property
    def short(self) -> str:
        return self.id[:6]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ExportView:
    """One recorded export of a confidential document: who, from which device, when, and why."""

    by: str
    device: str
    at: str | None
    reason: str


@dataclass
class DocView:
    id: str
    name: str
    size: int
    sha256: str
    versions: int
    task: str | None
    updated: str | None
    conflict_of: str | None = None  # set on a conflict copy: the document it was split from
    confidential: bool = False  # writing it outside the store needs a reason, recorded for the team
    confidential_by: str | None = None  # who set (or cleared) the mark: "dana at 2026-12-02T09:00:00Z"
    exports: list[ExportView] = field(default_factory=list)  # every recorded export, oldest first
    local: bool = True  # its bytes are on this device (a chunked one may wait for 'doc get', §18e)

    @property
    def short(self) -> str:
        return self.id[:6]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def hlc_iso(ts: int | None) -> str | None:
    return None if ts is None else iso_ms(hlc.wall_ms(ts))


# -- parsing what people type -------------------------------------------------------------------

_REL = re.compile(r"^\+(\d{1,4})d$")


def parse_date(text: str, today: dt.date | None = None) -> int | None:
    """A due date as days since 1970: YYYY-MM-DD, 'today', 'tomorrow', '+3d', or '' / 'none' to clear."""
    t = text.strip().lower()
    today = today or dt.date.fromtimestamp(clock.now_ms() / 1000)
    if t in ("", "none", "-"):
        return None
    if t == "today":
        return date_to_day(today)
    if t == "tomorrow":
        return date_to_day(today + dt.timedelta(days=1))
    m = _REL.match(t)
    if m:
        return date_to_day(today + dt.timedelta(days=int(m.group(1))))
    try:
        return date_to_day(dt.date.fromisoformat(t))
    except ValueError:
        raise UsageError(_("bad date {text!r}").format(text=text), hint=_("use YYYY-MM-DD, 'today', 'tomorrow' or '+3d'")) from None


def format_day(day: int | None) -> str | None:
    return None if day is None else day_to_date(day).isoformat()


def _parse_enum(text: str, names: dict, what: str) -> int:
    t = text.strip().lower().replace("-", "_").replace(" ", "_")
    for value, name in names.items():
        if name == t:
            return int(value)
    raise UsageError(_("bad {what} {text!r}").format(what=what, text=text), hint="use one of: " + ", ".join(names.values()))


def parse_status(text: str) -> int:
    return _parse_enum(text, STATUS_NAMES, "status")


def parse_priority(text: str) -> int:
    return _parse_enum(text, PRIORITY_NAMES, "priority")


def _split(text: str) -> list[str]:
    return [p for p in re.split(r"[,;\s]+", text.strip().lower()) if p]


def parse_needs(text: str) -> int:
    """'internet,laptop,office' (any order, commas/spaces) as a bit mask; '' or 'none' is 0."""
    bits = 0
    for part in _split(text):
        if part == "none":
            continue
        try:
            bits |= Need[part.upper()]
        except KeyError:
            raise UsageError(_("unknown need {part!r}").format(part=part), hint=_("use internet, laptop and/or office")) from None
    return bits


def parse_days(text: str) -> int:
    """'mon,thu' as a bit mask (bit 0 = Monday)."""
    bits = 0
    for part in _split(text):
        if part == "none":
            continue
        if part[:3] not in WEEKDAYS:
            raise UsageError(_("unknown weekday {part!r}").format(part=part), hint=_("use mon, tue, wed, thu, fri, sat, sun"))
        bits |= 1 << WEEKDAYS.index(part[:3])
    return bits


__all__ = [
    "TaskView",
    "DocView",
    "NoteView",
    "parse_date",
    "parse_status",
    "parse_priority",
    "parse_needs",
    "parse_days",
    "format_day",
    "needs_to_names",
    "days_to_names",
    "iso_ms",
    "hlc_iso",
]


_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


def safe_filename(name: str) -> str:
    """A document name from another member, made safe to use as one file name in the current folder.

    Separators, '..', control characters and Windows device names cannot
    reach the file system: the result never leaves the chosen directory.
    """
    cleaned = "".join("_" if (c in '/\\:*?"<>|' or ord(c) < 32 or ord(c) == 127) else c for c in name).strip()
    while ".." in cleaned:
        cleaned = cleaned.replace("..", ".")
    cleaned = cleaned.lstrip(".") or "document"
    if cleaned.split(".")[0].lower() in _RESERVED:
        cleaned = "_" + cleaned
    return cleaned[:200]
