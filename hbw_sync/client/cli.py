"""The ``hbw-sync`` command line: a thin layer over ``Device`` and ``Replica``.

Each command is one library call plus formatting. Commands that read or change
content need the passphrase (``HBW_PASSPHRASE``, or a prompt at a terminal);
``status`` and, later, ``sync`` do not, so a scheduler never meets a prompt.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click

from .. import __version__
from .. import wordcode
from ..enroll import Invite
from ..errors import TransientError, UsageError, exit_code_for
from ..ops import MAX_CAPACITY, Status
from .. import timefmt
from ..i18n import _, ngettext
from ..cli_common import HbwGroup, is_interactive, json_option, wants_json
from ..cli_common import emit as _emit
from . import bundles, exporter, importer, retry, sync as syncing, views
from . import team as teams
from . import watch as watching
from .cli_progress import Tally, json_event, progress_for, progress_option
from .cli_config import client_config, from_environment
from .cli_passphrase import current_passphrase, env_passphrase, new_passphrase
from .cli_passphrase import register as register_passphrase
from .cli_app import register_app
from .cli_schedule import register as register_schedule
from .cli_audit import register as register_audit
from .cli_docs import register as register_doc_policy
from .cli_language import register as register_language
from .cli_tray import register as register_tray
from . import cli_confidential as confidential
from .passphrase import RECOVERY
from .device import Device
from .device import now_ms as device_now_ms
from .replica import Replica
from .store import DB_NAME, default_home


def parse_size(text: str) -> int:
    """'200KB', '1.5MB', '64KiB' or plain bytes."""
    t = text.strip().upper().replace(" ", "")
    units = {"KIB": 1024, "MIB": 1024**2, "KB": 1000, "MB": 1000**2, "K": 1000, "M": 1000**2, "B": 1}
    for u, mult in units.items():
        if t.endswith(u):
            t, m = t[: -len(u)], mult
            break
    else:
        m = 1
    try:
        n = int(float(t) * m)
    except ValueError:
        raise UsageError(_("bad size {text!r}").format(text=text), hint=_("e.g. 200KB, 1MB, 65536")) from None
    if n < 1024:
        raise UsageError(_("the budget must be at least 1KB"))
    return n


human_bytes = timefmt.human_bytes


def changes_words(n: int) -> str:
    """"1 change" / "3 changes" in the person's language (never "change(s)")."""
    return ngettext("{n} change", "{n} changes", n).format(n=n)


def batches_words(n: int) -> str:
    return ngettext("{n} batch", "{n} batches", n).format(n=n)


def emit(ctx: click.Context, data: Any, text: Any = None) -> None:
    """``cli_common.emit`` with every time in JSON in the one form (``timefmt.machine_form``)."""
    _emit(ctx, timefmt.machine_form(data), text)


def local_time(ms: int | None, never: str | None = None) -> str:
    """A time as a person reads it: ``today 18:05 (2 h ago)``, in this computer's time zone."""
    if ms is None:
        return _("never") if never is None else never
    now = device_now_ms()
    return f"{timefmt.when(ms, now)} ({timefmt.ago(ms, now)})" if now - ms < 7 * 86_400_000 else timefmt.when(ms, now)


def local_iso(text: str | None, never: str = "-") -> str:
    """``local_time`` for a view's ISO 8601 UTC string (task ``updated``, note ``at``)."""
    if not text:
        return never
    try:
        ms = int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return text
    return timefmt.when(ms, device_now_ms())


def _home(ctx: click.Context) -> Path | None:
    return ctx.find_root().params.get("home")


def _device(ctx: click.Context) -> Device:
    dev = Device.open(_home(ctx))
    ctx.call_on_close(dev.close)
    return dev


def _replica(ctx: click.Context) -> Replica:
    return _device(ctx).unlock(current_passphrase())


@click.group(cls=HbwGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hbw-sync")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="HBW_SYNC_HOME",
    help="Directory of the local store (default: your user data directory; env HBW_SYNC_HOME).",
)
@click.pass_context
def cli(ctx: click.Context, home: Path | None) -> None:
    """Work on your team's tasks and documents offline; sync when a link allows.

    Everything works with no network. Changes wait in the outbox, signed and
    encrypted, until a sync (or a bundle by email or USB stick) carries them.
    Commands that show or change content ask for your passphrase (or read
    HBW_PASSPHRASE); 'status', 'sync', 'watch' and 'bundle export' need none,
    so a scheduler never meets a prompt, and a stale HBW_PASSPHRASE does not
    stop them (sync warns). Choosing one ('init', 'join', 'passphrase change')
    asks twice, or reads HBW_NEW_PASSPHRASE; a weak one is refused.

    Exit codes: 0 ok, 2 bad input, 65 bad or tampered data, 74 local store or
    disk problem, 75 try again later, 76 needs a newer version, 77 not allowed
    (wrong passphrase, revoked device), 78 not set up yet.
    """
    ctx.obj = from_environment(home)  # built once, passed down (client/config.py)


@cli.command()
@click.option("--name", required=True, help="Your member name in the team, e.g. 'amina' (lowercase).")
@click.option("--relay", "relay_url", help="The office relay's URL, if you know it already.")
@json_option
@click.pass_context
def init(ctx: click.Context, name: str, relay_url: str | None) -> None:
    """Create this device's identity and an empty, encrypted local store.

    You choose a passphrase (asked twice; or HBW_NEW_PASSPHRASE / HBW_PASSPHRASE
    for scripts): it protects everything you write at rest. A weak one is
    refused. A lost passphrase means enrolling the device again: the team's
    data comes back from the relay; only changes not yet sent are lost.
    """
    dev = Device.init(_home(ctx), name, new_passphrase([name], current_env_too=True), relay_url)
    ident = dev.identity
    dev.close()
    emit(ctx, {"member": ident.member, "device": ident.device_id.hex(), "home": str(dev.store.home),
               "recovery": RECOVERY},
         _("Device {hex} ready for {member} in {home}.\n{RECOVERY}\nNext: 'hbw-sync team "
               "create NAME' (first official of a team) or 'hbw-sync join INVITE'.").format(hex=ident.device_id.hex(), member=ident.member, home=dev.store.home, RECOVERY=RECOVERY))


@cli.group(cls=HbwGroup)
def team() -> None:
    """Your team: create one locally, invite and approve devices, rotate the key (supervisors)."""


@team.command("create")
@click.argument("name")
@json_option
@click.pass_context
def team_create(ctx: click.Context, name: str) -> None:
    """Start team NAME on this device (you become its supervisor)."""
    rep = _replica(ctx)
    rep.create_team(name)
    emit(ctx, {"team": name, "team_id": rep.require_team().hex()}, _("Team {name!r} created. You can add tasks now.").format(name=name))


