"""Planning an import: which rows create tasks, which update one, and what is wrong with each row.

The plan is computed before anything is written, from the file and the tasks
this device already holds, so ``--dry-run`` shows exactly what an import would
do. A row matches an existing task by, in order: its ``id`` (a file written by
``task export``), its ``ref`` (the supervisor's own row key), or, for rows with
neither, its title and due date. Matching is what makes a re-import idempotent:
importing the same file twice changes nothing the second time.

An update changes only what the file says differently. An empty cell leaves a
field as it is (work done in the app is not undone by a sheet that left it
blank), and a re-import never reopens a task someone marked done or blocked.
A deleted task is not brought back.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

from ...errors import HbwError, UsageError
from ...ops import Priority, Status, day_to_date
from .. import views
from . import values as V
from .tables import MAX_COLUMNS, SPREADSHEETS, Cell, Table
from ...i18n import N_, _, ngettext

#: The code of "assignee is not in the team": the CLI offers --new-member for it, in any language.
UNKNOWN_MEMBER = "usage.unknown_member"


@dataclass(frozen=True)
class ImportOptions:
    """How to read a file. ``day_first`` None: decide from the file's own dates, then ``locale_day_first``."""

    mapping: Mapping[str, str] = field(default_factory=dict)  # header -> field name, or "-" to ignore
    day_first: bool | None = None
    locale_day_first: bool = True
    new_members: frozenset[str] = frozenset()  # accepted although this device has not seen them join


@dataclass
class RowPlan:
    line: int
    action: str  # create, update, unchanged, skip, bad
    title: str = ""
    task: str | None = None  # the existing task's id (update, unchanged, skip)
    values: dict[str, Any] = field(default_factory=dict)  # create: every field; update: the changed ones
    before: dict[str, Any] = field(default_factory=dict)  # update: the values they replace
    problems: list[str] = field(default_factory=list)
    note: str = ""
    unknown_member: bool = False  # a problem is an assignee this device does not know (yet)


@dataclass
class ImportPlan:
    source: str
    unit: str  # "line" (CSV, JSON) or "row" (spreadsheets): what the person sees in their program
    columns: dict[str, str]
    date_order: str  # "day first" / "month first"
    rows: list[RowPlan] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for r in self.rows if r.action == action)

    @property
    def bad(self) -> list[RowPlan]:
        return [r for r in self.rows if r.action == "bad"]

    def creates(self) -> list[dict[str, Any]]:
        return [r.values for r in self.rows if r.action == "create"]

    def updates(self) -> list[tuple[bytes, dict[str, Any]]]:
        return [(bytes.fromhex(r.task), r.values) for r in self.rows if r.action == "update" and r.task]

    def problem_lines(self) -> list[str]:
        return [_("{unit} {line}: {problem}").format(unit=_(self.unit), line=r.line, problem=p)
                for r in self.bad for p in r.problems]

    def summary(self) -> str:
        parts = [_("{n} to create").format(n=self.count("create")), _("{n} to update").format(n=self.count("update")),
                 _("{n} unchanged").format(n=self.count("unchanged"))]
        if self.count("skip"):
            parts.append(_("{n} skipped").format(n=self.count("skip")))
        parts.append(_("{n} bad").format(n=len(self.bad)))
        return ngettext("{source}: {n} task row: {parts}.", "{source}: {n} task rows: {parts}.", len(self.rows)).format(source=self.source, n=len(self.rows),
                                                              parts=", ".join(parts))

    def describe(self) -> list[str]:
        """One line per row, in words, for ``--dry-run``."""
        out = []
        for r in self.rows:
            where = _("{unit} {line}").format(unit=_(self.unit), line=r.line)
            task = r.task[:6] if r.task else ""
            if r.action == "bad":
                out.append("  " + _("{where}: BAD: {problems}").format(where=where, problems="; ".join(r.problems)))
            elif r.action == "create":
                out.append("  " + _("{where}: create {title!r}").format(where=where, title=r.title) + _details(r.values))
            elif r.action == "update":
                changes = ", ".join(f"{k} {_show(k, r.before.get(k))} -> {_show(k, v)}" for k, v in r.values.items())
                out.append("  " + _("{where}: update {task} {title!r}: {changes}").format(
                    where=where, task=task, title=r.title, changes=changes))
            elif r.action == "skip":
                out.append("  " + _("{where}: skip {task} {title!r}: {note}").format(
                    where=where, task=task, title=r.title, note=r.note))
            else:
                out.append("  " + _("{where}: unchanged {task} {title!r}").format(where=where, task=task, title=r.title))
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for r in d["rows"]:
            for part in ("values", "before"):
                r[part] = {k: _show(k, v) for k, v in r[part].items()}
        d["counts"] = {a: self.count(a) for a in ("create", "update", "unchanged", "skip", "bad")}
        return d


