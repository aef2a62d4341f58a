"""``hbw-relay migrate`` and the ``--database`` option: where the relay keeps its data, and upgrading it.

Why a module of its own: the storage seam (``storage``) is one concern; keeping
its commands here leaves ``cli.py`` a line or two to register them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..cli_common import emit, json_option
from ..i18n import _
from . import admin

DATABASE_HELP = ("PostgreSQL URL (postgresql://USER@HOST/DB; env HBW_RELAY_DATABASE) for a relay at ministry "
                 "scale; without it the relay keeps its data in SQLite in the data directory.")


def database_option(f: Any) -> Any:
    return click.option("--database", envvar="HBW_RELAY_DATABASE", metavar="URL", help=DATABASE_HELP)(f)


def register(cli: click.Group, data_option: Any) -> None:
    """Add ``migrate`` to ``cli`` (the relay's root command)."""

    @cli.command()
    @data_option
    @database_option
    @json_option
    @click.pass_context
    def migrate(ctx: click.Context, data: Path, database: str | None) -> None:
        """Upgrade a relay's database made by an older hbw-relay to this version's schema.

        All steps run in one transaction: if one fails, nothing changed. Take a
        backup first ('hbw-relay backup'); the relay must not run meanwhile.
        """
        r = admin.migrate(data, database)
        if r["from"] == r["to"]:
            text = _("The relay's data in {data} already has schema {v}; nothing changed.").format(data=data, v=r["to"])
        else:
            text = _("Upgraded the relay's data in {data} from schema {a} to {b}. Start it with "
                     "'hbw-relay serve --data {data}'.").format(data=data, a=r["from"], b=r["to"])
        emit(ctx, r, text)