@team.command("invite")
@click.argument("member")
@click.option("--role", type=click.Choice(["member", "supervisor"]), default="member", show_default=True,
              help="The role the invited device gets.")
@click.option("--days", default=14, show_default=True, type=click.IntRange(1, 90), help="Days the invite stays valid.")
@json_option
@click.pass_context
def team_invite(ctx: click.Context, member: str, role: str, days: int) -> None:
    """Invite MEMBER's device; it gets the team key when it joins, with no code to compare.

    The invite holds a secret the relay never sees: give it to the person only
    (in person, on paper, or by a channel you trust), never through the relay.
    """
    inv = teams.make_invite(_home(ctx), current_passphrase(), member, role, days)
    text = inv.encode()
    emit(ctx, {"invite": text, "member": inv.member, "role": inv.role, "days": days},
         _("Invite for {member} ({role}), valid {days} days. Give it to them yourself; it is "
               "secret:\n{text}\nThey run: hbw-sync join INVITE").format(member=inv.member, role=inv.role, days=days, text=text))


def _when(ms: int | None) -> str:
    return local_time(ms) if ms else _("an unknown time")


@team.command("pending")
@json_option
@click.pass_context
def team_pending(ctx: click.Context) -> None:
    """Devices that joined through office IT and wait for your approval (syncs first)."""
    r = teams.pending(_home(ctx), current_passphrase())

    def text() -> None:
        if r["note"]:
            click.echo(_("Could not refresh from the relay: {note}").format(note=r['note']))
        if not r["pending"]:
            click.echo(_("No device waits for your approval."))
        for p in r["pending"]:
            click.echo(_("{member} ({role}): device {v} '{label}', waiting since {when}").format(member=p['member'], role=p['role'], v=p['device'][:8], label=p['label'], when=_when(p['since_ms'])))
        if r["pending"]:
            click.echo(_("Ask the person for the code their device shows, then: hbw-sync team approve "
                  "CODE (or: hbw-sync team reject CODE)."))

    emit(ctx, r, text)


@team.command("approve")
@click.argument("code", nargs=-1, required=True)
@click.option("--role", type=click.Choice(["member", "supervisor"]), default="member", show_default=True,
              help="What you admit the device as: only a supervisor's device may approve others.")
@json_option
@click.pass_context
def team_approve(ctx: click.Context, code: tuple[str, ...], role: str) -> None:
    """Admit the device that shows CODE (20 digits): it gets the team key at once."""
    r = teams.approve(_home(ctx), current_passphrase(), " ".join(code), role)
    msg = _("Approved {member}'s device {device} '{label}' as {role}: it receives the team key at its next "
            "sync.").format(member=r["member"], device=r["device"][:8], label=r["label"], role=r["role"])
    if r["enrolled_as"] == "supervisor" and role != "supervisor":
        msg += "\n" + _("Office IT enrolled it as a supervisor; you approved it as a member, so other devices do "
                        "not take its approvals. If it is a supervisor's, approve it with --role supervisor.")
    if r["note"]:
        msg += "\n" + _("The approval is saved here and {note}.").format(note=r["note"])
    emit(ctx, r, msg)


@team.command("reject")
@click.argument("code", nargs=-1, required=True)
@json_option
@click.pass_context
def team_reject(ctx: click.Context, code: tuple[str, ...]) -> None:
    """Refuse the device that shows CODE: the relay revokes it and it never gets a key."""
    r = teams.reject(_home(ctx), current_passphrase(), " ".join(code))
    msg = _("Rejected device {device} (enrolled as {member}); it gets no key.").format(device=r["device"][:8],
                                                                                       member=r["member"])
    if r["note"]:
        msg += "\n" + _("The rejection is saved here and {note}.").format(note=r["note"])
    emit(ctx, r, msg)


@team.command("rotate")
@json_option
@click.pass_context
def team_rotate(ctx: click.Context) -> None:
    """Make a new team key now (after a device was revoked) and share it with every approved device."""
    r = teams.rotate(_home(ctx), current_passphrase())
    msg = _("Team key rotated to epoch {epoch}; approved devices receive it at their next sync.").format(epoch=r["epoch"])
    if r["note"]:
        msg += "\n" + _("The new key is kept here and {note}.").format(note=r["note"])
    emit(ctx, r, msg)


def print_waiting(items: list[dict[str, Any]]) -> None:
    """The key flow's waits, in words: who, since when, what to do."""
    for w in items:
        n = int(w.get("devices") or 0)
        what = {"approval": _("This device waits for a supervisor's approval"),
                "welcome": _("This device waits for the team key from the supervisor who invited you"),
                "key grant": _("This device waits for the team key"),
                "key rotation": _("New changes wait for the team key's rotation"),
                "unlock": _("The team key has arrived for this device"),
                "your unlocked sync": ngettext("{n} approved device waits for the team key from this device",
                                               "{n} approved devices wait for the team key from this device",
                                               n).format(n=n),
                "your approval": _("{member}'s device {device} '{label}' waits for your approval").format(
                    member=w.get("member"), device=str(w.get("device"))[:8], label=w.get("label"))}[w["waits_for"]]
        click.echo(_("{what} (since {when}).").format(what=what, when=_when(w.get('since_ms'))))
        if w.get("code"):
            click.echo(_("  Code to show your supervisor: {code}").format(code=w['code']))
        click.echo(_("  What to do: {todo}").format(todo=w['todo']))


# -- tasks ---------------------------------------------------------------------------------------


@cli.group(cls=HbwGroup)
def task() -> None:
    """Add, list, change and import tasks. IDs may be shortened to any unambiguous prefix."""


def _print_tasks(tasks: list[views.TaskView]) -> None:
    if not tasks:
        click.echo(_("No tasks."))
        return
    click.echo(f"{_('ID'):6}  {_('STATUS'):11}  {_('PRI'):6}  {_('DUE'):10}  {_('ASSIGNEE'):10}  {_('NEEDS'):16}  "
               f"{_('TITLE')}")
    for t in tasks:
        click.echo(
            f"{t.short:6}  {t.status:11}  {t.priority:6}  {t.due or '-':10}  {t.assignee or '-':10}  "
            f"{','.join(t.needs) or '-':16}  {t.title}" + ("  " + _("[pinned]") if t.pinned else "")
        )


