"""``hbw-relay equipment ...``: the equipment register on the command line, each command one ``admin`` call.

Why: office IT must be able to say which laptop (asset tag, serial, model) was
lent to whom and when, whether it came back, and which was lost; a lost one's
device is revoked in the same step (issue 17 item 2). ``list --csv`` is the
export for a spreadsheet or an inventory; ``--json`` for scripts (times ISO 8601 UTC).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import click

from .. import timefmt
from ..cli_common import emit, is_interactive, json_option
from ..i18n import _
from . import admin

#: The CSV export's columns, in order (times ISO 8601 UTC, empty when not set).
CSV_COLUMNS = ("asset", "serial", "model", "state", "holder", "lent", "returned", "lost", "device", "note", "added")


def state_words(row: dict[str, Any]) -> str:
    if row["state"] == "lost":
        return _("LOST {when}").format(when=timefmt.human(row["lost_ms"]))
    if row["state"] == "lent":
        return _("lent to {member} since {when}").format(member=row["holder"], when=timefmt.human(row["lent_ms"]))
    if row["returned_ms"]:
        return _("in stock (returned by {member} {when})").format(member=row["holder"],
                                                                  when=timefmt.human(row["returned_ms"]))
    return _("in stock")


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")  # CRLF: what Excel writes and reads
    w.writerow(CSV_COLUMNS)
    for r in rows:
        m = timefmt.machine_form(r)
        w.writerow([m.get(c) or "" for c in CSV_COLUMNS])
    return buf.getvalue()


def register(cli: click.Group, group_cls: type[click.Group], data_option: Any) -> None:
    """Add the ``equipment`` group to ``cli`` (the relay's root command)."""

    @cli.group(cls=group_cls)
    def equipment() -> None:
        """The equipment register: laptops and dongles lent to officials, returned, or lost.

        'add' records an asset tag; 'lend' and 'return' record who has it;
        'lost' marks it lost and revokes the device on it. 'hbw-relay invite
        --asset TAG' ties the device that joins to that equipment.
        """

    @equipment.command("add")
    @data_option
    @click.argument("asset")
    @click.option("--serial", help="Serial number, as on the label.")
    @click.option("--model", help="Make and model, e.g. 'ThinkPad T14'.")
    @click.option("--note", help="Anything else IT wants to remember (charger, dongle...).")
    @json_option
    @click.pass_context
    def add(ctx: click.Context, data: Path, asset: str, serial: str | None, model: str | None,
            note: str | None) -> None:
        """Record equipment under its ASSET tag (in stock until lent)."""
        r = admin.equipment_add(data, asset, serial, model, note)
        emit(ctx, timefmt.machine_form(r), _("Recorded {tag} in the register, in stock.").format(tag=r["asset"]))

    @equipment.command("lend")
    @data_option
    @click.argument("asset")
    @click.argument("member")
    @click.option("--device", metavar="ID", help="The enrolled device on it (id or prefix, see 'hbw-relay devices').")
    @json_option
    @click.pass_context
    def lend(ctx: click.Context, data: Path, asset: str, member: str, device: str | None) -> None:
        """Record that ASSET is lent to MEMBER from now."""
        r = admin.equipment_lend(data, asset, member, device)
        text = _("{tag} is lent to {member} from {when}.").format(tag=r["asset"], member=r["holder"],
                                                                   when=timefmt.human(r["lent_ms"]))
        if r["device"]:
            text += " " + _("Its device is {device}.").format(device=r["device"][:8])
        emit(ctx, timefmt.machine_form(r), text)

    @equipment.command("return")
    @data_option
    @click.argument("asset")
    @json_option
    @click.pass_context
    def return_(ctx: click.Context, data: Path, asset: str) -> None:
        """Record that ASSET came back today."""
        r = admin.equipment_return(data, asset)
        text = _("{tag} is back from {member}, in stock.").format(tag=r["asset"], member=r["holder"])
        if r["device_active"]:
            text += "\n" + _("Its device {device} is still enrolled. If the laptop will be wiped or lent to someone "
                             "else, revoke it: hbw-relay devices revoke {device}").format(device=r["device"][:8])
        emit(ctx, timefmt.machine_form(r), text)

    @equipment.command("lost")
    @data_option
    @click.argument("asset")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask to confirm (for scripts).")
    @json_option
    @click.pass_context
    def lost(ctx: click.Context, data: Path, asset: str, yes: bool) -> None:
        """Mark ASSET lost and revoke the device on it: it can no longer sync (cannot be undone).

        The next supervisor device to sync rotates the team key, so the lost
        laptop cannot read anything new. Asks to confirm unless --yes.
        """
        if not yes:
            if not is_interactive():
                raise click.UsageError(_("marking {tag} lost revokes its device and cannot be undone: add --yes to "
                                         "confirm").format(tag=asset))
            if not click.confirm(_("Mark {tag} lost and revoke its device?").format(tag=asset), default=False,
                                 err=True):
                click.echo(_("Nothing changed."), err=True)
                ctx.exit(1)
        r = admin.equipment_lost(data, asset)
        text = _("{tag} is recorded as lost.").format(tag=r["asset"])
        if r["revoked"]:
            text += " " + _("Its device {device} ({member}) is revoked: it can no longer sync. The team key will "
                            "rotate at the next supervisor sync.").format(device=r["revoked"][:8],
                                                                          member=r["holder"])
        elif r["device"]:
            text += " " + _("Its device {device} was already revoked.").format(device=r["device"][:8])
        else:
            text += " " + _("No enrolled device is recorded on it, so none was revoked; check 'hbw-relay devices'.")
        emit(ctx, timefmt.machine_form(r), text)

    @equipment.command("list")
    @data_option
    @click.option("--csv", "as_csv", is_flag=True, help="Print the register as CSV (for a spreadsheet).")
    @json_option
    @click.pass_context
    def list_(ctx: click.Context, data: Path, as_csv: bool) -> None:
        """The register: every asset, who has it since when, returned or lost, and its device."""
        rows = admin.equipment_list(data)
        if as_csv:
            click.echo(to_csv(rows), nl=False)
            return

        def text() -> None:
            if not rows:
                click.echo(_("The register is empty: add equipment with 'hbw-relay equipment add TAG'."))
            for r in rows:
                what = " ".join(x for x in (r["model"], r["serial"] and f"[{r['serial']}]") if x)
                dev = _("device {device}").format(device=r["device"][:8]) if r["device"] else ""
                click.echo(f"{r['asset']:12}  {what:28}  {state_words(r)}  {dev}".rstrip())

        emit(ctx, timefmt.machine_form(rows), text)
