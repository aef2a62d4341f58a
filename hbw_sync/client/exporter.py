"""Writing tasks back out as a spreadsheet (.xlsx) or CSV, for the supervisor's report.

The columns are the ones ``task import`` reads (``importer.COLUMNS``), with the
task's full id first: a supervisor can export, edit the sheet, and import it
again, and every row updates the task it came from instead of adding one.

CSV is written as UTF-8 with a byte-order mark, which is how Excel on Windows
knows it is UTF-8 (without it, accented names come out garbled); the separator
is a comma unless asked otherwise (French Excel expects ';'). Dates in .xlsx
are real date cells, so the sheet sorts and filters them as dates.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from pathlib import Path
from typing import Any, Sequence

from .. import fileio
from ..errors import UsageError
from . import views
from .importer import COLUMNS
from ..i18n import _

EXPORT_FORMATS = ("csv", "xlsx")
#: Control characters a worksheet cannot hold (XML 1.0); dropped from .xlsx cells, ignored when
#: an import compares text (``importer.values.same_text``).
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
#: A cell starting with one of these is a formula to Excel and Calc. Text from colleagues must never
#: run as one on the supervisor's machine (CSV injection): CSV cells get a leading apostrophe, which
#: the importer removes again; .xlsx cells are stored as text, never as formulas.
FORMULA_START = ("=", "+", "-", "@")


def _row(t: views.TaskView) -> list[Any]:
    return [t.id, t.ref or "", t.title, t.description, t.assignee or "",
            dt.date.fromisoformat(t.due) if t.due else None, t.priority, ",".join(t.needs), t.status]


def _csv_text(v: Any) -> Any:
    return "'" + v if isinstance(v, str) and v.startswith(FORMULA_START) else v


def csv_bytes(tasks: Sequence[views.TaskView], separator: str = ",") -> bytes:
    """The tasks as CSV text in UTF-8 with a BOM; dates as YYYY-MM-DD (read the same in every locale)."""
    buf = io.StringIO(newline="")
    w = csv.writer(buf, delimiter=separator, lineterminator="\r\n")
    w.writerow(COLUMNS)
    for t in tasks:
        w.writerow([v.isoformat() if isinstance(v, dt.date) else _csv_text(v) for v in _row(t)])
    return buf.getvalue().encode("utf-8-sig")


def xlsx_bytes(tasks: Sequence[views.TaskView], sheet: str = "Tasks") -> bytes:
    """The tasks as an .xlsx workbook: a bold, frozen header row, date cells, readable widths."""
    from openpyxl import Workbook  # imported here: only exports to .xlsx need it
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    ws.title = sheet
    ws.append(list(COLUMNS))
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for t in tasks:
        ws.append([_ILLEGAL.sub("", v) if isinstance(v, str) else v for v in _row(t)])
        for cell in ws[ws.max_row]:
            if isinstance(cell.value, str) and cell.value.startswith(FORMULA_START):
                cell.data_type = "s"  # text, not a formula
    due_col = COLUMNS.index("due") + 1
    for (cell,) in ws.iter_rows(min_row=2, min_col=due_col, max_col=due_col):
        cell.number_format = "yyyy-mm-dd"
    ws.freeze_panes = "A2"
    widths = {"id": 18, "ref": 10, "title": 40, "description": 40, "assignee": 12, "due": 12, "priority": 10,
              "needs": 18, "status": 12}
    for i, name in enumerate(COLUMNS):
        ws.column_dimensions[chr(ord("A") + i)].width = widths[name]
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def export_tasks(tasks: Sequence[views.TaskView], path: Path, fmt: str | None = None, *, separator: str = ",",
                 force: bool = False) -> dict[str, Any]:
    """Write ``tasks`` to ``path`` (format from the extension unless ``fmt``): atomic, readable by its owner only.

    Raises:
        UsageError: unknown format, the file exists (without ``force``), or it cannot be written.
    """
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in EXPORT_FORMATS:
        raise UsageError(_("cannot tell which format to write for {name}").format(name=path.name), hint=_("name it .xlsx or .csv"))
    if separator not in (",", ";", "\t"):
        raise UsageError(_("separator {separator!r}: use ',', ';' or a tab").format(separator=separator))
    if path.exists() and not force:
        raise UsageError(_("{path} exists; nothing written").format(path=path), hint=_("choose another name, or pass --force to replace it"))
    data = xlsx_bytes(tasks) if fmt == "xlsx" else csv_bytes(tasks, separator)
    try:
        # 0600: the export is the team's work in clear, not for whoever else uses this computer.
        fileio.write_private(path, data)
    except OSError as e:
        raise UsageError(_("cannot write {path}: {v}; nothing written").format(path=path, v=e.strerror or e)) from None
    return {"path": str(path), "format": fmt, "tasks": len(tasks), "bytes": len(data)}