def _print_task(t: views.TaskView) -> None:
    click.echo(_("Task {v}  ({id})").format(v=t.id[:6], id=t.id))
    click.echo(_("  Title:       {title}").format(title=t.title))
    click.echo(_("  Status:      {status}").format(status=t.status))
    click.echo(_("  Assignee:    {v}").format(v=t.assignee or '-'))
    click.echo(_("  Due:         {v}").format(v=t.due or '-'))
    click.echo(_("  Priority:    {priority}").format(priority=t.priority))
    click.echo(_("  Needs:       {v}").format(v=', '.join(t.needs) or _('nothing special')))
    if t.pinned:
        click.echo(_("  Pinned:      yes (rebalancing will not move it)"))
    if t.ref:
        click.echo(_("  Ref:         {ref} (from the imported spreadsheet)").format(ref=t.ref))
    if t.deleted:
        who, _sep, at = (t.deleted_by or "").partition(" at ")
        if at:
            click.echo(_("  Deleted:     yes, by {who}, {at} (kept here and in the audit; it is in no list)").format(
                who=who, at=local_iso(at)))
        else:
            click.echo(_("  Deleted:     yes, by {who} (kept here and in the audit; it is in no list)").format(who=who))
    elif t.archived:
        click.echo(_("  Archived:    yes (in no list, rebalancing or workload; 'task archive --undo' "
              "brings it back)"))
    click.echo(_("  Updated:     {updated}").format(updated=local_iso(t.updated)))
    if t.description:
        click.echo(_("  Description:"))
        for line in t.description.splitlines():
            click.echo(f"    {line}")
    for n in t.notes:
        click.echo(_("  Note ({by}, {at}): {text}").format(by=n.by, at=local_iso(n.at), text=n.text))
    for d in t.docs:
        click.echo(_("  Document:    {v}").format(v=d[:6]))
    for c in t.conflicts:
        click.echo(_("  Conflict:    {field}: {detail}").format(field=c['field'], detail=c['detail']))


def _task_options(f: Any) -> Any:
    for opt in reversed(
        [
            click.option("--description", "-d", help="Longer text: what to do, context."),
            click.option("--assign", "assignee", help="Member who should do it ('-' for nobody)."),
            click.option("--due", help="Due date: YYYY-MM-DD, today, tomorrow, +3d ('none' clears)."),
            click.option("--priority", type=click.Choice(["low", "normal", "high", "urgent"]), help="Priority."),
            click.option("--needs", help="What doing it requires: internet,laptop,office ('none' clears)."),
        ]
    ):
        f = opt(f)
    return f


def _assignee(value: str | None) -> str | None:
    return None if value in (None, "-", "") else value.strip().lower()


@task.command("add")
@click.argument("title")
@_task_options
@json_option
@click.pass_context
def task_add(ctx: click.Context, title: str, description: str | None, assignee: str | None, due: str | None,
             priority: str | None, needs: str | None) -> None:
    """Add a task called TITLE (assigned to you unless --assign says otherwise)."""
    rep = _replica(ctx)
    t = rep.add_task(
        title,
        description=description or "",
        assignee=_assignee(assignee) if assignee is not None else rep.identity.member,
        due=views.parse_date(due) if due else None,
        priority=views.parse_priority(priority) if priority else 1,
        needs=views.parse_needs(needs) if needs else 0,
    )
    emit(ctx, t.to_dict(), _("Added task {short}: {title}").format(short=t.short, title=t.title))


@task.command("list")
@click.option("--mine", is_flag=True, help="Only tasks assigned to you.")
@click.option("--status", type=click.Choice(["open", "in_progress", "done", "blocked"]), help="Only tasks in this status.")
@click.option("--assignee", help="Only tasks assigned to this member.")
@click.option("--archived", is_flag=True, help="Only archived tasks (they are hidden otherwise).")
@json_option
@click.pass_context
def task_list(ctx: click.Context, mine: bool, status: str | None, assignee: str | None, archived: bool) -> None:
    """List tasks: open work first, by priority and due date. Archived and deleted tasks are not listed."""
    tasks = _replica(ctx).tasks(mine=mine, status=views.parse_status(status) if status else None, assignee=assignee,
                                archived=archived)
    emit(ctx, [t.to_dict() for t in tasks], lambda: _print_tasks(tasks))


@task.command("show")
@click.argument("task_id")
@json_option
@click.pass_context
def task_show(ctx: click.Context, task_id: str) -> None:
    """Show everything about one task: fields, notes, documents, conflicts."""
    t = _replica(ctx).task(task_id)
    emit(ctx, t.to_dict(), lambda: _print_task(t))


@task.command("edit")
@click.argument("task_id")
@click.option("--title", help="New title.")
@_task_options
@click.option("--status", type=click.Choice(["open", "in_progress", "done", "blocked"]), help="New status.")
@click.option("--pin/--unpin", default=None, help="Pin so rebalancing never moves it (supervisors).")
@json_option
@click.pass_context
def task_edit(ctx: click.Context, task_id: str, title: str | None, description: str | None, assignee: str | None,
              due: str | None, priority: str | None, needs: str | None, status: str | None, pin: bool | None) -> None:
    """Change fields of a task; only the options given change."""
    values: dict[str, Any] = {}
    if title is not None:
        values["title"] = title
    if description is not None:
        values["description"] = description
    if assignee is not None:
        values["assignee"] = _assignee(assignee)
    if due is not None:
        values["due"] = views.parse_date(due)
    if priority is not None:
        values["priority"] = views.parse_priority(priority)
    if needs is not None:
        values["needs"] = views.parse_needs(needs)
    if status is not None:
        values["status"] = views.parse_status(status)
    rep = _replica(ctx)
    if pin is not None:
        if rep.store.meta("role") != "supervisor":
            raise UsageError(_("only a supervisor can pin or unpin a task"))
        values["pinned"] = pin
    t = rep.edit_task(task_id, **values)
    emit(ctx, t.to_dict(), _("Updated task {short}: {title}").format(short=t.short, title=t.title))


@task.command("assign")
@click.argument("task_id")
@click.argument("member")
@json_option
@click.pass_context
def task_assign(ctx: click.Context, task_id: str, member: str) -> None:
    """Give a task to MEMBER ('-' to unassign)."""
    t = _replica(ctx).assign(task_id, _assignee(member))
    emit(ctx, t.to_dict(), _("Task {short} is now assigned to {v}.").format(short=t.short, v=t.assignee or 'nobody'))


@task.command("start")
@click.argument("task_id")
@json_option
@click.pass_context
def task_start(ctx: click.Context, task_id: str) -> None:
    """Mark a task as in progress."""
    t = _replica(ctx).set_status(task_id, Status.IN_PROGRESS)
    emit(ctx, t.to_dict(), _("Task {short} is in progress.").format(short=t.short))


