"""``hbw-sync audit export``: a supervisor writes an evidence file an auditor checks offline (see audit.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from .. import timefmt
from ..cli_common import HbwGroup, emit, json_option
from ..errors import UsageError
from ..i18n import _
from . import audit as auditing
from .cli_passphrase import current_passphrase


def _home(ctx: click.Context) -> Path | None:
    return ctx.find_root().params.get("home")


def parse_when(text: str | None, end: bool = False) -> int | None:
    """'2026-12-01' (local day: its start, or with ``end`` its last millisecond) or an ISO 8601 time."""
    if text is None:
        return None
    t = text.strip()
    try:
        if len(t) == 10:
            day = dt.datetime.combine(dt.date.fromisoformat(t), dt.time()).astimezone()
            return int(day.timestamp() * 1000) + (86_400_000 - 1 if end else 0)
        when = dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.astimezone()
        return int(when.timestamp() * 1000)
    except ValueError:
        raise UsageError(_("bad date {text!r}").format(text=text), code="usage.date",
                         hint=_("e.g. 2026-12-01 or 2026-12-01T14:00")) from None


@click.group(cls=HbwGroup)
def audit() -> None:
    """Evidence for an outside auditor: signed changes, device certificates, relay receipts."""


@audit.command("export")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--member", help="Only changes made from this member's devices.")
@click.option("--task", "task_id", help="Only changes to this task and its documents (an id prefix).")
@click.option("--since", help="From this day or time (when the relay received the change), e.g. 2026-12-01.")
@click.option("--until", help="Up to this day (included) or time.")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the team key to this file, so the auditor can read content. Hand it over "
                   "separately: whoever holds it reads every change of the team.")
@json_option
@click.pass_context
def export_cmd(ctx: click.Context, out: Path, member: str | None, task_id: str | None, since: str | None,
               until: str | None, key_file: Path | None) -> None:
    """Write OUT, an evidence file for an auditor (a supervisor's device; asks the relay).

    The file holds the changes concerned exactly as their authors' devices
    signed them, who each device belongs to (enrolled by office IT, approved
    by a supervisor, revoked when), and the relay's signed receipts for the
    whole range, so that a change left out is noticed. The auditor checks it
    with 'hbw-audit verify OUT', with no access to the team or the relay.
    """
    r = auditing.export(_home(ctx), current_passphrase(), out, member=member, task=task_id,
                        since_ms=parse_when(since), until_ms=parse_when(until, end=True), key_file=key_file)
    text = _("Wrote {file} ({size}): {n} signed changes, with the relay's receipts for team sequence {first} "
             "to {last}.").format(file=r["file"], size=timefmt.human_bytes(r["bytes"]), n=r["batches"],
                                  first=r["first_rseq"], last=r["last_rseq"])
    text += "\n" + _("The auditor checks it with: hbw-audit verify {file} --relay-key {key}").format(
        file=r["file"], key=r["relay_key"])
    if r["key_file"]:
        text += "\n" + _("The team key is in {path}: give it to the auditor by another way than the file, and "
                         "only if they must read the content.").format(path=r["key_file"])
    emit(ctx, timefmt.machine_form(r), text)


def register(cli: click.Group) -> None:
    cli.add_command(audit)