def _show(name: str, v: Any) -> Any:
    if v is None:
        return None
    if name == "due":
        return day_to_date(v).isoformat() if isinstance(v, int) else v
    if name == "priority":
        return views.PRIORITY_NAMES[Priority(v)] if isinstance(v, int) else v
    if name == "status":
        return views.STATUS_NAMES[Status(v)] if isinstance(v, int) else v
    if name == "needs":
        return ",".join(views.needs_to_names(v)) or "nothing" if isinstance(v, int) else v
    return v


def show_value(name: str, v: Any) -> Any:
    """A row's value as a person reads it (a date, a priority's name): for previews outside this module."""
    return _show(name, v)


def _details(values: dict[str, Any]) -> str:
    bits = []
    if values.get("assignee"):
        bits.append(_("for {member}").format(member=values["assignee"]))
    if values.get("due") is not None:
        bits.append(_("due {day}").format(day=_show("due", values["due"])))
    if values.get("priority") not in (None, 1):
        bits.append(_show("priority", values["priority"]))
    if values.get("needs"):
        bits.append(_("needs {what}").format(what=_show("needs", values["needs"])))
    return (", " + ", ".join(bits)) if bits else ""


# -- columns ------------------------------------------------------------------------------------


def _empty(c: Cell) -> bool:
    return c is None or (isinstance(c, str) and not c.strip())


def check_mapping(mapping: Mapping[str, str]) -> None:
    for header, name in mapping.items():
        if name != "-" and name not in V.COLUMNS:
            raise UsageError(_("--map {header}={name}: {name!r} is not a task field").format(header=header, name=name),
                             hint="fields: " + ", ".join(V.COLUMNS) + "; '-' ignores the column")


def _columns(headers: list[Cell], mapping: Mapping[str, str], unit: str, line: int,
             data_in: set[int], need_title: bool = True) -> dict[int, str]:
    """Column index -> field; raises one UsageError naming every unknown or doubled column."""
    cols: dict[int, str] = {}
    unknown: list[str] = []
    seen: dict[str, str] = {}
    for i, h in enumerate(headers):
        text = V.cell_text(h)
        if not text:
            if i in data_in:
                unknown.append(f"column {i + 1} (no header)")
            continue
        name = V.header_field(text, mapping)
        if name is None:
            close = difflib.get_close_matches(V.fold(text), list(V._HEADER_INDEX), n=1, cutoff=0.75)
            unknown.append(repr(text) + (f" (did you mean {V._HEADER_INDEX[close[0]]}?)" if close else ""))
        elif name == "-":
            continue
        elif name in seen:
            raise UsageError(_("{unit} {line}: columns {v!r} and {text!r} both give the {name}").format(unit=unit, line=line, v=seen[name], text=text, name=name),
                             hint=_("ignore one with --map '{text}=-'").format(text=text))
        else:
            seen[name] = text
            cols[i] = name
    if need_title and "title" not in cols.values():
        found = ", ".join(V.cell_text(h) for h in headers if not _empty(h))
        raise UsageError(_("{unit} {line}: no 'title' column in the header (found: {found})").format(unit=unit, line=line, found=found),
                         hint=_("name the column of task titles 'title' (or 'titre', 'task'), or "
                               "--map 'HEADER=title'"))
    if unknown:
        raise UsageError(ngettext("{unit} {line}: unknown column {unknown}; task fields are: {COLUMNS}",
                                  "{unit} {line}: unknown columns {unknown}; task fields are: {COLUMNS}", len(unknown)).format(unit=unit, line=line, unknown=', '.join(unknown), COLUMNS=', '.join(V.COLUMNS)),
                         hint=_("rename the column, or map it: --map 'HEADER=FIELD' ('-' ignores it)"))
    return cols


