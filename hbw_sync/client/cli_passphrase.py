"""Where the CLI gets passphrases, and the ``hbw-sync passphrase`` commands.

Environment variables (read here and nowhere else in the client):

- ``HBW_PASSPHRASE``: the current passphrase, for scripts. Commands that need
  none (``status``, ``sync``, ``watch``, ``bundle export``) never fail on a
  stale one: ``sync`` runs locked and warns.
- ``HBW_NEW_PASSPHRASE``: a passphrase being *chosen* without a terminal
  (``init``, ``join`` with a new store, ``passphrase change``). For ``init``
  and ``join`` ``HBW_PASSPHRASE`` also works, as it always has.

Choosing at a terminal says that a passphrase is being chosen, refuses a weak
one with the reason before asking to confirm, and asks twice.
"""

from __future__ import annotations

from typing import Iterable

import click

from ..cli_common import HbwGroup, emit, is_interactive, json_option
from ..errors import AccessError, UsageError, WrongKeyError
from . import passphrase as pp
from .cli_config import client_config
from .device import Device
from ..i18n import _

ENV_CURRENT = "HBW_PASSPHRASE"
ENV_NEW = "HBW_NEW_PASSPHRASE"
CHOOSE_TRIES = 5


def env_passphrase() -> str | None:
    """The current passphrase from the environment (HBW_PASSPHRASE, via ClientConfig), or None."""
    return client_config().passphrase


def current_passphrase(prompt: str = "Passphrase") -> str:
    """The passphrase that opens this device: HBW_PASSPHRASE, else asked once at a terminal."""
    p = env_passphrase()
    if p is not None:
        return p
    if is_interactive():
        return click.prompt(prompt, hide_input=True, err=True)
    raise AccessError(
        _("this command needs your passphrase, and there is no terminal to ask it on"),
        hint=_("set HBW_PASSPHRASE for scripts; 'status' and 'sync' need no passphrase"),
    )


def new_passphrase(known: Iterable[str] = (), *, current_env_too: bool = False) -> str:
    """A passphrase being chosen: HBW_NEW_PASSPHRASE (or HBW_PASSPHRASE if allowed), else asked twice.

    Strength is checked here too, so that a person is told before confirming;
    the library checks again (``Device.init``, ``passphrase.change``).
    """
    known = list(known)
    cfg = client_config()
    for p in (cfg.new_passphrase, cfg.passphrase) if current_env_too else (cfg.new_passphrase,):
        if p is not None:
            pp.require_strong(p, known)
            return p
    if not is_interactive():
        raise UsageError(
            _("choosing a passphrase needs a terminal, and there is none"),
            hint=_("for scripts set {ENV_NEW} to a strong passphrase (four or more unrelated words)").format(ENV_NEW=ENV_NEW),
        )
    click.echo(_("Choose a passphrase for this device. It protects everything you keep here at rest,\n"
                 "and you type it for commands that show or change content. Use four or more unrelated\n"
                 "words, e.g. 'orchid lantern 52 ferry'.") + " " + pp.RECOVERY, err=True)
    for _attempt in range(CHOOSE_TRIES):
        p = click.prompt(_("New passphrase"), hide_input=True, err=True)
        s = pp.strength(p, known)
        if not s.ok:
            said = _("Too easy to guess: {why}.").format(why=s.warning) if s.warning else _("Too easy to guess.")
            click.echo(said + " " + " ".join(s.suggestions or [_("Add another word or two.")]), err=True)
            continue
        if click.prompt(_("Type it again to confirm"), hide_input=True, err=True) != p:
            click.echo(_("The two entries differ; let's start again."), err=True)
            continue
        return p
    raise UsageError(_("no passphrase was chosen; nothing was changed"), code="usage.weak_passphrase")


def _device(ctx: click.Context) -> Device:
    dev = Device.open(ctx.find_root().params.get("home"))
    ctx.call_on_close(dev.close)
    return dev


@click.group("passphrase", cls=HbwGroup)
def passphrase_group() -> None:
    """Check or change this device's passphrase.

    A lost passphrase cannot be recovered: enroll the device again with a new
    invite; the team's data comes back from the relay, only unsent changes are lost.
    """


@passphrase_group.command("check")
@json_option
@click.pass_context
def check_cmd(ctx: click.Context) -> None:
    """Whether the passphrase (HBW_PASSPHRASE or typed) opens this device, and whether it is strong."""
    dev = _device(ctx)
    r = pp.check(dev, current_passphrase())
    if not r.opens:
        raise WrongKeyError(_("this passphrase does not open this device"),
                            hint=_("check {ENV_CURRENT} or retype it; if it is lost, see "
                                  "'hbw-sync passphrase --help'").format(ENV_CURRENT=ENV_CURRENT))
    s = r.strength
    assert s is not None

    def text() -> None:
        click.echo(_("This passphrase opens this device."))
        if not s.ok:
            click.echo(_("It is weaker than a new one may be today (score {score} of {MIN_SCORE}{v}). "
                  "Change it with 'hbw-sync passphrase change'.").format(score=s.score, MIN_SCORE=pp.MIN_SCORE, v=': ' + s.warning if s.warning else ''))

    emit(ctx, r.to_dict(), text)


@passphrase_group.command("change")
@json_option
@click.pass_context
def change_cmd(ctx: click.Context) -> None:
    """Choose a new passphrase (asked twice, or HBW_NEW_PASSPHRASE); the old one stops working.

    The change is one atomic step: if it is interrupted, the old passphrase still works.
    """
    dev = _device(ctx)
    old = current_passphrase(_("Current passphrase"))
    if not dev.opens_with(old):  # told before a new one is typed twice
        raise WrongKeyError(_("wrong passphrase; nothing was changed"), hint=_("check {ENV_CURRENT} or retype it").format(ENV_CURRENT=ENV_CURRENT))
    ident = dev.identity
    new = new_passphrase([ident.member, ident.team_name or ""])
    pp.change(dev, old, new)
    emit(ctx, {"changed": True, "home": str(dev.store.home)},
         _("Passphrase changed: only the new one opens this device now.\nIf a script or "
               "scheduler sets {ENV_CURRENT}, update it there too (a stale one does not stop "
               "'sync', but received changes then wait until you unlock).").format(ENV_CURRENT=ENV_CURRENT))


def register(cli: click.Group) -> None:
    cli.add_command(passphrase_group)
