"""Translation of every string a person reads (CLI, app, tray, office page).

Why one module: every layer imports ``_`` (and ``ngettext``) from here, so the language is chosen
in one place (``LANG``/``LANGUAGE`` or an explicit ``set_language``) and a test can extract every
marked string and check that each shipped catalog translates it. Machine output (``--json``,
protocol codes, log lines) is never translated.
"""
from __future__ import annotations

import gettext as _gettext
from pathlib import Path
from typing import Mapping

DOMAIN = "hbw_sync"
LOCALE_DIR = Path(__file__).parent / "locale"

#: The languages shipped besides English (the msgids); ``config language`` accepts these and "en".
LANGUAGES = ("en", "fr")

_translation: _gettext.NullTranslations | None = None


def pick_language(env: Mapping[str, str], setting: str | None = None) -> str | None:
    """The language to use: ``HBW_LANG``, else the saved setting (``hbw-sync config language``), else
    ``None``, which lets gettext follow LANGUAGE, LC_ALL, LC_MESSAGES and LANG (``fr_FR.UTF-8`` → French).

    Why HBW_LANG first: a shared office desk machine may run in one language for its user while a
    script or a test wants another; "auto" in either place means "follow the system".
    """
    for choice in (env.get("HBW_LANG"), setting):
        if choice and choice.strip() and choice.strip().lower() != "auto":
            return choice.strip()
    return None


def set_language(language: str | None) -> None:
    """Pick the catalog: ``None`` follows the environment (LANGUAGE, LC_ALL, LC_MESSAGES, LANG)."""
    global _translation
    languages = [language] if language else None
    _translation = _gettext.translation(DOMAIN, localedir=LOCALE_DIR, languages=languages,
                                        fallback=True)


def _current() -> _gettext.NullTranslations:
    if _translation is None:
        set_language(None)
    assert _translation is not None
    return _translation


def speaks_english() -> bool:
    """Whether the current catalog is English (the msgids themselves): no catalog, or an English one."""
    t = _current()
    return not isinstance(t, _gettext.GNUTranslations) or t.info().get("language", "en").startswith("en")


def _(message: str) -> str:
    """The message in the person's language (English when no catalog has it)."""
    return _current().gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """Singular or plural form of a message for the count ``n``, in the person's language."""
    return _current().ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Mark a string for extraction where it is defined (a table at import time); ``_()`` it where shown."""
    return message


def N_plural(singular: str, plural: str) -> tuple[str, str]:
    """Mark a singular/plural pair in a table (extracted like ``ngettext``); ``ngettext`` it where shown."""
    return (singular, plural)
