"""``hbw-sync schedule install|show|remove``: the scheduled sync, set up by one command (see schedule.py)."""

from __future__ import annotations

from pathlib import Path

import click

from ..cli_common import HbwGroup, emit, json_option
from . import schedule as sched
from .cli_config import client_config
from ..i18n import _

KIND = click.option("--kind", type=click.Choice(sched.KINDS), default=None,
                    help="Which scheduler (default: Task Scheduler on Windows, a systemd user timer where "
                         "systemd runs, else cron).")


def _home(ctx: click.Context) -> Path | None:
    return ctx.find_root().params.get("home")


@click.group(cls=HbwGroup)
def schedule() -> None:
    """Sync on a schedule (every 30 minutes and at start-up) without anyone at the keyboard."""


@schedule.command("install")
@KIND
@click.option("--every", "interval", type=click.Choice([str(i) for i in sched.INTERVALS]), default="30",
              show_default=True, help="Minutes between syncs.")
@click.option("--watch", is_flag=True, help="systemd only: keep 'hbw-sync watch' running instead of a timer.")
@click.option("--binary", help="The hbw-sync program to run (default: this one, as installed).")
@click.option("--dry-run", is_flag=True, help="Print what would be written and run; change nothing.")
@json_option
@click.pass_context
def install_cmd(ctx: click.Context, kind: str | None, interval: str, watch: bool, binary: str | None,
                dry_run: bool) -> None:
    """Write the scheduler's entry naming this installed hbw-sync, and turn it on. Installing again replaces it.

    The scheduled sync never prompts and needs no passphrase: what it receives
    waits, sealed, until you next open hbw-sync.
    """
    kind = kind or sched.detect_kind()
    launcher = sched.windowless() if kind == "windows" and not binary else None
    p = sched.plan(kind, binary or sched.find_binary(), _home(ctx), int(interval), watch,
                   env=client_config(ctx).scheduler_env, launcher=launcher)
    if dry_run:
        emit(ctx, {**p.to_dict(), "dry_run": True}, p.describe() + "\n" + _("(dry run: nothing was changed)"))
        return
    r = sched.install(p)
    where = {"systemd": _("systemd user timer") if not watch else _("systemd user service"), "cron": _("your crontab"),
             "windows": _("Task Scheduler task {name!r}").format(name=sched.TASK_NAME)}[kind]
    what = _("keeps 'hbw-sync watch' running") if watch else _("syncs every {n} minutes").format(n=interval)
    emit(ctx, {**r, "dry_run": False},
         _("Installed in {where}: {what}, running {kind}\nIt never prompts; 'hbw-sync "
               "status' shows when the last sync worked. Undo with 'hbw-sync schedule remove'.").format(where=where, what=what, kind=sched.display(kind, p.command)))


@schedule.command("show")
@KIND
@json_option
@click.pass_context
def show_cmd(ctx: click.Context, kind: str | None) -> None:
    """Show the scheduled sync as it is installed now."""
    kind = kind or sched.detect_kind()
    r = sched.show(kind, client_config(ctx).scheduler_env)

    def text() -> None:
        if not r["installed"]:
            click.echo(_("No scheduled sync in {kind}. Set one up with 'hbw-sync schedule install'.").format(kind=kind))
            return
        for path, body in r["files"].items():
            click.echo(f"--- {path}:\n{body.rstrip()}")
        if r["cron"]:
            click.echo(_("--- in your crontab:") + "\n" + "\n".join(r["cron"]))
        if r["task"]:
            click.echo(r["task"])

    emit(ctx, r, text)


@schedule.command("remove")
@KIND
@json_option
@click.pass_context
def remove_cmd(ctx: click.Context, kind: str | None) -> None:
    """Stop the scheduled sync and delete its entry. Your store and outbox are not touched."""
    kind = kind or sched.detect_kind()
    done = sched.remove(kind, client_config(ctx).scheduler_env)
    emit(ctx, {"kind": kind, "removed": done},
         ("\n".join(s[0].upper() + s[1:] + "." for s in done) if done else _("No scheduled sync in {kind}: nothing to remove.").format(kind=kind)))


def register(cli: click.Group) -> None:
    cli.add_command(schedule)
