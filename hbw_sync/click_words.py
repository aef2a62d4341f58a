"""click's own words (``Usage:``, ``Options``, ``Missing argument``...) in hbw-sync's catalog.

Why: click translates these with the stdlib ``gettext.gettext`` under gettext's global domain,
which knows neither ``HBW_LANG`` nor the ``config language`` setting, and click ships no French.
``adopt_click()`` points the ``_``/``ngettext`` that click's modules imported at ``hbw_sync.i18n``;
the strings below (copied exactly from click 8.x) are listed so that extraction puts them in our
catalog and the completeness test holds the French to them. A click string missing here stays
English: never wrong, only untranslated.
"""

from __future__ import annotations

import importlib

from . import i18n
from .i18n import N_, ngettext

CLICK_MODULES = ("click.core", "click.decorators", "click.exceptions", "click.formatting", "click.parser",
                 "click.termui", "click.types", "click.utils")

WORDS = (
    N_("Usage:"), N_("Options"), N_("Commands"), N_("Show this message and exit."), N_("Show the version and exit."),
    N_("%(prog)s, version %(version)s"), N_("Error: {message}"), N_("Try '{command} {option}' for help."),
    N_("Aborted!"), N_("Missing argument"), N_("Missing option"), N_("Missing parameter"), N_("Missing command."),
    N_("Missing {param_type}"), N_("Missing parameter: {param_name}"), N_("No such command {name!r}."),
    N_("No such option {name!r}."), N_("Invalid value for {param_hint}: {message}"), N_("Invalid value: {message}"),
    N_("Option {name!r} does not take a value."), N_("{value!r} is not a valid {number_type}."),
    N_("{value} is not in the range {range}."), N_("default: {default}"), N_("env var: {var}"),
    N_("Do you want to continue?"), N_("Repeat for confirmation"), N_("Error: The two entered values do not match."),
    N_("Error: invalid input"), N_("{name} {filename!r} does not exist."), N_("{name} {filename!r} is a directory."),
    N_("{name} {filename!r} is a file."), N_("Could not open file {filename!r}: {message}"), N_("file"),
    N_("directory"), N_("path"), N_("required"), N_("Choose from:\n\t{choices}"),
)


def _plurals(n: int) -> tuple[str, ...]:
    """Never called: marks click's plural messages for extraction (``ngettext`` needs both forms)."""
    return (
        ngettext("Got unexpected extra argument ({args})", "Got unexpected extra arguments ({args})", n),
        ngettext("Option {name!r} requires an argument.", "Option {name!r} requires {nargs} arguments.", n),
        ngettext("{value!r} is not {choice}.", "{value!r} is not one of {choices}.", n),
        ngettext("Did you mean {possibility}?", "(Did you mean one of: {possibilities}?)", n),
    )


def adopt_click() -> None:
    """Make click's own messages follow hbw-sync's language (idempotent)."""
    for name in CLICK_MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError:  # a click without this module: its words stay English
            continue
        if hasattr(mod, "_"):
            mod._ = i18n._  # type: ignore[attr-defined]
        if hasattr(mod, "ngettext"):
            mod.ngettext = i18n.ngettext  # type: ignore[attr-defined]
