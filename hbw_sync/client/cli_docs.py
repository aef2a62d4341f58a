"""``hbw-sync doc policy``: which documents this device downloads after a sync (PROTOCOL.md §18e).

Kept apart from ``cli.py`` (one command, registered with a line there) so that the setting
has one home: ``Replica.doc_policy`` / ``set_doc_policy`` hold the rule, this only parses and prints.
"""

from __future__ import annotations

import click

from ..cli_common import json_option
from ..i18n import _
from .cli_passphrase import current_passphrase
from .device import Device

_WORDS = {
    "mine": "documents attached to tasks you hold, and those you added",
    "all": "every document of the team (for the office desk machine)",
    "none": "no document until you ask for it with 'doc get'",
}


def register(doc: click.Group) -> None:
    @doc.command("policy")
    @click.argument("policy", required=False, type=click.Choice(["mine", "all", "none"], case_sensitive=False))
    @json_option
    @click.pass_context
    def doc_policy(ctx: click.Context, policy: str | None) -> None:
        """Show or set which documents this device downloads when it syncs: mine (default), all, none.

        Any document can still be fetched at any time with 'doc get' while online.
        """
        from .cli import _home, emit

        with Device.open(_home(ctx)) as dev:
            rep = dev.unlock(current_passphrase())
            value = rep.set_doc_policy(policy) if policy else rep.doc_policy()
        verb = _("Documents policy set to") if policy else _("Documents policy:")
        emit(ctx, {"policy": value}, f"{verb} {value}: {_(_WORDS[value])}.")