@task.command("done")
@click.argument("task_id")
@json_option
@click.pass_context
def task_done(ctx: click.Context, task_id: str) -> None:
    """Mark a task as done."""
    t = _replica(ctx).set_status(task_id, Status.DONE)
    emit(ctx, t.to_dict(), _("Task {short} is done.").format(short=t.short))


@task.command("note")
@click.argument("task_id")
@click.argument("text")
@json_option
@click.pass_context
def task_note(ctx: click.Context, task_id: str, text: str) -> None:
    """Add a note to a task (notes are never overwritten, even offline)."""
    t = _replica(ctx).note(task_id, text)
    emit(ctx, t.to_dict(), _("Note added to task {short}.").format(short=t.short))


@task.command("archive")
@click.argument("task_ids", nargs=-1, required=True)
@click.option("--undo", is_flag=True, help="Bring archived tasks back into lists and rebalancing.")
@json_option
@click.pass_context
def task_archive(ctx: click.Context, task_ids: tuple[str, ...], undo: bool) -> None:
    """Put tasks away: they leave lists, rebalancing and workload, and keep everything written on them."""
    rep = _replica(ctx)
    ids = [rep.task(t).id for t in task_ids]  # every id resolves before anything changes
    done = [rep.archive_task(t, undo=undo) for t in ids]
    line = (_("Task {short} ({title}) is back in the lists.") if undo else
            _("Task {short} ({title}) is archived ('task list --archived' shows it; --undo brings it back)."))
    emit(ctx, [t.to_dict() for t in done], "\n".join(line.format(short=t.short, title=t.title) for t in done))


@task.command("delete")
@click.argument("task_ids", nargs=-1, required=True)
@click.option("--yes", is_flag=True, help="Do not ask to confirm (scripts).")
@json_option
@click.pass_context
def task_delete(ctx: click.Context, task_ids: tuple[str, ...], yes: bool) -> None:
    """Delete tasks for the whole team (supervisors). Cannot be undone; the history stays in the audit.

    A delete wins over changes others make to the task at the same time, offline.
    """
    rep = _replica(ctx)
    shown = [rep.task(t) for t in task_ids]  # every id resolves before anything is deleted
    if not yes:
        if not is_interactive():
            raise UsageError(_("deleting cannot be undone, and there is no terminal to confirm on; nothing deleted"),
                             hint=_("pass --yes to delete without asking"))
        listing = ", ".join(f"{t.short} ({t.title})" for t in shown)
        if not click.confirm(_("Delete {listing} for the whole team? This cannot be undone").format(listing=listing), err=True):
            raise UsageError(_("not confirmed; nothing deleted"))
    done = [rep.delete_task(t.id) for t in shown]
    emit(ctx, [t.to_dict() for t in done],
         "\n".join(_("Task {short} ({title}) is deleted; its history stays in the audit.").format(
             short=t.short, title=t.title) for t in done))


def _system_locale() -> str | None:
    """The system's locale name where no LANG is set (Windows): 'English_United States', 'fr_FR'."""
    import locale

    try:
        return locale.getlocale(locale.LC_TIME)[0] or locale.getlocale()[0]
    except (ValueError, AttributeError):
        return None


@task.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(list(importer.FORMATS)),
              help="File format (default: from the extension).")
@click.option("--sheet", help="Which sheet of a spreadsheet (default: the first).")
@click.option("--map", "maps", multiple=True, metavar="HEADER=FIELD",
              help="Read column HEADER as FIELD (title, description, assignee, due, priority, needs, status, "
                   "ref, id); FIELD '-' ignores the column. Repeatable.")
@click.option("--day-first/--month-first", "day_first", default=None,
              help="How to read 05/12/2026 (default: from the file's other dates, then your locale).")
@click.option("--new-member", "new_members", multiple=True, metavar="NAME",
              help="Accept NAME as an assignee although their device has not joined yet. Repeatable.")
@click.option("--dry-run", is_flag=True, help="Show what would be created or updated, and every row's problem; "
                                              "change nothing.")
@click.option("--skip-bad", is_flag=True, help="Import the good rows and leave out the bad ones (listed).")
@json_option
@click.pass_context
def task_import(ctx: click.Context, file: Path, fmt: str | None, sheet: str | None, maps: tuple[str, ...],
                day_first: bool | None, new_members: tuple[str, ...], dry_run: bool, skip_bad: bool) -> None:
    """Import tasks from a spreadsheet (.xlsx, .ods), a CSV saved by any office program, or JSON.

    Headers may be in English or French, any case and order (title/titre, assignee/responsable,
    due/échéance, priority/priorité, needs/besoins, description, status/statut, ref). Dates as
    people write them: 2026-12-05, 05/12/2026, 5.12.2026, 12 Dec 2026, or date cells.

    All or nothing: if any row is bad, every bad row is listed with its line
    number and nothing is imported (unless --skip-bad). Importing the same file
    again updates the tasks it made instead of duplicating them (by the 'ref'
    column, or by title and due date).
    """
    mapping: dict[str, str] = {}
    for m in maps:
        header, sep, name = m.partition("=")
        if not sep or not header.strip():
            raise UsageError(_("--map {m!r}: expected HEADER=FIELD").format(m=m), hint=_("e.g. --map 'Agent=assignee'"))
        mapping[header.strip()] = name.strip().lower()
    opts = importer.ImportOptions(mapping=mapping, day_first=day_first,
                                  locale_day_first=importer.locale_day_first(client_config(ctx).locale_env, _system_locale()),
                                  new_members=frozenset(n.strip().lower() for n in new_members))
    rep = _replica(ctx)
    try:
        plan = importer.import_file(rep, file, opts, fmt=fmt, sheet=sheet, dry_run=dry_run, skip_bad=skip_bad)
    except UsageError as e:
        if e.code == "usage.import_bad_rows":  # the library's hint names no option; this front end has them
            e.hint = (f"{e.hint}; " if e.hint else "") + (
                _("--new-member NAME accepts one who has not joined yet;") + " "
                if getattr(e, "unknown_member", False) else "") \
                + _("--dry-run shows every row, --skip-bad imports the good ones")
        raise
    result = {**plan.to_dict(), "dry_run": dry_run,
              "imported": 0 if dry_run else plan.count("create") + plan.count("update"),
              "ids": [r.task for r in plan.rows if r.action == "create" and r.task]}

    def text() -> None:
        click.echo(plan.summary() + " " + _("Dates read {order}.").format(order=_(plan.date_order)))
        if dry_run:
            for line in plan.describe():
                click.echo(line)
            click.echo(_("Dry run: nothing was imported."))
            return
        for line in plan.problem_lines():
            click.echo(_("  left out, {line}").format(line=line))
        parts = [ngettext("Imported: {created} task created, {updated} updated",
                          "Imported: {created} tasks created, {updated} updated", plan.count("create")).format(
            created=plan.count("create"), updated=plan.count("update"))]
        if plan.count("unchanged"):
            parts.append(_("{n} already up to date").format(n=plan.count("unchanged")))
        if plan.bad:
            parts.append(ngettext("{n} bad row left out", "{n} bad rows left out", len(plan.bad)).format(n=len(plan.bad)))
        click.echo(", ".join(parts) + ".")

    emit(ctx, result, text)


