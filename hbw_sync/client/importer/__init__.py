"""Importing the week's plan from what supervisors make: .xlsx, .ods, CSV from any office program, JSON.

Split by job: ``tables`` reads a file into rows of cells (encodings, separators,
spreadsheets, bounds), ``values`` reads what people type in a cell (dates,
French and English words), ``plan`` decides what each row would do. An import
is all or nothing: every bad row is reported with its line (or row) number and,
unless the caller asks to skip bad rows, nothing is imported, so a
half-imported week never has to be cleaned up by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import UsageError
from ...i18n import _, ngettext
from .plan import ImportOptions, ImportPlan, RowPlan, plan_import
from .tables import FORMATS, MAX_IMPORT_BYTES, Table, read_table
from .values import COLUMNS, locale_day_first

if TYPE_CHECKING:
    from ..replica import Replica

__all__ = ["COLUMNS", "FORMATS", "MAX_IMPORT_BYTES", "ImportOptions", "ImportPlan", "RowPlan", "Table",
           "import_file", "locale_day_first", "plan_import", "read_table"]


def import_file(rep: "Replica", path: Path, opts: ImportOptions = ImportOptions(), *, fmt: str | None = None,
                sheet: str | None = None, dry_run: bool = False, skip_bad: bool = False) -> ImportPlan:
    """Plan an import and, unless ``dry_run``, carry it out as one atomic change.

    Raises:
        UsageError: the file cannot be read, its columns are unknown, or (without ``skip_bad``)
            any row is bad: the message lists every bad row, and nothing is imported.
    """
    table = read_table(path, fmt, sheet)
    plan = plan_import(table, rep.tasks(every=True), rep.member_names(), opts)
    if dry_run:
        return plan
    if plan.bad and not skip_bad:
        lines = plan.problem_lines()
        shown = lines[:20] + ([_("... and {n} more").format(n=len(lines) - 20)] if len(lines) > 20 else [])
        unknown = any(r.unknown_member for r in plan.bad)
        err = UsageError(ngettext("{n} bad row, nothing imported:", "{n} bad rows, nothing imported:", len(plan.bad)).format(n=len(plan.bad)) + "\n  " + "\n  ".join(shown),
                         code="usage.import_bad_rows",
                         hint=(_("a colleague whose device joined since this one last synced is known after a "
                                 "sync.") + " " if unknown else "") + _("Fix the rows and import again: it never "
                                                                        "duplicates"))
        err.unknown_member = unknown  # type: ignore[attr-defined]  # the CLI offers --new-member then
        raise err
    ids = rep.import_tasks(plan.creates(), plan.updates())
    for row, tid in zip((r for r in plan.rows if r.action == "create"), ids):
        row.task = tid.hex()
    return plan
