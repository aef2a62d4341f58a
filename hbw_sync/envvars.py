"""Every environment variable hbw-sync, its relay, its tests and its scripts read: one table.

Why one table (STYLE.md §12): a variable read in one corner and documented in none is a
setting nobody can find, and one documented but no longer read is a setting that silently
does nothing. ``tests/test_config.py`` fails when the code reads a variable that is not
here, when a row here is read nowhere, and when the README's table (made by
``markdown_table``) differs from this one. The library reads none of them itself: the
client's edges build a ``client.config.ClientConfig`` once (``ClientConfig.from_env``) and
pass it down; the relay's come through its click options (``envvar=``).

Pure data, no I/O: part of the sans-IO core.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EnvVar:
    name: str
    #: What applies when it is unset, in words.
    default: str
    meaning: str
    #: Who reads it: "client", "relay", "both" (the two CLIs), "tests" or "scripts".
    read_by: str


ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar("HBW_SYNC_HOME", "your user data folder (`~/.local/share/hbw-sync`, `%LOCALAPPDATA%\\hbw-sync`)",
           "the client's store folder; same as `--home`", "client"),
    EnvVar("HBW_PASSPHRASE", "asked at a terminal; refused without one",
           "the passphrase that opens this device, for scripts and schedulers", "client"),
    EnvVar("HBW_NEW_PASSPHRASE", "asked twice at a terminal",
           "a passphrase being chosen (`init`, `join`, `passphrase change`) without a terminal", "client"),
    EnvVar("HBW_LANG", "the saved `config language`, else the system's (`LANGUAGE`, `LC_ALL`, `LC_MESSAGES`, `LANG`)",
           "the language of what hbw-sync prints (`en`, `fr`); wins over the saved setting", "both"),
    EnvVar("HBW_DEBUG", "unset: an internal error is one line",
           "`1`: an internal error also prints its traceback", "both"),
    EnvVar("CI", "unset", "set: never prompt (as if there were no terminal)", "both"),
    EnvVar("XDG_CONFIG_HOME", "`~/.config`", "where `schedule install` writes systemd user units", "client"),
    EnvVar("HBW_RELAY_DATA", "none: `--data` is then required", "the relay's data folder; same as `--data`", "relay"),
    EnvVar("HBW_RELAY_DATABASE", "unset: SQLite in the data folder",
           "a PostgreSQL URL for the relay; same as `--database`", "relay"),
    EnvVar("HBW_RELAY_TEAM", "none: `--team` is then required on a multi-team folder",
           "the team an admin command is for, in a multi-team relay folder; same as `--team`", "relay"),
    EnvVar("HBW_SLOW_TESTS", "unset: the quick suite", "`1`: long fuzz runs and the benchmark smoke runs", "tests"),
    EnvVar("HBW_REQUIRE", "unset: tests needing a missing program skip",
           "comma-separated programs the tests must find, not skip (`.ci/run` sets `libreoffice,tmpfs,node,chromium,postgres`)", "tests"),
    EnvVar("HBW_SCREENSHOTS", "unset: screenshots stay in the test's tmp folder",
           "a folder where the browser tests also save the app's screenshots (for the docs)", "tests"),
    EnvVar("HBW_VENV", "`.venv`", "the virtual environment `scripts/test` and `scripts/demo` create and use", "scripts"),
)

#: The locale variables the client reads for its language and date order (beside HBW_LANG).
LOCALE_VARS: tuple[str, ...] = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LC_TIME", "LANG")


def markdown_table() -> str:
    """The README's table of ``ENV_VARS``."""
    rows = ["| variable | read by | when unset | meaning |", "|---|---|---|---|"]
    rows += [f"| `{v.name}` | {v.read_by} | {v.default} | {v.meaning} |" for v in ENV_VARS]
    return "\n".join(rows)