@task.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(list(exporter.EXPORT_FORMATS)),
              help="File format (default: from the extension).")
@click.option("--mine", is_flag=True, help="Only tasks assigned to you.")
@click.option("--assignee", help="Only tasks assigned to this member.")
@click.option("--archived", is_flag=True, help="The archived tasks instead.")
@click.option("--separator", type=click.Choice([",", ";", "tab"]), default=",", show_default=True,
              help="CSV separator (French Excel expects ';').")
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@json_option
@click.pass_context
def task_export(ctx: click.Context, file: Path, fmt: str | None, mine: bool, assignee: str | None, archived: bool,
                separator: str, force: bool) -> None:
    """Write the task list to FILE (.xlsx or .csv) for a report, or to edit and import again.

    The first column is each task's id: importing the edited file updates those tasks.
    """
    tasks = _replica(ctx).tasks(mine=mine, assignee=assignee, archived=archived)
    r = exporter.export_tasks(tasks, file, fmt, separator="\t" if separator == "tab" else separator, force=force)
    emit(ctx, r, ngettext("Wrote {tasks} task to {file} ({human_bytes}).", "Wrote {tasks} tasks to {file} ({human_bytes}).", r['tasks']).format(tasks=r['tasks'], file=file, human_bytes=human_bytes(r['bytes'])))


# -- documents -------------------------------------------------------------------------------------


@cli.group(cls=HbwGroup)
def doc() -> None:
    """Add, list, fetch and update documents (every update is a new version)."""


def _print_docs(docs: list[views.DocView]) -> None:
    if not docs:
        click.echo(_("No documents."))
        return
    click.echo(f"{_('ID'):6}  {_('SIZE'):>10}  {_('VER'):>3}  {_('TASK'):6}  {_('NAME')}")
    for d in docs:
        mark = "  " + _("<- two people edited it offline; both kept") if d.conflict_of else ""
        mark += confidential.marks(d)
        if not d.local:
            mark += "  " + _("(not on this device: 'doc get' fetches it)")
        click.echo(f"{d.short:6}  {human_bytes(d.size):>10}  {d.versions:>3}  {(d.task or '-')[:6]:6}  {d.name}{mark}")


@doc.command("add")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--task", "task_id", help="Attach it to this task.")
@click.option("--name", help="Name to show (default: the file's name).")
@json_option
@click.pass_context
def doc_add(ctx: click.Context, path: Path, task_id: str | None, name: str | None) -> None:
    """Add the file at PATH as a new document.

    Documents up to 4 GiB (4,294,967,296 bytes) are carried; a larger file is refused here,
    with nothing added. Files of 1 MiB and more travel as encrypted chunks that other
    devices download by their document policy ('doc policy'); until this device holds
    the team key, the limit is 32 MiB.
    """
    d = _replica(ctx).add_doc(path, task=task_id, name=name)
    emit(ctx, d.to_dict(), _("Added document {short}: {name} ({size}).").format(short=d.short, name=d.name, size=human_bytes(d.size)))


@doc.command("list")
@json_option
@click.pass_context
def doc_list(ctx: click.Context) -> None:
    """List documents."""
    docs = _replica(ctx).docs()
    emit(ctx, [d.to_dict() for d in docs], lambda: _print_docs(docs))


@doc.command("get")
@click.argument("doc_id")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Where to write it (default: its name, here).")
@click.option("--version", type=int, help="An older version, counting from 1.")
@click.option("--force", is_flag=True, help="Overwrite the output file if it exists.")
@click.option("--reason", help="Why a confidential document leaves hbw-sync (recorded for your supervisor).")
@json_option
@click.pass_context
def doc_get(ctx: click.Context, doc_id: str, output: Path | None, version: int | None, force: bool,
            reason: str | None) -> None:
    """Write a document's content to a file (a confidential one needs --reason, and is recorded).

    A document not on this device yet is fetched from the relay first (its document policy
    did not download it).
    """
    rep = _replica(ctx)
    d = rep.doc_info(doc_id, version)
    out = output or Path(views.safe_filename(d.name))
    if out.is_dir():
        out = out / views.safe_filename(d.name)
    if out.exists() and not force:
        raise UsageError(_("{out} exists").format(out=out), hint=_("pass --force to overwrite, or -o another path"))
    why = confidential.ask_reason(ctx, d, reason)
    try:
        rep.check_export_reason(d, why)  # refused before anything is fetched
        fetched = syncing.fetch_doc(rep, doc_id, version)  # what this device lacks, from the relay (§18e)
        d, size = rep.save_doc(doc_id, out, version, why)
    except UsageError as e:
        raise confidential.export_refused(e) from None
    text = (_("Wrote {size} to {out} ({fetched} fetched from the relay).") if fetched
            else _("Wrote {size} to {out}.")).format(size=human_bytes(size), out=out, fetched=human_bytes(fetched))
    if d.confidential:
        text += " " + _("The document is confidential: this export was recorded for the team, with your reason.")
    emit(ctx, {**d.to_dict(), "path": str(out), "fetched_bytes": fetched}, text)


@doc.command("update")
@click.argument("doc_id")
@click.argument("path", type=click.Path(path_type=Path))
@json_option
@click.pass_context
def doc_update(ctx: click.Context, doc_id: str, path: Path) -> None:
    """Record the file at PATH as a new version of a document (up to 4 GiB, as for `doc add`)."""
    d = _replica(ctx).update_doc(doc_id, path)
    emit(ctx, d.to_dict(), _("Document {short} is now at version {versions}.").format(short=d.short, versions=d.versions))


# -- profile, status -----------------------------------------------------------------------------


@cli.command()
@click.option("--laptop/--no-laptop", default=None, help="Do you have a laptop at home?")
@click.option("--internet/--no-internet", default=None, help="Do you have internet at home?")
@click.option("--office-days", help="Days you are in the office, e.g. mon,thu ('none' clears).")
@click.option("--away-until", help="Away (ill, leave) until this date ('none' clears).")
@click.option("--capacity", type=click.IntRange(1, MAX_CAPACITY), metavar="N",
              help="Open tasks you can hold at full load (part-time: fewer); rebalancing spreads work by it.")
