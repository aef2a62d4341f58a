"""The client's settings from the environment, read once at the edge and passed down.

Why (STYLE.md §12): when the library reads ``os.environ`` wherever it likes, a web app or
tray that wants another home, language or passphrase has to mutate the process
environment, and nobody can list what the program reads. So the front ends (the CLI group,
``hbw-sync app``, ``hbw-sync tray``) build one ``ClientConfig`` with
``ClientConfig.from_env(os.environ)`` and hand its values down; library modules take them
as arguments. (HBW_DEBUG and CI, which both CLIs share, are read by ``cli_common``.)
Every variable read here is in ``hbw_sync.envvars.ENV_VARS``
(``tests/test_config.py`` checks both ways).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ..envvars import LOCALE_VARS
from .store import default_home


@dataclass(frozen=True)
class ClientConfig:
    #: The store folder given (``--home`` or HBW_SYNC_HOME); None: the platform's user data folder.
    home: Path | None = None
    #: HBW_PASSPHRASE: the passphrase that opens this device, for scripts; None: ask at a terminal.
    passphrase: str | None = None
    #: HBW_NEW_PASSPHRASE: a passphrase being chosen without a terminal.
    new_passphrase: str | None = None
    #: HBW_LANG, and the locale variables (LANGUAGE, LC_ALL, LC_MESSAGES, LC_TIME, LANG) that set
    #: the language when neither it nor the saved setting does, and the date order of imports.
    locale_env: Mapping[str, str] = field(default_factory=dict)
    #: XDG_CONFIG_HOME: where ``schedule`` writes systemd user units (None: ~/.config).
    xdg_config_home: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, home: Path | None = None) -> ClientConfig:
        """The settings in ``environ`` (``os.environ`` at the edge); ``home`` (``--home``) wins over HBW_SYNC_HOME."""
        env_home = environ.get("HBW_SYNC_HOME")
        return cls(
            home=home if home is not None else (Path(env_home) if env_home else None),
            passphrase=environ.get("HBW_PASSPHRASE"),
            new_passphrase=environ.get("HBW_NEW_PASSPHRASE"),
            locale_env={k: environ[k] for k in ("HBW_LANG", *LOCALE_VARS) if k in environ},
            xdg_config_home=environ.get("XDG_CONFIG_HOME") or None,
        )

    @property
    def store_home(self) -> Path:
        """The folder the store is in: ``home``, else the platform's user data folder."""
        return self.home if self.home is not None else default_home()

    @property
    def language(self) -> str | None:
        """HBW_LANG, which wins over the saved ``config language``."""
        return self.locale_env.get("HBW_LANG")

    @property
    def scheduler_env(self) -> dict[str, str]:
        """What ``schedule`` needs of the environment (where systemd user units live)."""
        return {"XDG_CONFIG_HOME": self.xdg_config_home} if self.xdg_config_home else {}