def _unit(table: Table) -> str:
    """What a person calls a position in the file: a spreadsheet's row, a text file's line."""
    return N_("row") if table.records is None and table.kind in SPREADSHEETS else N_("line")


def records(table: Table, opts: ImportOptions) -> tuple[list[tuple[int, dict[str, Cell]]], dict[str, str]]:
    """The file's task rows as {field: cell}, with their line or row numbers, and the column names used."""
    unit = _unit(table)
    if table.records is not None:  # JSON objects: keys are headers
        out = []
        keys: dict[str, str] = {}
        for line, obj in table.records:
            headers = list(obj)
            # An object without a title is a bad row ("title is empty"), not a file without a title column.
            cols = _columns(headers, opts.mapping, unit, line, set(range(len(headers))), need_title=False)
            out.append((line, {cols[i]: obj[h] for i, h in enumerate(headers) if i in cols}))
            keys.update({h: cols[i] for i, h in enumerate(headers) if i in cols})
        return out, keys
    rows = [(n, r) for n, r in table.rows if not all(_empty(c) for c in r)]
    if not rows:
        raise UsageError(_("{unit} 1: the file is empty; expected a header row with at least 'title'").format(unit=unit))
    # The header is the first row naming a title column (a sheet may open with its own heading).
    head_at = 0
    for k, (_line, r) in enumerate(rows[:10]):
        if any(V.header_field(V.cell_text(c), opts.mapping) == "title" for c in r if not _empty(c)):
            head_at = k
            break
    line, headers = rows[head_at]
    if len(headers) > MAX_COLUMNS and any(not _empty(c) for c in headers[MAX_COLUMNS:]):
        raise UsageError(_("{unit} {line}: more than {MAX_COLUMNS} columns; this is not a task list").format(unit=unit, line=line, MAX_COLUMNS=MAX_COLUMNS))
    body = rows[head_at + 1:]
    data_in = {i for _line, r in body for i, c in enumerate(r) if not _empty(c)}
    cols = _columns(list(headers), opts.mapping, unit, line, data_in)
    out = []
    for n, r in body:
        rec: dict[str, Cell] = {name: (r[i] if i < len(r) else None) for i, name in cols.items()}
        if any(not _empty(c) for c in r[len(headers):]):
            rec["__extra__"] = True
        out.append((n, rec))
    return out, {V.cell_text(headers[i]): name for i, name in cols.items()}


# -- rows ---------------------------------------------------------------------------------------


def _parse(rec: dict[str, Cell], day_first: bool, members: set[str],
           opts: ImportOptions) -> tuple[dict[str, Any], list[str], bool]:
    vals: dict[str, Any] = {}
    problems: list[str] = []
    unknown = False
    if rec.get("__extra__"):
        problems.append(_("more cells than header columns"))
    for name, cell in rec.items():
        if name == "__extra__" or _empty(cell):
            continue
        try:
            if name in V.LIMITS:
                vals[name] = V.parse_text(cell, name, V.LIMITS[name])
            elif name == "id":
                vals["id"] = V.cell_text(cell).lower()
            elif name == "assignee":
                a = V.parse_assignee(cell)
                if a is not None and a not in members and a not in opts.new_members:
                    close = difflib.get_close_matches(a, sorted(members), n=1, cutoff=0.75)
                    hint = " " + (_("(did you mean {name!r}?)").format(name=close[0]) if close else
                                  _("(members this device knows: {names})").format(names=", ".join(sorted(members))))
                    raise UsageError(_("assignee {a!r} is not in the team{hint}").format(a=a, hint=hint),
                                     code=UNKNOWN_MEMBER)
                vals["assignee"] = a
            elif name == "due":
                vals["due"] = V.parse_due(cell, day_first)
            elif name == "priority":
                vals["priority"] = V.parse_priority(cell)
            elif name == "needs":
                vals["needs"] = V.parse_needs(cell)
            elif name == "status":
                vals["status"] = V.parse_status(cell)
        except HbwError as e:
            problems.append(str(e))
            unknown = unknown or e.code == UNKNOWN_MEMBER
    if not vals.get("title"):
        problems.append(_("title is empty"))
    return vals, problems, unknown