@click.option("--takes-work/--no-takes-work", default=None,
              help="Supervisors: receive work when the relay rebalances (off until you say so).")
@json_option
@click.pass_context
def profile(ctx: click.Context, laptop: bool | None, internet: bool | None, office_days: str | None,
            away_until: str | None, capacity: int | None, takes_work: bool | None) -> None:
    """Show or set your working conditions; the relay uses them to reallocate work."""
    values: dict[str, Any] = {}
    if capacity is not None:
        values["capacity"] = capacity
    if takes_work is not None:
        values["takes_work"] = takes_work
    if laptop is not None:
        values["laptop"] = laptop
    if internet is not None:
        values["internet"] = internet
    if office_days is not None:
        values["office_days"] = views.parse_days(office_days)
    if away_until is not None:
        values["away_until"] = views.parse_date(away_until)
    p = _replica(ctx).set_profile(**values)

    def text() -> None:
        yn = {True: _("yes"), False: _("no"), None: _("not said")}
        click.echo(_("Profile of {member}:").format(member=p['member']))
        click.echo(_("  Laptop at home:   {v}").format(v=yn[p['laptop']]))
        click.echo(_("  Internet at home: {v}").format(v=yn[p['internet']]))
        click.echo(_("  Office days:      {v}").format(v=', '.join(p['office_days']) or _('none')))
        click.echo(_("  Away until:       {v}").format(v=p['away_until'] or '-'))
        cap = p["capacity"]
        click.echo(_("  Capacity:         {cap} open tasks").format(cap=cap) if cap else _("  Capacity:         the team's default"))
        if p["role"] == "supervisor":
            click.echo(_("  Receives work:    yes, when the relay rebalances") if p["takes_work"]
                       else _("  Receives work:    no (--takes-work to opt in)"))

    emit(ctx, p, text)


def print_received(got: dict) -> None:
    """What a scheduled (locked) sync brought, from routing metadata (client/received.py)."""
    click.echo(ngettext("{n} change received; unlock to read it (any command that asks your passphrase).",
                        "{n} changes received; unlock to read them (any command that asks your passphrase).",
                        got["changes"]).format(n=got["changes"]))
    for t in got["to_me"]:
        line = (_("  New task {task} for you, from {by}") if t["new"] else _("  Task {task} moved to you by {by}"))
        line = line.format(task=t["task"], by=t["by"])
        click.echo(line + (_(", due {due}.").format(due=t["due"]) if t["due"] else "."))
    for t in got["from_me"]:
        click.echo(_("  Task {task} moved from you to {to} by {by}; what you wrote on it is kept.").format(
            task=t["task"], to=t["to"] or _("nobody"), by=t["by"]))
    for t in got["due"]:
        click.echo(_("  Task {task}: due date now {due}.").format(task=t["task"], due=t["due"] or _("none")))
    for c in got["conflicts"]:
        click.echo(_("  Conflict settled on task {task}: {field} is {kept} (by {kept_by}); {lost} (by {lost_by}) "
                     "lost: {rule}.").format(**c))
    if got["unread_batches"]:
        click.echo(ngettext("  {n} batch could not be read without unlocking (its sender is new to this device).",
                            "  {n} batches could not be read without unlocking (their senders are new to this device).",
                            got["unread_batches"]).format(n=got["unread_batches"]))
    click.echo(_("  Titles, notes and documents, and how these changes meet your own unsent ones, show once you "
                 "unlock: conflicts with them are not known yet."))


@cli.command()
@click.option("--keep-unseen", "mark_seen_off", is_flag=True, help="Show notices and conflicts again next time.")
@json_option
@click.pass_context
def status(ctx: click.Context, mark_seen_off: bool) -> None:
    """What waits to be sent, when the last sync worked, tasks moved away, conflicts. No passphrase needed."""
    dev = _device(ctx)
    s = dev.status()

    def text() -> None:
        o = s["outbox"]
        if s["team"]:
            click.echo(_("{member} on device {device}, team {team}").format(member=s["member"], device=s["device"][:8],
                                                                            team=s["team"]))
        else:
            click.echo(_("{member} on device {device}, no team yet").format(member=s["member"], device=s["device"][:8]))
        if o["changes"]:
            click.echo(_("Waiting to be sent: {changes} in {batches}, {human_bytes}.").format(changes=changes_words(o['changes']), batches=batches_words(o['batches']), human_bytes=human_bytes(o['bytes'])))
        elif not o["document_bytes"]:
            click.echo(_("Nothing waiting to be sent."))
        if o["document_bytes"]:
            click.echo(_("Documents waiting to be sent: {size}.").format(size=human_bytes(o["document_bytes"])))
        if s["waiting_for_team_key"]:
            click.echo(ngettext("{waiting_for_team_key} change waits for the team key: it is kept here, "
                                "and sealed and sent once this device holds the new key.",
                                "{waiting_for_team_key} changes wait for the team key: they are kept here, "
                                "and sealed and sent once this device holds the new key.",
                                s['waiting_for_team_key']).format(waiting_for_team_key=s['waiting_for_team_key']))
        print_waiting(s["key_flow"])
        got = s["received"]
        if got:
            print_received(got)
        last = s["last_sync"]
        if last is None:
            click.echo(_("Never synced."))
        else:
            ok = _("worked") if last["ok"] else _("failed ({detail})").format(detail=last["detail"])
            click.echo(_("Last sync {local_time} by {how}: {ok}.").format(local_time=local_time(last['at_ms']), how=last['how'], ok=ok))
            if not last["ok"] and s["last_successful_sync_ms"]:
                click.echo(_("Last successful sync: {local_time}.").format(local_time=local_time(s['last_successful_sync_ms'])))
            if s["last_sync_wrong_passphrase"]:
                click.echo(_("That sync was given a passphrase that does not open this device (a stale "
                      "HBW_PASSPHRASE in a script or scheduler?), so it ran without it. Fix or "
                      "unset it there."))
        for n in s["notices"]:
            click.echo(_("Notice: {n}").format(n=n))
        if s["conflicts"]:
            click.echo(_("Conflicts settled since you last looked ({conflicts}):").format(conflicts=s['conflicts']))
            for c in s["conflict_details"]:
                click.echo(f"  {c}")
        elif not got:
            click.echo(_("No new conflicts."))
        if s["older_devices"]:
            click.echo(ngettext("{n} device runs an older hbw-sync: documents it receives travel in the older, "
                                "larger form.",
                                "{n} devices run an older hbw-sync: documents they receive travel in the older, "
                                "larger form.", s["older_devices"]).format(n=s["older_devices"]))
        if s["rejected_batches"]:
            click.echo(ngettext("{rejected_batches} batch was refused by the relay; see 'hbw-sync sync' output.",
                                "{rejected_batches} batches were refused by the relay; see 'hbw-sync sync' output.",
                                s['rejected_batches']).format(rejected_batches=s['rejected_batches']))

    emit(ctx, s, text)
    if not wants_json(ctx) and not mark_seen_off:
        dev.mark_seen()


