"""What people type in a supervisor's spreadsheet, read as task fields (sans-IO, no files here).

Spreadsheets are written by people, in English or French, in whatever case and
order they like: ``Échéance`` is ``due``, ``urgente`` is ``urgent``,
``05/12/2026`` is a date. Each parser returns a value or raises ``UsageError``
whose message names the cell's problem in words; the planner adds the row number.

Dates: ISO (``2026-12-05``, with or without a time), numbers separated by ``/``,
``.`` or ``-`` (``05/12/2026``, ``5.12.2026``, two-digit years are 20YY), a month
by name in English or French (``12 Dec 2026``, ``12 décembre 2026``, ``Dec 12,
2026``), ``today``, ``tomorrow``, ``+3d``, and spreadsheet date cells. Whether
``05/12/2026`` is the 5th of December or the 12th of May is decided once per
file (``numeric_order``): a day over 12 in either place settles it; otherwise
``--day-first``/``--month-first``, or the locale (day first except in the few
countries that write the month first).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from typing import Any, Iterable, Mapping

from ...errors import UsageError
from ...ops import MAX_REF, MAX_TEXT, Need, date_to_day, is_member_name
from .. import views
from ...i18n import _

#: Task fields an import can set, in the order an export writes them.
COLUMNS = ("id", "ref", "title", "description", "assignee", "due", "priority", "needs", "status")

#: Header synonyms (after ``fold``: no accents, lowercase, single spaces), English and French.
HEADER_SYNONYMS: dict[str, tuple[str, ...]] = {
    "id": ("id", "task id", "identifiant"),
    "ref": ("ref", "reference", "ref no", "no", "n", "num", "numero", "code", "key", "cle"),
    "title": ("title", "task", "titre", "tache", "intitule", "libelle", "subject", "objet", "activity", "activite"),
    "description": ("description", "desc", "details", "detail", "comment", "comments", "commentaire",
                    "commentaires", "remarks", "remarques", "instructions"),
    "assignee": ("assignee", "assigned to", "assigned", "owner", "who", "member", "person", "responsable",
                 "assigne", "assigne a", "attribue a", "affecte a", "agent", "membre", "personne", "qui"),
    "due": ("due", "due date", "deadline", "date", "by", "echeance", "date limite", "date d echeance", "pour le",
            "a rendre le", "delai"),
    "priority": ("priority", "prio", "priorite", "urgency", "urgence", "importance"),
    "needs": ("needs", "need", "requires", "requirements", "besoins", "besoin", "necessite", "requis", "moyens"),
    "status": ("status", "state", "statut", "etat", "avancement"),
}

PRIORITY_WORDS: dict[str, int] = {
    **dict.fromkeys(("low", "basse", "bas", "faible", "minor", "mineure"), 0),
    **dict.fromkeys(("normal", "normale", "medium", "moyenne", "moyen", "standard"), 1),
    **dict.fromkeys(("high", "haute", "haut", "elevee", "eleve", "important", "importante"), 2),
    **dict.fromkeys(("urgent", "urgente", "critical", "critique", "tres urgent", "tres urgente", "asap"), 3),
}

STATUS_WORDS: dict[str, int] = {
    **dict.fromkeys(("open", "todo", "to do", "new", "ouvert", "ouverte", "a faire", "nouveau", "nouvelle"), 0),
    **dict.fromkeys(("in progress", "in_progress", "started", "ongoing", "en cours", "commence", "commencee"), 1),
    **dict.fromkeys(("done", "complete", "completed", "closed", "finished", "fait", "faite", "termine",
                     "terminee", "fini", "finie", "clos", "close"), 2),
    **dict.fromkeys(("blocked", "on hold", "bloque", "bloquee", "en attente", "suspendu", "suspendue"), 3),
}

NEED_WORDS: dict[str, int] = {
    **dict.fromkeys(("laptop", "computer", "pc", "ordinateur", "portable", "ordi"), int(Need.LAPTOP)),
    **dict.fromkeys(("internet", "online", "web", "connexion", "connection", "ligne", "reseau"), int(Need.INTERNET)),
    **dict.fromkeys(("office", "bureau", "onsite", "site", "place", "presentiel", "paper", "papier"), int(Need.OFFICE)),
}
_NEED_FILLER = {"and", "et", "a", "an", "the", "un", "une", "en", "on", "sur", "au", "de", "du", "le", "la", "none",
                "aucun", "aucune", "rien", "nothing"}

_MONTHS: dict[str, int] = {}
for _i, _names in enumerate((
    ("jan", "january", "janv", "janvier"), ("feb", "february", "fev", "fevr", "fevrier"), ("mar", "march", "mars"),
    ("apr", "april", "avr", "avril"), ("may", "mai"), ("jun", "june", "juin"), ("jul", "july", "juil", "juillet"),
    ("aug", "august", "aou", "aout"), ("sep", "sept", "september", "septembre"), ("oct", "october", "octobre"),
    ("nov", "november", "novembre"), ("dec", "december", "decembre"),
), start=1):
    for _n in _names:
        _MONTHS[_n] = _i
_WEEKDAY_WORDS = {"mon", "monday", "tue", "tuesday", "wed", "wednesday", "thu", "thursday", "fri", "friday", "sat",
                  "saturday", "sun", "sunday", "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche",
                  "lun", "mar", "mer", "jeu", "ven", "sam", "dim", "le", "the", "of"}

#: Territories that write the month first (05/12/2026 = May 12). Everyone else: day first.
MONTH_FIRST_TERRITORIES = frozenset({"US", "PH", "FM", "MH", "PW", "GU", "AS", "MP", "PR", "VI", "UM"})

_EXCEL_EPOCH = dt.date(1899, 12, 30)  # serial 1 = 1900-01-01 (with Lotus's leap-year bug), as LibreOffice
_NUMERIC_DATE = re.compile(r"^(\d{1,4})[/.\-](\d{1,2})[/.\-](\d{1,4})$")
_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[ t]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?$")


def fold(text: str) -> str:
    """Lowercase, no accents, punctuation as single spaces: how headers and words are compared."""
    t = unicodedata.normalize("NFKD", text)
    t = "".join(c for c in t if not unicodedata.combining(c)).lower()
    return " ".join(re.sub(r"[^a-z0-9]+", " ", t).split())


_HEADER_INDEX = {fold(s): field for field, syns in HEADER_SYNONYMS.items() for s in syns}


def header_field(header: str, mapping: Mapping[str, str] | None = None) -> str | None:
    """The task field a column header names ('-' from ``mapping``: ignore it), or None if unknown."""
    if mapping:
        for k, v in mapping.items():
            if fold(k) == fold(header):
                return v
    return _HEADER_INDEX.get(fold(header))


def locale_day_first(env: Mapping[str, str], system_locale: str | None = None) -> bool:
    """Day first unless the locale's territory writes the month first (en_US.UTF-8 -> False).

    ``env`` holds LC_ALL, LC_TIME, LANG (POSIX); ``system_locale`` is what the system reports when
    they are unset, as Windows names it ("English_United States") or POSIX does ("en_US").
    """
    for value in [env.get(v) for v in ("LC_ALL", "LC_TIME", "LANG")] + [system_locale]:
        if value:
            if "united states" in value.lower() or "philippines" in value.lower():
                return False
            m = re.match(r"^[a-zA-Z]{2,3}[_-]([A-Za-z]{2})\b", value)
            return not (m and m.group(1).upper() in MONTH_FIRST_TERRITORIES)
    return True


def cell_text(v: Any) -> str:
    """A cell as text: whole numbers without '.0' (a spreadsheet's 7 is not '7.0')."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()
    return str(v).strip()


def numeric_order(cells: Iterable[Any]) -> str | None:
    """'dmy' or 'mdy' if the file's numeric dates settle it, 'mixed' if they contradict, else None."""
    day_first = month_first = False
    for v in cells:
        if not isinstance(v, str):
            continue
        m = _NUMERIC_DATE.match(v.strip())
        if not m or len(m.group(1)) == 4:
            continue
        a, b = int(m.group(1)), int(m.group(2))
        day_first |= a > 12 >= b
        month_first |= b > 12 >= a
    if day_first and month_first:
        return "mixed"
    return "dmy" if day_first else "mdy" if month_first else None


def _year(y: str) -> int:
    n = int(y)
    return 2000 + n if len(y) <= 2 else n


def parse_due(v: Any, day_first: bool, today: dt.date | None = None) -> int | None:
    """A due date cell as days since 1970 (None if empty)."""
    if v is None or v == "":
        return None
    if isinstance(v, dt.datetime):
        return date_to_day(v.date())
    if isinstance(v, dt.date):
        return date_to_day(v)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        # A date cell stored as a serial number (a spreadsheet whose column lost its date format).
        if 20_000 <= v <= 80_000:
            return date_to_day(_EXCEL_EPOCH + dt.timedelta(days=int(v)))
        raise UsageError(_("due {v!r} is a number, not a date").format(v=cell_text(v)))
    text = str(v).strip()
    low = fold(text)
    try:
        m = _ISO.match(text.lower())
        if m:
            return date_to_day(dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3))))
        m = _NUMERIC_DATE.match(text)
        if m:
            a, b, c = m.groups()
            if len(a) == 4:  # 2026/12/05
                return date_to_day(dt.date(int(a), int(b), int(c)))
            d, mo = (int(a), int(b)) if day_first else (int(b), int(a))
            return date_to_day(dt.date(_year(c), mo, d))
        words = [w for w in low.split() if w not in _WEEKDAY_WORDS or w in _MONTHS]
        # "12 dec 2026", "dec 12 2026", "12 decembre 2026", "1er decembre 2026"
        words = [re.sub(r"^(\d{1,2})(?:er|st|nd|rd|th)$", r"\1", w) for w in words]
        months = [w for w in words if w in _MONTHS]
        nums = [w for w in words if w.isdigit()]
        if len(words) == 3 and len(months) == 1 and len(nums) == 2:
            dd, yy = (nums[1], nums[0]) if len(nums[0]) == 4 else (nums[0], nums[1])
            return date_to_day(dt.date(_year(yy), _MONTHS[months[0]], int(dd)))
    except ValueError:
        raise UsageError(_("due {text!r} is not a real date").format(text=text)) from None
    try:
        return views.parse_date(text, today)
    except UsageError:
        raise UsageError(_("due {text!r} is not a date I can read").format(text=text),
                         hint=_("write 2026-12-05, 05/12/2026 or 5 Dec 2026")) from None


