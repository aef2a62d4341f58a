"""What to do about an error, in the app's own words (code → hint): buttons and pages, not commands.

The library's errors carry no hint that names a command; the CLI's table (``client/cli_hints.py``)
names ``hbw-sync`` commands, this one names what the app's person can click. ``app_words`` is what
every page shows for an error.
"""
from __future__ import annotations

from ...i18n import N_
from ...messages import words

APP_HINTS: dict[str, str] = {
    "config.not_joined": N_("this device must first join the team: ask your supervisor or office IT for an "
                            "invite, and for help joining with it"),
    "access.not_joined": N_("this device must first join the team: ask your supervisor or office IT for an "
                            "invite, and for help joining with it"),
    "config.no_team": N_("this device must first join the team: ask your supervisor or office IT for an "
                         "invite, and for help joining with it"),
    "config.no_store": N_("hbw-sync is not set up on this computer yet: ask office IT to set it up"),
    "usage.doc_not_local": N_("press Sync now when online: the document is fetched, then open it again"),
    "usage.changed_meanwhile": N_("lock hbw-sync and unlock it with the new passphrase"),
    "usage.nothing_to_change": N_("change at least one field, then save"),
    "usage.code": N_("check the digits with the person at the device; the Team page lists the devices "
                     "that wait"),
    "access.unknown_device": N_("this device must join the team with an invite: ask your supervisor or office IT"),
}

_COMMANDS = ("hbw-sync", "hbw-relay", " --", "'doc ", "'team ", "'sync")


def app_words(e: object) -> tuple[str, str | None]:
    """(message, hint) for an error shown in the app, in the current language.

    A hint that still names a command (a raise site not yet moved to the tables, a relay's own words)
    is left out: the app's person has no terminal to run it in.
    """
    text, hint = words(e, APP_HINTS)
    if hint and any(c in hint for c in _COMMANDS):
        hint = None
    return text, hint
