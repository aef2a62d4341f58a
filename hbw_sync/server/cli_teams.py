"""``hbw-relay team add|list|remove`` and ``--team ID``: the commands of a multi-team relay directory.

Why a module of its own: ``cli.py`` stays the one-team tool; a multi-team directory is a
directory of one-team directories (``teams.py``), so each admin command only needs to be
pointed at one of them, which ``resolve_data`` does in one place for all.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

from ..cli_common import emit, json_option
from ..i18n import N_, _, ngettext
from . import teams

TEAM_HELP = N_("On a multi-team relay directory: the team (its id; 'hbw-relay team list') this command is for "
               "(env HBW_RELAY_TEAM).")


def _remember_team(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        ctx.meta["hbw_relay_team"] = value  # shared by the whole command line, as --data is
    return value


def team_flag(f: Any) -> Any:
    return click.option("--team", "team_id", metavar="ID", envvar="HBW_RELAY_TEAM", callback=_remember_team,
                        expose_value=True, help=TEAM_HELP)(f)


def resolve_data(data: Path, team_id: str | None) -> Path:
    """The one-team directory a command works on (``teams.resolve``): ``--team`` from anywhere on the line."""
    team_id = team_id or click.get_current_context().meta.get("hbw_relay_team")
    return teams.resolve(data, team_id)


def finite_size(_ctx: click.Context, _param: click.Parameter, value: float | None) -> float | None:
    """A size in GiB must be a number: click's FloatRange lets 'nan' through (every comparison with it is false)."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(_("{value!r} is not a size: give a number of GiB, e.g. 20").format(value=str(value)))
    return value


def team_relay_url(url: str | None) -> str | None:
    """A relay URL given on a team's command line, with that team's ``/t/<id>`` added when missing.

    Office IT types the server's address (``--url http://office:8765``); a device given it without the
    team's path would reach the multi-team relay's root, which serves no team."""
    tid = click.get_current_context().meta.get("hbw_relay_team")
    if not url or not tid:
        return url
    base = url.rstrip("/")
    return base if base.endswith(f"/t/{tid}") else f"{base}/t/{tid}"


def register(cli: click.Group, group_cls: type, data_flag: Any) -> None:
    """Add the ``team`` group to ``cli`` (the relay's root command)."""

    @cli.group(cls=group_cls)
    def team() -> None:
        """The teams of a multi-team relay directory ('hbw-relay init --multi DIR')."""

    @team.command("add")
    @data_flag
    @click.argument("name")
    @click.option("--id", "team_id", metavar="ID", help="The team's id in URLs and commands (default: from NAME).")
    @json_option
    @click.pass_context
    def team_add(ctx: click.Context, data: Path, name: str, team_id: str | None) -> None:
        """Add team NAME: its own relay key, and its own database (SQLite file or PostgreSQL schema)."""
        r = teams.add_team(data, name, team_id)
        text = _("Team {name!r} added as {id} in {dir}.\nRelay key: {key}").format(
            name=r["team"], id=r["id"], dir=r["data"], key=r["relay_key"])
        if r["url"]:
            text += "\n" + _("Devices reach it at {url}.").format(url=r["url"])
        text += "\n" + _("Next: 'hbw-relay invite --data {data} --team {id} NAME'.").format(data=data, id=r["id"])
        emit(ctx, r, text)

    @team.command("list")
    @data_flag
    @json_option
    @click.pass_context
    def team_list(ctx: click.Context, data: Path) -> None:
        """The teams, with how many devices each has enrolled and the documents each may keep (its quota)."""
        rows = teams.list_teams(data)

        def text() -> None:
            if not rows:
                click.echo(_("No teams yet: 'hbw-relay team add NAME'."))
            for r in rows:
                if r.get("error"):
                    click.echo(_("{id:24}  cannot be read: {error}").format(id=r["id"], error=r["error"]))
                else:
                    click.echo(ngettext("{id:24}  {name}  ({n} device)", "{id:24}  {name}  ({n} devices)",
                                        r["devices"]).format(id=r["id"], name=r["name"], n=r["devices"]))
                    quota = r["chunk_quota"] / 1024**3
                    click.echo("    " + (_("documents: up to {gb:g} GiB (its own quota)") if r["chunk_quota_own"]
                                         else _("documents: up to {gb:g} GiB (the relay's default)")).format(gb=quota))

        emit(ctx, rows, text)

    @team.command("quota")
    @data_flag
    @click.argument("team_id", metavar="ID")
    @click.argument("size_gb", metavar="SIZE_GB", type=click.FloatRange(0.001, 1024**2),
                    callback=finite_size)
    @json_option
    @click.pass_context
    def team_quota(ctx: click.Context, data: Path, team_id: str, size_gb: float) -> None:
        """Let team ID keep SIZE_GB GiB of document chunks at the relay (its own quota; others keep the
        default of 'serve --chunk-quota-gb'). Uploads and 'bundle ingest --team ID' past it are refused."""
        r = teams.set_quota(data, team_id, int(size_gb * 1024**3))
        emit(ctx, r, _("Team {id} may now keep {gb:g} GiB of documents at the relay; uploads past that are "
                       "refused. A running relay applies it within a minute.").format(id=r["id"], gb=size_gb))

    @team.command("remove")
    @data_flag
    @click.argument("team_id", metavar="ID")
    @click.option("--force", is_flag=True, help="Remove it even though devices are still enrolled.")
    @json_option
    @click.pass_context
    def team_remove(ctx: click.Context, data: Path, team_id: str, force: bool) -> None:
        """Stop serving team ID. Nothing is deleted: its directory is moved aside, its schema kept."""
        r = teams.remove_team(data, teams.check_id(team_id), force)
        text = _("Team {id} is no longer served; its devices are refused from now on.").format(id=r["id"])
        text += "\n" + _("Kept: its data directory (relay key and database), moved to {kept}.").format(kept=r["kept"])
        if r["schema"]:
            text += "\n" + _("Kept: its PostgreSQL schema {schema}; drop it once you no longer need it.").format(
                schema=r["schema"])
        emit(ctx, r, text)
