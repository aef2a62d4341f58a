"""``hbw-sync tray``: the tray icon (client/tray.py) for people who never open a terminal."""

from __future__ import annotations

import click

from .cli_passphrase import env_passphrase


def register(cli: click.Group) -> None:
    @cli.command("tray")
    @click.option("--interval", type=click.IntRange(60, 86400), default=1800, show_default=True,
                  help="Seconds between syncs when nothing waits in the outbox.")
    @click.pass_context
    def tray_cmd(ctx: click.Context, interval: int) -> None:
        """Show hbw-sync by the clock: all sent, changes waiting, syncing, needs attention or offline.

        It syncs whenever the relay can be reached, and tells you when a task is moved to you, a
        conflict is settled or a device waits for your approval. Its menu: Sync now, Open hbw-sync,
        Export bundle, Import bundle, Pause, Quit. With HBW_PASSPHRASE set, what arrives is applied
        at once; otherwise it waits until you open hbw-sync.
        """
        from .tray import Tray  # here: it brings Pillow, which no other command needs

        Tray(ctx.find_root().params.get("home"), env_passphrase(), interval=interval).run()