@cli.command()
@click.argument("invite", nargs=-1, required=True)
@click.option("--relay", "relay_url", metavar="URL",
              help="The relay's address, for a word code (office IT says it with the code).")
@click.option("--label", help="A name for this device in the office's records (default: the computer's name).")
@progress_option
@json_option
@click.pass_context
def join(ctx: click.Context, invite: tuple[str, ...], relay_url: str | None, label: str | None,
         progress: str) -> None:
    """Join your team's relay with the INVITE your supervisor (or office IT) gave you.

    INVITE is the full invite (hbw1-...) or a word code read out by phone
    (4821 orchid lantern ferry mango tiger, with --relay URL). Creates this
    device's store if there is none (you choose a passphrase, asked twice; a
    weak one is refused), enrolls it, and syncs once. The invite pins the
    relay's key: this device will never sync with anyone else. A join that
    fails leaves nothing behind. A lost passphrase means joining again with a
    new invite and a fresh store: the team's data comes back; only changes not
    yet sent are lost.
    """
    home = _home(ctx)
    new_store = not ((home or default_home()) / DB_NAME).exists()
    text = " ".join(invite)
    if wordcode.looks_like_code(text):  # fetched first: the passphrase check needs the member's name
        text = syncing.resolve_word_code(relay_url, text)
    inv = Invite.decode(text)
    secret = new_passphrase([inv.member], current_env_too=True) if new_store else current_passphrase()
    with progress_for(progress) as on_progress:  # the first sync may bring the team's whole history
        r = syncing.join(home, text, secret, label=label or "", on_progress=on_progress)
    r["recovery"] = RECOVERY
    msg = _("Joined team {team!r} as {member} ({role}) at {relay}.").format(team=r["team"], member=r["member"],
                                                                           role=r["role"], relay=r["relay"])
    if new_store:
        msg += f"\n{RECOVERY}"
    if r["first_device"]:
        msg += "\n" + _("This is the team's first device: its team key was created here.")
    if not r.get("synced"):
        msg += "\n" + _("First sync did not complete: {note}").format(note=r.get("note") or _("try hbw-sync sync later"))

    def show() -> None:
        click.echo(msg)
        print_waiting(r.get("waiting", []))

    emit(ctx, r, show)


@cli.command()
@click.option("--budget", default="200KB", show_default=True,
              help="Most bytes to receive per round trip (e.g. 50KB on a poor link).")
@click.option("--timeout", default=60.0, show_default=True, type=float,
              help="Give up after this many seconds without progress (a slow link that moves is never cut).")
@click.option("--deadline", default=None, metavar="DURATION",
              help="Keep going after a dropped link for at most this long (e.g. 10m, 90s, 1h). Default: "
                   "10m on a terminal, 25m when run by a scheduler; 0 tries once.")
@click.option("--quiet", "-q", is_flag=True,
              help="Print nothing unless something is wrong (for cron); 'try again later' (exit 75) is not.")
@progress_option
@json_option
@click.pass_context
def sync(ctx: click.Context, budget: str, timeout: float, deadline: str | None, quiet: bool, progress: str) -> None:
    """Send the outbox and fetch the team's changes. Never prompts: safe for cron and systemd timers.

    With HBW_PASSPHRASE set, received changes are applied at once; otherwise
    they wait, sealed, until your next command that asks for the passphrase.
    A dropped link does not end it: it goes on where it stopped until done,
    until --deadline passes, or until 3 tries in a row move nothing.
    Exit 0 done; 75 relay unreachable or deadline passed (nothing lost, try
    later); 77 this device was revoked; 65/76 protocol or version problem.
    """
    limit = retry.default_deadline(is_interactive()) if deadline is None else retry.parse_duration(deadline)

    def told(notice: retry.RetryNotice) -> None:  # a person hears of each drop; a script reads the exit code
        if progress == "json":  # the tray and the app: a line they parse, beside the progress lines
            json_event(notice.to_dict(tally.phase))
        elif not quiet and not wants_json(ctx):
            click.echo(notice.text(), err=True)

    try:
        with progress_for(progress, quiet=quiet) as on_progress:
            tally = Tally(on_progress)
            r = syncing.sync(_home(ctx), env_passphrase(), budget=parse_size(budget), timeout=timeout,
                             on_progress=tally, deadline=limit or None, on_retry=told)
    except TransientError as e:
        if not quiet:
            got = tally.so_far()
            if got:  # "the link dropped ..." then how far it got: what went is kept, the rest waits
                e.hint = f"{got}; " + (e.hint or "sync again later")
            raise
        # The only news is "try later": a cron line must not mail an offline user every 30 minutes.
        # The sync log keeps it ('hbw-sync status' shows it), and the exit code still says 75.
        ctx.exit(exit_code_for(e))
    if r.wrong_passphrase:  # said even with --quiet and --json: a person should fix the script
        click.echo(_("warning: HBW_PASSPHRASE does not open this device, so this sync ran without it: "
              "changes were sent and fetched; what arrived waits until a command with the right "
              "passphrase. Fix or unset HBW_PASSPHRASE."), err=True)

    def text() -> None:
        if quiet:
            return
        click.echo(
            _("Sent {sent_batches} ({sent_bytes}), received {received_batches} "
                  "({received_bytes}) in {round_trips}, {duration_s:.1f} s.").format(sent_batches=batches_words(r.sent_batches), sent_bytes=human_bytes(r.sent_bytes), received_batches=r.received_batches, received_bytes=human_bytes(r.received_bytes), round_trips=ngettext("{n} round trip", "{n} round trips", r.round_trips).format(n=r.round_trips), duration_s=r.duration_s)
        )
        if r.waiting_to_apply:
            click.echo(ngettext("{waiting_to_apply} received batch will be applied at your next command.",
                                "{waiting_to_apply} received batches will be applied at your next command.",
                                r.waiting_to_apply).format(waiting_to_apply=r.waiting_to_apply))
        for n in r.notes:
            click.echo(n)
        print_waiting(r.waiting)

    emit(ctx, r.to_dict(), text)
    if r.rejected:
        ctx.exit(65)


