"""Reading a supervisor's file into rows of cells: CSV in any common encoding, .xlsx, .ods, JSON.

Every input is bounded before it is trusted: the file's size, a spreadsheet's
uncompressed size (read from its zip directory before anything is inflated),
the number of rows and columns, each cell's length.

CSV encodings are detected in a fixed, documented order, so the same bytes
always read the same way: a byte-order mark (UTF-8, UTF-16 LE/BE); UTF-16
without a mark (a NUL in every other byte); strict UTF-8; then Windows-1252
(what Excel and LibreOffice Calc write by default on Windows, a superset of
Latin-1's printable characters), and Latin-1 for the five bytes Windows-1252
leaves undefined. The separator is the one of ``, ; TAB |`` that splits the
header into the most columns and the first rows into as many.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ... import fileio
from ...errors import UsageError
from ...i18n import _

MAX_IMPORT_BYTES = 16 * 1024 * 1024
MAX_UNZIPPED = 128 * 1024 * 1024  # a 16 MB .xlsx inflating past this is a zip bomb, not a week's plan
MAX_ROWS = 10_000
MAX_COLUMNS = 64
SEPARATORS = (",", ";", "\t", "|")
SPREADSHEETS = ("xlsx", "xlsm", "ods")
FORMATS = ("csv", "json", *SPREADSHEETS)

Cell = Any  # str | int | float | bool | datetime.date | datetime.datetime | None


@dataclass
class Table:
    """Rows of cells with the line (CSV, JSON) or row number (spreadsheet) a person would look at."""

    source: str  # "week.csv (Windows-1252, ';')", "plan.xlsx, sheet 'Semaine 49'"
    kind: str = "csv"  # csv, json, xlsx, xlsm, ods
    rows: list[tuple[int, list[Cell]]] = field(default_factory=list)
    records: list[tuple[int, dict[str, Cell]]] | None = None  # JSON: objects, not rows


def decode(data: bytes) -> tuple[str, str]:
    """Text and the encoding's name, in the order the module docstring gives."""
    boms = ((b"\xef\xbb\xbf", "utf-8-sig", "UTF-8"), (b"\xff\xfe", "utf-16-le", "UTF-16"),
            (b"\xfe\xff", "utf-16-be", "UTF-16"))
    for bom, codec, name in boms:
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(codec), name
            except UnicodeDecodeError:
                raise UsageError(_("the file starts as {name} but is not valid {name}").format(name=name)) from None
    sample = data[:4096]
    if len(sample) >= 4 and sample[1::2].count(0) > len(sample) // 4 and sample[0::2].count(0) == 0:
        codec = "utf-16-le"
    elif len(sample) >= 4 and sample[0::2].count(0) > len(sample) // 4 and sample[1::2].count(0) == 0:
        codec = "utf-16-be"
    else:
        codec = ""
    if codec:
        try:
            return data.decode(codec), "UTF-16"
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "Windows-1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "Latin-1"


def sniff_separator(text: str) -> str:
    """The separator that gives the header the most columns and the first rows as many."""
    lines = [ln for ln in text.splitlines()[:50] if ln.strip()]
    if not lines:
        return ","
    best, best_score = ",", (0, 0.0, 0)
    for sep in SEPARATORS:
        rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=sep))
        if not rows:
            continue
        width = len(rows[0])
        if width < 2:
            continue
        same = sum(1 for r in rows[1:] if len(r) == width or (len(r) > width and not any(c.strip() for c in r[width:])))
        score = (1, (same + 1) / len(rows), width)
        if score > best_score:
            best, best_score = sep, score
    return best


