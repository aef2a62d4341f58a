"""Two languages: every marked string has a French translation, and the CLI speaks it when asked.

The catalog test extracts the strings from the code the same way ``scripts/i18n.py`` does, so
a string added without a translation (or with a placeholder renamed) fails here, and so does a
``.po`` edited without recompiling the committed ``.mo``.
"""

from __future__ import annotations

import gettext
import importlib.util
import os
import string
import subprocess
import sys
import symtable
from pathlib import Path

import pytest
from click.testing import CliRunner

from hbw_sync import i18n
from hbw_sync.client.cli import cli

ROOT = Path(__file__).resolve().parent.parent


def _tool():
    spec = importlib.util.spec_from_file_location("hbw_i18n_tool", ROOT / "scripts" / "i18n.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["hbw_i18n_tool"] = mod
    spec.loader.exec_module(mod)
    return mod


tool = _tool()


@pytest.fixture(autouse=True)
def _english_after() -> None:
    """A test here may switch the process to French; the next test (of any module) starts in English."""
    yield
    i18n.set_language("en")


def test_french_catalog_translates_every_marked_string() -> None:
    assert tool.problems("fr") == []


def test_extraction_finds_calls_help_texts_and_command_docstrings() -> None:
    src = '''
import click
@cli.command("x")
@click.option("--y", help="""Some
    help.""")
def x():
    """Do X.

    More words.\\f
    Not for people.
    """
    click.echo(_("Done {n}.").format(n=1))
    ngettext("one file", "{n} files", 2)
    LABEL = N_("Later")
'''
    got = {(e.msgid, e.plural) for e in tool.extract_source(src, "x.py")}
    assert got == {("Some\nhelp.", None), ("Do X.\n\nMore words.", None), ("Done {n}.", None),
                   ("one file", "{n} files"), ("Later", None)}


def test_a_string_missing_from_the_catalog_is_reported() -> None:
    template = {("New words", None): tool.Entry("New words", refs=["x.py:1"])}
    merged = tool.merge(template, [])
    assert [e.translated() for e in merged] == [False]


def test_translations_keep_the_placeholders_and_format() -> None:
    _header, entries = tool.read_po(tool.po_path("fr"))
    assert len(entries) > 500
    for e in entries:
        for form in e.msgstr:
            assert tool.placeholders(form) in (tool.placeholders(e.msgid), tool.placeholders(e.plural or "")), e.msgid
            list(string.Formatter().parse(form))  # no stray brace: .format() would raise on it


def test_committed_mo_is_what_gettext_reads() -> None:
    mo = tool.po_path("fr").with_suffix(".mo")
    with mo.open("rb") as f:
        t = gettext.GNUTranslations(f)
    assert t.gettext("No tasks.") == "Aucune tâche."
    assert t.ngettext("{n} approved device waits for the team key from this device",
                      "{n} approved devices wait for the team key from this device", 2).startswith("{n} appareils")


def test_pick_language_order() -> None:
    assert i18n.pick_language({"HBW_LANG": "fr", "LANG": "en_US.UTF-8"}, "en") == "fr"
    assert i18n.pick_language({"LANG": "en_US.UTF-8"}, "fr") == "fr"
    assert i18n.pick_language({"HBW_LANG": "auto"}, "auto") is None
    assert i18n.pick_language({}, None) is None


def test_no_function_shadows_the_gettext_underscore() -> None:
    """``for _ in ...`` in a function that also calls ``_()`` would call an int: keep them apart."""
    bad = []
    for path in (ROOT / "hbw_sync").rglob("*.py"):
        src = path.read_text(encoding="utf-8")
        if "_(" not in src:
            continue

        def walk(table: symtable.SymbolTable) -> None:
            for child in table.get_children():
                try:
                    sym = child.lookup("_")
                    if sym.is_assigned() or sym.is_parameter():
                        bad.append(f"{path.relative_to(ROOT)}:{child.get_lineno()} {child.get_name()}")
                except KeyError:
                    pass
                walk(child)

        walk(symtable.symtable(src, str(path), "exec"))
    assert bad == []


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HBW_LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
    env.update(extra)
    return env


def test_lang_fr_makes_the_real_cli_speak_french(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cmd = [sys.executable, "-m", "hbw_sync.client.cli", "--home", str(home)]
    r = subprocess.run([*cmd, "status"], env=_env(LANG="fr_FR.UTF-8"), capture_output=True, text=True, timeout=60)
    assert r.returncode == 78
    assert "erreur\u00a0: aucun magasin hbw-sync dans" in r.stderr
    assert "conseil\u00a0: lancez d'abord «\u00a0hbw-sync init" in r.stderr
    r = subprocess.run([*cmd, "task", "add", "--help"], env=_env(LANG="fr_FR.UTF-8"), capture_output=True,
                       text=True, timeout=60)
    assert "Utilisation\u00a0:" in r.stdout and "Ajoute une tâche intitulée TITRE" in r.stdout
    assert "Afficher ce message et quitter." in r.stdout
    r = subprocess.run([*cmd, "status"], env=_env(LANG="fr_FR.UTF-8", HBW_LANG="en"), capture_output=True,
                       text=True, timeout=60)
    assert "error: no hbw-sync store in" in r.stderr  # HBW_LANG wins over LANG


def test_config_language_is_kept_and_followed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    runner = CliRunner()
    no_env = {"HBW_LANG": None, "LANGUAGE": None, "LC_ALL": None, "LC_MESSAGES": None, "LANG": None}
    r = runner.invoke(cli, ["--home", str(home), "config", "language", "fr"], env=no_env, catch_exceptions=False)
    assert r.exit_code == 0 and "Langue réglée sur fr." in r.output
    r = runner.invoke(cli, ["--home", str(home), "status"], env=no_env)
    assert r.exit_code == 78 and "aucun magasin hbw-sync" in r.output
    r = runner.invoke(cli, ["--home", str(home), "config", "language", "--json"], env=no_env)
    assert '"language": "fr"' in r.output
    # The same process back in English: help texts are translated from the English kept aside.
    r = runner.invoke(cli, ["--home", str(home), "--help"], env={**no_env, "HBW_LANG": "en"})
    assert "Work on your team's tasks" in r.output and "Travaillez" not in r.output
    r = runner.invoke(cli, ["--home", str(home), "--help"], env={**no_env, "HBW_LANG": "fr"})
    assert "Travaillez hors ligne" in r.output
    r = runner.invoke(cli, ["--home", str(home), "config", "language", "klingon"], env=no_env)
    assert r.exit_code == 2
    assert (home / "language").read_text().strip() == "fr"  # a refused value changes nothing


def test_a_damaged_language_setting_is_ignored(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "language").write_bytes(b"\xff\xfe" + b"fr" * 10_000)
    r = CliRunner().invoke(cli, ["--home", str(home), "status"], env={"HBW_LANG": None, "LANG": None,
                                                                     "LANGUAGE": None, "LC_ALL": None})
    assert r.exit_code == 78 and "no hbw-sync store" in r.output
