"""The one place the client's front ends read the environment: ``client_config``.

The CLI group builds the ``ClientConfig`` once per command line (``ctx.obj``); commands,
``hbw-sync app`` and ``hbw-sync tray`` take it from there and pass its values down, so no
library module reads ``os.environ`` (``tests/test_config.py`` checks that).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from .config import ClientConfig


def client_config(ctx: click.Context | None = None) -> ClientConfig:
    """The ClientConfig the CLI group built for this command line.

    Outside a command (``language_setting`` runs before click parses) or under a command
    invoked without the group (a test calling one subcommand), one from the environment.
    """
    ctx = ctx if ctx is not None else click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    return obj if isinstance(obj, ClientConfig) else from_environment()


def from_environment(home: Path | None = None) -> ClientConfig:
    """``ClientConfig.from_env(os.environ)``: the client's only read of the process environment."""
    return ClientConfig.from_env(os.environ, home=home)