@cli.group(cls=HbwGroup)
def bundle() -> None:
    """Sync by file (email attachment, USB stick) when there is no link to the relay."""


@bundle.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--max-size", default="10MB", show_default=True,
              help="Largest bundle to write (email limits); 'none': one bundle whatever its size (USB stick).")
@progress_option
@json_option
@click.pass_context
def bundle_export(ctx: click.Context, file: Path, max_size: str, progress: str) -> None:
    """Write your outbox as FILE, sealed so only the office relay can open it. No passphrase needed.

    Send it by email or carry it on a USB stick. Nothing leaves the outbox
    until the relay's reply (or a later online sync) confirms it arrived.
    """
    with progress_for(progress) as on_progress:
        cap = None if max_size.strip().lower() == "none" else parse_size(max_size)
        r = bundles.export_bundle(_home(ctx), file, cap, passphrase=env_passphrase(),
                                  on_progress=on_progress)
    msg = _("Wrote {file} ({size}): {changes} in {batches}.").format(
        file=file, size=human_bytes(r["bytes"]), changes=changes_words(r["changes"]), batches=batches_words(r["batches"]))
    if r["parts"] > 1:
        doc = r["split_document"] or {}
        msg = ngettext("Wrote {n} bundle ({size}):", "Wrote {n} bundles ({size}):", r["parts"]).format(
            n=r["parts"], size=human_bytes(r["bytes"])) + "\n" + "\n".join("  " + f for f in r["files"])
        msg += "\n" + _("The document {name} ({size}) is larger than one bundle: its parts are spread over "
                        "these {n} files, and its change is in the last. Take all of them to the office, "
                        "in any order.").format(name=doc.get("name", "?"), size=human_bytes(doc.get("bytes", 0)),
                                                n=r["parts"])
    if r["doc_chunks"] and r["parts"] == 1:
        msg += "\n" + ngettext("It carries {n} document part ({size}) for the office.",
                               "It carries {n} document parts ({size}) for the office.", r["doc_chunks"]).format(
            n=r["doc_chunks"], size=human_bytes(r["doc_chunk_bytes"]))
    if r["left_in_outbox"]:
        msg += "\n" + ngettext("{n} more batch did not fit: export again after the reply.",
                               "{n} more batches did not fit: export again after the reply.",
                               r["left_in_outbox"]).format(n=r["left_in_outbox"])
    if r["parts"] > 1:
        msg += "\n" + _("Send them to the office; import each reply with 'hbw-sync bundle import REPLY'.")
    else:
        msg += "\n" + _("Send it to the office; import the reply with 'hbw-sync bundle import REPLY'.")
    emit(ctx, r, msg)


@bundle.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@progress_option
@json_option
@click.pass_context
def bundle_import(ctx: click.Context, file: Path, progress: str) -> None:
    """Apply the office's reply bundle FILE. Importing it twice, or out of order, changes nothing wrongly."""
    secret = current_passphrase()  # asked before any bar is drawn
    with progress_for(progress) as on_progress:
        r = bundles.import_bundle(_home(ctx), file, secret, on_progress=on_progress)
    if r["already_imported"]:
        emit(ctx, r, _("This reply was already imported; nothing changed."))
        return
    emit(ctx, r, bundle_import_words(r))


def bundle_import_words(r: dict[str, Any]) -> str:
    """What a person reads after importing one reply file: what came, what waits, what is still to come."""
    changes = ngettext("{n} change", "{n} changes", r["applied_ops"]).format(n=r["applied_ops"])
    done = _("{confirmed}, {received}.").format(
        confirmed=ngettext("{n} of your batches confirmed", "{n} of your batches confirmed", r["acks"]).format(
            n=r["acks"]),
        received=ngettext("{n} received ({changes})", "{n} received ({changes})", r["received_batches"]).format(
            n=r["received_batches"], changes=changes))
    if r["parts"] > 1:
        msg = _("Part {part} of {parts} imported: ").format(part=r["part"], parts=r["parts"]) + done
    else:
        msg = _("Imported: ") + done
    if r.get("doc_chunks"):
        msg += "\n" + ngettext("{n} document part received.", "{n} document parts received.",
                               r["doc_chunks"]).format(n=r["doc_chunks"])
    if r["waits_for_earlier_part"]:
        msg += "\n" + _("Its changes wait for the part before it (mail can come out of order); nothing is lost.")
    if r["parts_left"]:
        msg += "\n" + ngettext("{n} more bundle to come: {size}. Import them as they arrive, in any order.",
                               "{n} more bundles to come: {size}. Import them as they arrive, in any order.",
                               r["parts_left"]).format(n=r["parts_left"], size=human_bytes(r["bytes_left"]))
    if r["oversize_bytes"]:
        limit = _(" ({size})").format(size=human_bytes(r["max_bytes"])) if r["max_bytes"] else ""
        msg += "\n" + _("A change of {size} is larger than a bundle may be{limit}: it, and what came after it, "
                        "comes with an online sync, or export again with a larger --max-size.").format(
            size=human_bytes(r["oversize_bytes"]), limit=limit)
    elif r["more_waiting"]:
        msg += "\n" + _("More is waiting at the office: export another bundle to get it.")
    return msg


@cli.command("watch")
@click.option("--interval", default=1800.0, show_default=True, type=float,
              help="Seconds between syncs when nothing waits in the outbox.")
@click.option("--max-backoff", default=30.0, show_default=True, type=float,
              help="Longest wait between reachability probes while the relay is unreachable.")
@click.pass_context
def watch_cmd(ctx: click.Context, interval: float, max_backoff: float) -> None:
    """Keep running and sync whenever the relay is reachable (plug in at the office: syncs in seconds).

    One log line per sync. Stops cleanly on SIGTERM or Ctrl-C. Never prompts;
    with HBW_PASSPHRASE set, received changes are applied at once.
    """
    code = watching.watch(_home(ctx), env_passphrase(), interval=interval, max_backoff=max_backoff,
                          log=lambda line: click.echo(line))
    ctx.exit(code)


@cli.command()
@json_option
@click.pass_context
def check(ctx: click.Context) -> None:
    """Verify the local store: every task and document matches the change log."""
    problems = _replica(ctx).check()
    emit(ctx, {"ok": not problems, "problems": problems}, _("Store is consistent.") if not problems else "\n".join(problems))
    if problems:
        ctx.exit(65)


register_passphrase(cli)
register_schedule(cli)
register_app(cli)
register_audit(cli)
confidential.register(doc, _replica, emit)
register_doc_policy(doc)
register_language(cli)
register_tray(cli)


def main() -> None:
    cli(prog_name="hbw-sync")


if __name__ == "__main__":
    main()
