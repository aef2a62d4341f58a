"""The ``hbw-relay`` command line. The relay itself comes with the relay issue."""

from __future__ import annotations

import click

from .. import __version__
from ..cli_common import HbwGroup


@click.group(cls=HbwGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hbw-relay")
def cli() -> None:
    """The office relay for hbw-sync: enrolls devices and passes sealed batches between them.

    The relay sees who holds which task, never titles, descriptions or
    document bytes. (Serving, enrollment and administration arrive with the
    relay; this version only reports its version.)
    """


def main() -> None:
    cli(prog_name="hbw-relay")


if __name__ == "__main__":
    main()
