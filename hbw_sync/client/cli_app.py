"""``hbw-sync app``: start the local web app (client/app/) and open it in the browser."""

from __future__ import annotations

import asyncio
import webbrowser

import click

from ..i18n import _
from . import importer
from .cli_config import client_config


def register_app(cli: click.Group) -> None:
    @cli.command("app")
    @click.option("--port", type=click.IntRange(0, 65535), default=0, help="Port on 127.0.0.1 (0: any free one).")
    @click.option("--no-browser", is_flag=True, help="Only print the address; do not open a browser.")
    @click.pass_context
    def app_cmd(ctx: click.Context, port: int, no_browser: bool) -> None:
        """Open hbw-sync in your web browser, on this computer only (Ctrl+C stops it).

        The address it prints holds a secret made for this launch: only someone with it can use the app,
        and the app locks after 15 minutes without use.
        """
        from .app.server import serve

        def ready(url: str) -> None:
            click.echo(_("hbw-sync app is open at {url}").format(url=url))
            if not no_browser:
                webbrowser.open(url)

        try:
            cfg = client_config(ctx)
            asyncio.run(serve(cfg.home, port, ready,
                              locale_day_first=importer.locale_day_first(cfg.locale_env, None)))
        except KeyboardInterrupt:
            pass
