"""``hbw-audit verify FILE``: an auditor checks an evidence file offline (no store, no relay).

A small separate program on purpose: it reads one file (and, if given, the
relay's published key and a team key file), runs ``evidence.verify`` from the
sans-IO core, and says in words who changed what and when, from which device,
and every problem found. Exit 0 when everything holds; 65 (bad or tampered
data) when anything does not, so a script can tell.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from . import __version__, crypto, evidence, timefmt
from .cli_common import HbwGroup, emit, json_option, wants_json
from .errors import IntegrityError, UsageError, exit_code_for
from .fileio import reading
from .i18n import _, ngettext
from .ops import Priority, Status, day_to_date

MAX_KEY_FILE = 1024 * 1024


def _hex(text: str, n: int, what: str) -> bytes:
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raw = b""
    if len(raw) != n:
        raise UsageError(_("{what} must be {n} bytes in hex").format(what=what, n=n), code="usage.key")
    return raw


def read_key_file(path: Path) -> dict[int, crypto.TeamKey]:
    """Team keys from the file 'hbw-sync audit export --key-file' wrote: {"team": hex, "keys": {epoch: hex}}."""
    with reading(path):
        if path.stat().st_size > MAX_KEY_FILE:
            raise UsageError(_("{path} is too large to be a key file").format(path=path), code="usage.key")
        raw = path.read_bytes()
    try:
        doc = json.loads(raw)
        return {int(e): crypto.TeamKey(int(e), _hex(s, 32, "a team key")) for e, s in doc["keys"].items()}
    except (ValueError, KeyError, TypeError, AttributeError, UsageError):
        raise UsageError(_("{path} is not a team key file written by 'hbw-sync audit export --key-file'").format(
            path=path), code="usage.key") from None


def _value(name: str, v: Any) -> str:
    if isinstance(v, bytes):
        return v.hex()[:16] if len(v) <= 32 else _("({n} bytes)").format(n=len(v))
    if name == "status" and type(v) is int and 0 <= v <= 3:
        return Status(v).name.lower()
    if name == "priority" and type(v) is int and 0 <= v <= 3:
        return Priority(v).name.lower()
    if name in ("due", "away_until") and type(v) is int:
        return day_to_date(v).isoformat()
    if isinstance(v, str) and len(v) > 80:
        return repr(v[:77] + "...")
    return repr(v) if isinstance(v, str) else str(v)


def _plain(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def report_dict(r: evidence.Report) -> dict[str, Any]:
    return timefmt.machine_form(_plain({
        "ok": r.ok, "team": r.team, "relay_key": r.relay_pub, "relay_key_checked": r.relay_key_checked,
        "scope": {"member": r.scope.member, "task": r.scope.task, "since_ms": r.scope.since_ms,
                  "until_ms": r.scope.until_ms},
        "first_rseq": r.first_rseq, "last_rseq": r.last_rseq, "receipts_made_ms": r.made_ms,
        "exporter": r.exporter, "exported_ms": r.exported_ms, "devices": r.devices,
        "changes": [{"rseq": e.rseq, "member": e.member, "device": e.device, "batch": e.seq,
                     "received_ms": e.received_ms, "content_shown": e.content_shown,
                     "ops": [{"kind": c.kind, "entity": c.entity, "time_ms": c.time_ms, "fields": c.fields}
                             for c in e.changes]} for e in r.entries],
        "problems": [{"code": p.code, "message": p.message, "rseq": p.rseq} for p in r.problems],
    }))


def print_report(r: evidence.Report, path: Path) -> None:
    echo = click.echo
    echo(_("Evidence file {path}: team {team}, exported by {who} on {when}.").format(
        path=path, team=r.team.hex(), who=r.exporter, when=timefmt.human(r.exported_ms)))
    if r.relay_key_checked:
        echo(_("Relay receipts signed by the relay key you gave ({key}).").format(key=r.relay_pub.hex()[:16]))
    else:
        echo(_("Relay receipts signed by relay key {key}: compare it with the key office IT publishes, or give "
               "it with --relay-key.").format(key=r.relay_pub.hex()))
    cover = [_("team sequence {a} to {b}").format(a=r.first_rseq, b=r.last_rseq)]
    if r.scope.member:
        cover.append(_("changes from {member}'s devices").format(member=r.scope.member))
    if r.scope.task:
        cover.append(_("task {task}").format(task=r.scope.task.hex()[:8]))
    if r.scope.since_ms is not None or r.scope.until_ms is not None:
        cover.append(_("received from {a} to {b}").format(a=timefmt.human(r.scope.since_ms, never=_("the start")),
                                                          b=timefmt.human(r.scope.until_ms, never=_("export"))))
    echo(_("It covers: {what}.").format(what="; ".join(cover)))
    echo("")
    echo(_("Devices:"))
    for d in r.devices:
        line = _("  {member}, device {device} ({role}): enrolled by office IT {when}").format(
            member=d["member"], device=d["device"][:8], role=d["role"], when=timefmt.human(d["enrolled_ms"]))
        for a in d["approved_by"]:
            line += _("; approved by {who} (device {device}) {when}").format(
                who=a["member"], device=a["device"][:8], when=timefmt.human(a["time_ms"]))
        if not d["approved_by"]:
            line += _("; no supervisor approval in the file")
        if d["revoked_ms"] is not None:
            line += _("; REVOKED {when}").format(when=timefmt.human(d["revoked_ms"]))
        echo(line)
    echo("")
    echo(_("Changes ({n}), in the order the relay received them:").format(n=len(r.entries)))
    for e in r.entries:
        echo(_("  #{rseq} {member}, device {device}, received {when}:").format(
            rseq=e.rseq, member=e.member, device=e.device.hex()[:8], when=timefmt.human(e.received_ms)))
        for c in e.changes:
            fields = ", ".join(f"{k} = {_value(k, v)}" for k, v in c.fields.items())
            echo(_("      {kind} {entity} at {when}: {fields}").format(
                kind=c.kind, entity=c.entity.hex()[:8], when=timefmt.human(c.time_ms), fields=fields or "-"))
        if not e.content_shown:
            echo(_("      (content sealed: give --key-file to read titles, notes and documents)"))
    echo("")
    if r.ok:
        echo(_("Result: every signature, certificate and receipt holds; nothing within the range is missing."))
    else:
        echo(ngettext("Result: {n} problem found:", "Result: {n} problems found:", len(r.problems)).format(n=len(r.problems)))
        for p in r.problems:
            echo(f"  [{p.code}] {p.message}")


@click.group(cls=HbwGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hbw-audit")
def cli() -> None:
    """Check hbw-sync evidence files offline: signatures, device certificates, relay receipts.

    Exit codes: 0 everything holds; 2 bad input; 65 the file is damaged, altered,
    incomplete, or shows a change signed by a revoked device.
    """


@cli.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--relay-key", help="The relay's public key (64 hex digits) as office IT publishes it.")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path),
              help="The team key file from 'hbw-sync audit export --key-file', to show content too.")
@json_option
@click.pass_context
def verify_cmd(ctx: click.Context, file: Path, relay_key: str | None, key_file: Path | None) -> None:
    """Check FILE and say who changed what and when, from which device.

    Every batch's signature is checked against its device's enrolled key, each
    device's certificates (office IT's enrollment, a supervisor's approval,
    a revocation) against their signers, and the relay's signed receipts
    against the batches: a change altered, reordered or left out of the range
    the file covers, or signed by a revoked device after its revocation, is
    reported with its reason, and the exit code is 65.
    """
    pub = _hex(relay_key, 32, _("the relay key")) if relay_key else None
    keys = read_key_file(key_file) if key_file else None
    with reading(file):
        if file.stat().st_size > evidence.MAX_FILE:
            raise UsageError(_("{path} is larger than any evidence file hbw-audit reads").format(path=file))
        data = file.read_bytes()
    r = evidence.verify(data, pub, keys)
    emit(ctx, report_dict(r), lambda: print_report(r, file))
    if not r.ok:
        if not wants_json(ctx):
            click.echo(_("error: the evidence does not hold ({codes})").format(codes=", ".join(r.codes())), err=True)
        ctx.exit(exit_code_for(IntegrityError(_("evidence does not hold"))))


def main() -> None:
    cli(prog_name="hbw-audit")


if __name__ == "__main__":
    main()
