"""What both CLIs share: error reporting with the exit-code table, and --json output.

Each CLI command is one library call; this module turns the call's result into
text or JSON and an ``HbwError`` into one clear message and the exit code from
``errors.exit_code_for``. Nothing here prompts unless a person is at a terminal.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import sys
from typing import Any, Callable, Sequence

import click

from . import timefmt
from .click_words import adopt_click
from .errors import HbwError, exit_code_for
from .i18n import N_, _, pick_language, set_language
from .messages import words

EX_SOFTWARE = 70


class HbwGroup(click.Group):
    """A click group that reports HbwError as a message plus its documented exit code.

    ``translate`` (a subclass sets it) turns an edge's own exceptions (SQLite's
    "database or disk is full") into an ``HbwError`` before they are reported,
    so a disk fault gets words and exit 74, not "internal error: OperationalError".
    """

    translate: Callable[[BaseException], HbwError | None] | None = None

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """Choose the language before click parses anything (``--help`` is printed while parsing).

        A front end may give the root group a ``language_setting(argv) -> str | None`` attribute
        (the client reads the saved ``config language``); ``HBW_LANG`` and ``LANG`` apply to all.
        """
        hook = getattr(self, "language_setting", None)
        argv = list(sys.argv[1:] if args is None else args)
        setting = None
        if hook is not None:
            try:
                setting = hook(argv)
            except OSError:  # an unreadable setting must not stop a command; the environment decides
                setting = None
        set_language(pick_language(os.environ, setting))
        adopt_click()
        translate_help(self)
        return super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                            standalone_mode=standalone_mode, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            try:
                return super().invoke(ctx)
            except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, HbwError, KeyboardInterrupt):
                raise
            except Exception as e:
                translate = type(self).translate
                mapped = translate(e) if translate is not None else None
                if mapped is None:
                    raise
                raise mapped from e
        except HbwError as e:
            report_error(ctx, e)
            ctx.exit(exit_code_for(e))
        except KeyboardInterrupt:
            click.echo(_("interrupted; nothing half-done was saved"), err=True)
            ctx.exit(130)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except OSError as e:  # disk full, permissions on an output file...
            what = e.strerror or str(e)
            click.echo(_("error: {what}: {file}").format(what=what, file=e.filename) if e.filename
                       else _("error: {what}").format(what=what), err=True)
            ctx.exit(74)
        except Exception as e:  # a bug: one line for the person, the traceback with HBW_DEBUG=1
            if os.environ.get("HBW_DEBUG"):
                raise
            # Words for the person; the class name goes to the log (info: Python would print an unhandled
            # warning to stderr) and to HBW_DEBUG=1.
            logging.getLogger("hbw_sync").info("internal error: %s: %s", type(e).__name__, e)
            click.echo(_("internal error (a bug in hbw-sync): {v}. Run the command again with "
                  "HBW_DEBUG=1 for the details, and send them to whoever looks after hbw-sync.").format(v=e or 'no detail'), err=True)
            ctx.exit(EX_SOFTWARE)


def help_key(text: str) -> str:
    """The catalog key of a help text: what ``scripts/i18n.py`` extracts from ``help=`` and docstrings."""
    return inspect.cleandoc(text).split("\f")[0].rstrip()


def translate_help(cmd: click.Command) -> None:
    """Put every help text of ``cmd``'s tree in the current language.

    Why at run time and not ``help=_("...")`` at import: the modules are imported before the
    language is known (``--home``'s setting, a test switching languages); the English text stays in
    ``_hbw_help`` so translating again (another language in the same process) starts from it.
    """
    def put(obj: Any, attr: str) -> None:
        saved = f"_hbw_{attr}"
        if saved not in obj.__dict__:
            obj.__dict__[saved] = getattr(obj, attr)
        original = obj.__dict__[saved]
        setattr(obj, attr, _(help_key(original)) if isinstance(original, str) and original.strip() else original)

    put(cmd, "help")
    put(cmd, "short_help")
    cmd._help_option = None  # click caches the --help option with its text in the language of its first use
    for p in cmd.params:
        if isinstance(p, click.Option):
            put(p, "help")
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            translate_help(sub)


def wants_json(ctx: click.Context) -> bool:
    return bool(ctx.find_root().meta.get("hbw_json"))


def report_error(ctx: click.Context, e: HbwError) -> None:
    if wants_json(ctx):
        click.echo(json.dumps(e.to_dict()))
    # Words rendered now, in the person's language, from the code (messages.py); the root group's
    # ``hints`` table (client/cli_hints.py) gives the hints that name this CLI's commands.
    message, hint = words(e, getattr(ctx.find_root().command, "hints", None))
    click.echo(_("error: {message}").format(message=message), err=True)
    if hint:
        click.echo(_("hint: {hint}").format(hint=hint), err=True)


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.find_root().meta["hbw_json"] = True
    return value


def json_option(f: Callable) -> Callable:
    """--json: print machine-readable output (and errors) on stdout."""
    return click.option(
        "--json", "as_json", is_flag=True, expose_value=False, callback=_set_json, help=N_("Print JSON for scripts.")
    )(f)


def emit(ctx: click.Context, data: Any, text: Callable[[], None] | str | None = None) -> None:
    """Print ``data`` as JSON if --json was given, else run/print the human form.

    JSON has one form in both CLIs (issue 11, item 3): times as ISO 8601 UTC with Z
    (``timefmt.machine_form`` turns each ``*_ms`` key into one), sizes as integer bytes.
    Applied here, once, so no command of either CLI can print the other form.
    """
    if wants_json(ctx):
        click.echo(json.dumps(timefmt.machine_form(data), indent=None, default=str, ensure_ascii=False))
    elif callable(text):
        text()
    elif text is not None:
        click.echo(text)


def is_interactive() -> bool:
    return sys.stdin.isatty() and not os.environ.get("CI")