def _read_csv(path: Path, data: bytes) -> Table:
    text, encoding = decode(data)
    sep = sniff_separator(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    names = {",": "comma", ";": "semicolon", "\t": "tab", "|": "bar"}
    table = Table(f"{path.name} ({encoding}, {names[sep]}-separated)")
    try:
        start = 1
        for row in reader:
            table.rows.append((start, row))
            start = reader.line_num + 1
            if len(table.rows) > MAX_ROWS:
                raise UsageError(_("{name} has more than {MAX_ROWS} rows; split it").format(name=path.name, MAX_ROWS=MAX_ROWS))
    except csv.Error as e:
        raise UsageError(_("line {line_num}: {e}").format(line_num=reader.line_num, e=e)) from None
    return table


def _read_json(path: Path, data: bytes) -> Table:
    text, _encoding = decode(data)
    dec = json.JSONDecoder()
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(_("line {lineno}: not valid JSON ({msg})").format(lineno=e.lineno, msg=e.msg)) from None
    if isinstance(whole, dict) and isinstance(whole.get("tasks"), list):
        start = text.index("[", text.index('"tasks"'))
    elif isinstance(whole, list):
        start = text.index("[")
    else:
        raise UsageError(_('line 1: expected a JSON array of tasks, or an object with a "tasks" array'))
    table = Table(path.name, "json", records=[])
    assert table.records is not None
    pos = start + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            break
        obj, end = dec.raw_decode(text, pos)
        line = text.count("\n", 0, pos) + 1
        if not isinstance(obj, dict):
            raise UsageError(_("line {line}: expected an object with task fields").format(line=line))
        for k, v in obj.items():
            if v is not None and not isinstance(v, (str, int, float, bool)):
                raise UsageError(_("line {line}: {k}: expected text, got {name__}").format(line=line, k=k, name__=type(v).__name__))
        table.records.append((line, obj))
        if len(table.records) > MAX_ROWS:
            raise UsageError(_("{name} has more than {MAX_ROWS} tasks; split it").format(name=path.name, MAX_ROWS=MAX_ROWS))
        pos = end
    return table


def _read_spreadsheet(path: Path, sheet: str | None) -> Table:
    # Bounded before trusted: the zip directory says how far the sheets would inflate.
    try:
        with zipfile.ZipFile(path) as z:
            unzipped = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, OSError):
        raise UsageError(_("{name} is not a readable spreadsheet (damaged, or not really .{v})").format(name=path.name, v=path.suffix[1:]),
                         hint=_("open it in Excel or LibreOffice Calc and save it again")) from None
    if unzipped > MAX_UNZIPPED:
        raise UsageError(_("{name} would unpack to more than {v} MB; that is not a week's plan").format(name=path.name, v=MAX_UNZIPPED // 2**20))
    from python_calamine import CalamineWorkbook  # imported here: only imports of spreadsheets need it

    try:
        wb = CalamineWorkbook.from_path(str(path))
        names = list(wb.sheet_names)
        if sheet is not None and sheet not in names:
            raise UsageError(_("{name} has no sheet {sheet!r}").format(name=path.name, sheet=sheet), hint="its sheets: " + ", ".join(names))
        ws = wb.get_sheet_by_name(sheet) if sheet is not None else wb.get_sheet_by_index(0)
        if ws.height > MAX_ROWS + 50 or ws.width > 4 * MAX_COLUMNS:
            raise UsageError(_("{name}: sheet {name2!r} has {height} rows and {width} columns; at most "
                  "{MAX_ROWS} rows of tasks fit in one import").format(name=path.name, name2=ws.name, height=ws.height, width=ws.width, MAX_ROWS=MAX_ROWS))
        data = ws.to_python(skip_empty_area=False)
    except (UsageError, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # calamine's errors, and a Rust panic (pyo3 raises it as a BaseException)
        raise UsageError(_("{name} is not a readable spreadsheet ({name__})").format(name=path.name, name__=type(e).__name__),
                         hint=_("open it in Excel or LibreOffice Calc and save it again")) from None
    table = Table(f"{path.name}, sheet {ws.name!r}", path.suffix.lstrip(".").lower())
    for i, row in enumerate(data, start=1):
        table.rows.append((i, [_cell(c) for c in row]))
    return table


def _cell(c: Any) -> Cell:
    if isinstance(c, str):
        return c.strip()
    if isinstance(c, (dt.time, dt.timedelta)):
        return str(c)
    return c


def read_table(path: Path, fmt: str | None = None, sheet: str | None = None) -> Table:
    """Read an import file into a Table; raises UsageError with what to do on anything unreadable."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt in ("txt", "tsv"):
        fmt = "csv"
    if fmt not in FORMATS:
        raise UsageError(_("cannot tell the format of {name}").format(name=path.name),
                         hint=_("name it .csv, .xlsx, .ods or .json, or pass --format"))
    with fileio.reading(path):
        if path.stat().st_size > MAX_IMPORT_BYTES:
            raise UsageError(_("{name} is larger than {v} MB; split it").format(name=path.name, v=MAX_IMPORT_BYTES // 2**20))
        if fmt in SPREADSHEETS:
            return _read_spreadsheet(path, sheet)
        data = path.read_bytes()
    if data[:4] == b"PK\x03\x04" and fmt == "csv":
        raise UsageError(_("{name} is a spreadsheet file, not CSV text").format(name=path.name), hint=_("name it .xlsx or .ods"))
    return _read_json(path, data) if fmt == "json" else _read_csv(path, data)