def parse_priority(v: Any) -> int:
    t = fold(cell_text(v))
    if t in PRIORITY_WORDS:
        return PRIORITY_WORDS[t]
    raise UsageError(_("bad priority {v!r} (use low, normal, high or urgent)").format(v=cell_text(v)))


def parse_status(v: Any) -> int:
    t = fold(cell_text(v))
    if t in STATUS_WORDS:
        return STATUS_WORDS[t]
    raise UsageError(_("bad status {v!r} (use open, in progress, done or blocked)").format(v=cell_text(v)))


def parse_needs(v: Any) -> int:
    bits = 0
    for word in fold(cell_text(v)).split():
        if word in NEED_WORDS:
            bits |= NEED_WORDS[word]
        elif word not in _NEED_FILLER:
            raise UsageError(_("unknown need {word!r} (use laptop, internet and/or office)").format(word=word))
    return bits


def parse_assignee(v: Any) -> str | None:
    t = cell_text(v).lower()
    if not t or t == "-":
        return None
    if not is_member_name(t):
        raise UsageError(_("assignee {v!r} is not a valid member name").format(v=cell_text(v)))
    return t


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _kept(t: str | None) -> str:
    return _CONTROL.sub("", (t or "").replace("\r\n", "\n").replace("\r", "\n")).strip()


def same_text(a: str | None, b: str | None) -> bool:
    """Equal as a spreadsheet keeps text: surrounding spaces, control characters and the kind of
    line ending (a worksheet stores every one as \\n) do not count."""
    return _kept(a) == _kept(b)


def parse_text(v: Any, field: str, limit: int) -> str:
    t = cell_text(v)
    if t[:1] == "'" and t[1:2] in ("=", "+", "-", "@"):
        t = t[1:]  # the apostrophe an export puts before text a spreadsheet would run as a formula
    if len(t) > limit:
        raise UsageError(_("{field} is longer than {limit} characters").format(field=field, limit=limit))
    return t


LIMITS = {"title": 1024, "description": MAX_TEXT, "ref": MAX_REF}