def _existing_values(t: views.TaskView) -> dict[str, Any]:
    return {
        "title": t.title, "description": t.description or None, "assignee": t.assignee,
        "due": views.parse_date(t.due) if t.due else None, "priority": views.parse_priority(t.priority),
        "needs": views.parse_needs(",".join(t.needs)), "status": views.parse_status(t.status), "ref": t.ref,
    }


def plan_import(table: Table, existing: Iterable[views.TaskView], members: Iterable[str],
                opts: ImportOptions = ImportOptions()) -> ImportPlan:
    """What importing ``table`` would do, given this device's tasks and members. Writes nothing."""
    check_mapping(opts.mapping)
    recs, columns = records(table, opts)
    order = V.numeric_order(rec.get("due") for _line, rec in recs)
    if opts.day_first is not None:
        day_first = opts.day_first
    elif order in ("dmy", "mdy"):
        day_first = order == "dmy"
    else:
        day_first = opts.locale_day_first
    unit = _unit(table)
    plan = ImportPlan(table.source, unit, columns, N_("day first") if day_first else N_("month first"))
    tasks = list(existing)
    by_id = {t.id: t for t in tasks}
    by_ref: dict[str, list[views.TaskView]] = {}
    by_title: dict[tuple[str, str | None], list[views.TaskView]] = {}
    for t in tasks:
        if t.ref:
            by_ref.setdefault(t.ref, []).append(t)
        by_title.setdefault((V.fold(t.title), t.due), []).append(t)
    member_set = set(members)
    seen_keys: dict[tuple[str, Any], int] = {}
    for line, rec in recs:
        vals, problems, unknown = _parse(rec, day_first, member_set, opts)
        row = RowPlan(line, "bad", title=vals.get("title", ""), problems=problems, unknown_member=unknown)
        plan.rows.append(row)
        if problems:
            continue
        due_iso = views.format_day(vals.get("due"))
        if "id" in vals:
            key: tuple[str, Any] = ("id", vals["id"])
        elif "ref" in vals:
            key = ("ref", vals["ref"])
        else:
            key = ("title", (V.fold(vals["title"]), due_iso))
        if key in seen_keys:
            row.problems.append((_("the same task as {unit} {line} (same title and due date)") if key[0] == "title"
                                 else _("the same task as {unit} {line} (same {key})")).format(
                unit=_(unit), line=seen_keys[key], key=key[0]))
            continue
        seen_keys[key] = line
        match: list[views.TaskView] = []
        if "id" in vals:
            hits = [t for i, t in by_id.items() if len(vals["id"]) >= 6 and i.startswith(vals["id"])]
            if not hits:
                row.problems.append(_("no task with id {id!r} on this device").format(id=vals["id"]))
                continue
            match = hits
        elif "ref" in vals:
            match = by_ref.get(vals["ref"], []) or [
                t for t in by_title.get((V.fold(vals["title"]), due_iso), []) if not t.ref]
        else:
            match = by_title.get((V.fold(vals["title"]), due_iso), [])
        if len(match) > 1:
            row.problems.append(_("matches {n} tasks ({ids}); give each row a ref to tell them apart").format(
                n=len(match), ids=", ".join(t.short for t in match)))
            continue
        vals.pop("id", None)
        if not match:
            row.action = "create"
            row.values = {"status": int(Status.OPEN), "priority": 1, "needs": 0, **vals}
            continue
        t = match[0]
        row.task = t.id
        if t.deleted:
            row.action, row.note = "skip", _("deleted by {who}; not brought back").format(who=t.deleted_by)
            continue
        old = _existing_values(t)
        changes = {k: v for k, v in vals.items()
                   if not (V.same_text(old.get(k), v) if k in V.LIMITS else old.get(k) == v)}
        if changes.get("status") == int(Status.OPEN):
            del changes["status"]  # a re-import never reopens a task
        row.action = "update" if changes else "unchanged"
        row.values = changes
        row.before = {k: old.get(k) for k in changes}
    if not plan.rows:
        raise UsageError(_("the file holds no tasks"))
    return plan
