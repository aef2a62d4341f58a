"""Reading a week's plan from a spreadsheet export (CSV) or JSON.

Supervisors plan in spreadsheets. An import is all or nothing: every bad row is
reported with its line number, and if there is one, nothing is imported, so a
half-imported week never has to be cleaned up by hand.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ..errors import HbwError, UsageError
from ..ops import is_member_name
from . import views

COLUMNS = ("title", "description", "assignee", "due", "priority", "needs")
MAX_IMPORT_BYTES = 16 * 1024 * 1024


def _row(raw: dict[str, Any]) -> dict[str, Any]:
    """One row's values, parsed; raises UsageError naming the bad field."""
    out: dict[str, Any] = {}
    unknown = [k for k in raw if k not in COLUMNS]
    if unknown:
        raise UsageError(f"unknown column(s) {', '.join(map(repr, unknown))}; expected: {', '.join(COLUMNS)}")
    for k, v in raw.items():
        if v is not None and not isinstance(v, (str, int)):
            raise UsageError(f"{k}: expected text, got {type(v).__name__}")
    title = str(raw.get("title") or "").strip()
    if not title:
        raise UsageError("title is empty")
    out["title"] = title
    out["description"] = str(raw.get("description") or "")
    assignee = str(raw.get("assignee") or "").strip().lower()
    if assignee:
        if not is_member_name(assignee):
            raise UsageError(f"assignee {assignee!r} is not a valid member name")
        out["assignee"] = assignee
    due = str(raw.get("due") or "").strip()
    if due:
        out["due"] = views.parse_date(due)
    pri = str(raw.get("priority") or "").strip()
    out["priority"] = views.parse_priority(pri) if pri else 1
    out["needs"] = views.parse_needs(str(raw.get("needs") or ""))
    return out


def _json_items(text: str) -> list[tuple[int, Any]]:
    """The items of a top-level JSON array (or {"tasks": [...]}) with the line each starts on."""
    dec = json.JSONDecoder()
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"line {e.lineno}: not valid JSON ({e.msg})") from None
    if isinstance(whole, dict) and isinstance(whole.get("tasks"), list):
        start = text.index("[", text.index('"tasks"'))
    elif isinstance(whole, list):
        start = text.index("[")
    else:
        raise UsageError("line 1: expected a JSON array of tasks, or an object with a \"tasks\" array")
    items = []
    pos = start + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            break
        obj, end = dec.raw_decode(text, pos)
        items.append((text.count("\n", 0, pos) + 1, obj))
        pos = end
    return items


def parse_import(path: Path, fmt: str | None = None) -> list[dict[str, Any]]:
    """Parse an import file into task rows, or raise one UsageError listing every bad line."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_IMPORT_BYTES:
            raise UsageError(f"{path} is larger than {MAX_IMPORT_BYTES} bytes; split it")
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"no such file: {path}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text", hint="export the spreadsheet as 'CSV UTF-8'") from None
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    items: list[tuple[int, Any]]
    if fmt == "json":
        items = _json_items(text)
    elif fmt in ("csv", "txt", "tsv"):
        try:
            dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t") if text.strip() else csv.excel
        except csv.Error:
            dialect = csv.excel
        reader = csv.DictReader(io.StringIO(text), dialect=dialect)
        if not reader.fieldnames:
            raise UsageError("line 1: the file is empty; expected a header row with at least 'title'")
        reader.fieldnames = [(f or "").strip().lower() for f in reader.fieldnames]
        if "title" not in reader.fieldnames:
            raise UsageError(f"line 1: no 'title' column in the header (found: {', '.join(reader.fieldnames)})")
        items = []
        for rec in reader:
            if None in rec:
                items.append((reader.line_num, {"__extra__": rec.pop(None)}))
                continue
            if not any((v or "").strip() for v in rec.values()):
                continue  # blank spreadsheet rows
            items.append((reader.line_num, {k: v for k, v in rec.items() if k}))
    else:
        raise UsageError(f"cannot tell the format of {path.name}", hint="name it .csv or .json, or pass --format")
    rows, errors = [], []
    for line, raw in items:
        if not isinstance(raw, dict):
            errors.append(f"line {line}: expected an object with task fields")
            continue
        if "__extra__" in raw:
            errors.append(f"line {line}: more cells than header columns")
            continue
        try:
            rows.append(_row(raw))
        except HbwError as e:
            errors.append(f"line {line}: {e}")
    if errors:
        shown = errors[:20] + ([f"... and {len(errors) - 20} more"] if len(errors) > 20 else [])
        raise UsageError(f"{len(errors)} bad row(s), nothing imported:\n  " + "\n  ".join(shown))
    if not rows:
        raise UsageError("the file holds no tasks")
    return rows
