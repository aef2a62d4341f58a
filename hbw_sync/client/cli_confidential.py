"""``hbw-sync doc confidential`` and the words ``doc list``/``doc get`` use for confidential documents.

The rules live in the library (``Documents.mark_confidential``, ``export_doc``); this module
only parses, calls and prints. Kept out of ``cli.py`` so the document commands there gain a line
each, not a block.
"""

from __future__ import annotations

from typing import Callable

import click

from ..cli_common import is_interactive, json_option, wants_json
from ..errors import UsageError
from ..i18n import _, ngettext
from . import views
from .replica import Replica


def marks(d: views.DocView) -> str:
    """What ``doc list`` adds after a document's name: the mark and how often it left the store."""
    if not d.confidential:
        return ""
    text = "  " + _("[confidential]")
    if d.exports and not d.conflict_of:
        last = d.exports[-1]
        text += " " + ngettext("exported {n} time, last by {who} at {when}",
                               "exported {n} times, last by {who} at {when}", len(d.exports)).format(
            n=len(d.exports), who=last.by, when=last.at or "?")
    return text


def ask_reason(ctx: click.Context, view: views.DocView, reason: str | None) -> str | None:
    """The reason for writing a confidential document out: --reason, or asked for at a terminal only.

    Never a prompt when stdin is not a terminal (a script, a pipe, CI): the library then refuses
    with ``usage.reason_required`` and the CLI says how to give one.
    """
    if not view.confidential or (reason or "").strip() or wants_json(ctx) or not is_interactive():
        return reason
    click.echo(_("Document {doc} ({name}) is confidential. Your reason is recorded, with your name, this device "
                 "and the time, for your supervisor.").format(doc=view.short, name=view.name), err=True)
    return click.prompt(_("Reason"), default="", show_default=False, err=True)


def export_refused(e: UsageError) -> UsageError:
    """The library's refusal with the front end's hint (the flag is this CLI's)."""
    if e.code == "usage.reason_required" and not e.hint:
        e.hint = _("give one with --reason \"...\", e.g. --reason \"printing for the council meeting\"")
    return e


def register(doc: click.Group, replica: Callable[[click.Context], Replica],
             emit: Callable[..., None]) -> None:
    """Add ``doc confidential`` to the ``doc`` group."""

    @doc.command("confidential")
    @click.argument("doc_id")
    @click.option("--off", is_flag=True, help="Clear the mark instead.")
    @json_option
    @click.pass_context
    def doc_confidential(ctx: click.Context, doc_id: str, off: bool) -> None:
        """Mark a document confidential for the whole team (its author or a supervisor).

        Writing a confidential document outside hbw-sync ('doc get', the app's download) then
        needs a reason, and every such export is recorded (who, device, when, why) as a change
        every device and the audit evidence show. It does not stop screenshots or photos of the
        screen, and copies written before the mark are not affected.
        """
        d = replica(ctx).mark_confidential(doc_id, not off)
        text = (_("Document {doc} ({name}) is now confidential: writing it outside hbw-sync needs a reason, and each "
                  "time is recorded for the team.") if d.confidential else
                _("Document {doc} ({name}) is no longer marked confidential.")).format(doc=d.short, name=d.name)
        emit(ctx, d.to_dict(), text)
