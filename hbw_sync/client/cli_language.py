"""``hbw-sync config language [LANG]``: the language this device's hbw-sync speaks, kept in its home.

Why a file beside the store and not a row in it: the language is needed before the store is
opened (``--help`` is printed while click parses), for a store that may not exist yet (``init``),
and without the passphrase. ``HBW_LANG`` overrides it; "auto" follows the system (``LANG``).
"""

from __future__ import annotations

from pathlib import Path

import click

from ..cli_common import emit, json_option
from ..errors import UsageError
from ..i18n import LANGUAGES, _, pick_language, set_language
from .cli_config import client_config
from .cli_hints import CLI_HINTS

SETTING_FILE = "language"


def home_from_argv(argv: list[str]) -> Path:
    """The home a command line names with ``--home`` (before click has parsed it), else the default."""
    for i, a in enumerate(argv):
        if a == "--home" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if a.startswith("--home="):
            return Path(a.split("=", 1)[1])
    return client_config().store_home


def saved_language(home: Path) -> str | None:
    """The saved choice, or None: a missing, unreadable or foreign file (not one of our words) is ignored."""
    try:
        with (home / SETTING_FILE).open("rb") as f:
            raw = f.read(16)  # "auto\n" at most: a big file is not ours, and is not read further
    except OSError:
        return None
    text = raw.decode("ascii", errors="replace").strip()
    return text if text in LANGUAGES or text == "auto" else None


def language_setting(argv: list[str]) -> str | None:
    return saved_language(home_from_argv(argv))


def register(cli: click.Group) -> None:
    cli.language_setting = language_setting  # type: ignore[attr-defined]  # read by HbwGroup.main
    cli.hints = CLI_HINTS  # type: ignore[attr-defined]  # read by cli_common.report_error

    @cli.group("config", cls=type(cli))
    def config() -> None:
        """Settings of hbw-sync on this computer."""

    @config.command("language")
    @click.argument("language", required=False, type=click.Choice([*LANGUAGES, "auto"]))
    @json_option
    @click.pass_context
    def language_cmd(ctx: click.Context, language: str | None) -> None:
        """Show or set the language of hbw-sync: en, fr, or auto (follow the system's LANG).

        HBW_LANG, when set, wins over this setting.
        """
        cfg = client_config(ctx)
        home = cfg.store_home
        if language is None:
            saved = saved_language(home) or "auto"
            emit(ctx, {"language": saved, "hbw_lang": cfg.language},
                 _("Language: {language}.").format(language=saved))
            return
        try:
            home.mkdir(parents=True, exist_ok=True)
            (home / SETTING_FILE).write_text(language + "\n", encoding="utf-8")
        except OSError as e:
            raise UsageError(_("cannot save the language in {home}: {why}").format(home=home, why=e.strerror or e))
        set_language(pick_language(cfg.locale_env, language))
        emit(ctx, {"language": language, "hbw_lang": cfg.language},
             _("Language set to {language}.").format(language=language))
