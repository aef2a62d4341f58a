"""What to do about an error, in ``hbw-sync`` commands: the CLI's own hint table (code → hint).

Why here and not at the raise site: the library is also driven by the app and the tray, whose
person never sees a terminal. ``messages.words(e, CLI_HINTS)`` picks these first when the CLI
reports an error; the app has its own table (``client/app/hints.py``).
"""
from __future__ import annotations

from ..i18n import N_

CLI_HINTS: dict[str, str] = {
    "config.not_joined": N_("run 'hbw-sync join INVITE' first"),
    "access.not_joined": N_("run 'hbw-sync join INVITE' first"),
    "config.no_team": N_("run 'hbw-sync team create NAME' (first official) or 'hbw-sync join INVITE'"),
    "config.no_store": N_("run 'hbw-sync init --name YOUR-NAME' first"),
    "usage.doc_not_local": N_("run 'hbw-sync doc get' when online: it fetches it"),
    "usage.changed_meanwhile": N_("run 'hbw-sync passphrase check'"),
    "usage.nothing_to_change": N_("give at least one option, see --help"),
    "usage.code": N_("check the digits with the person at the device; 'hbw-sync team "
                     "pending' lists the devices that wait"),
    "access.unknown_device": N_("join with an invite: hbw-sync join INVITE"),
    "access.invite": N_("ask your supervisor or office IT for a new invite, then run 'hbw-sync join' with it"),
}
