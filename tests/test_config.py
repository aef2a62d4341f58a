"""Configuration in one place (STYLE.md §12): one table of environment variables, one reader.

``hbw_sync/envvars.py`` lists every variable; these tests fail when the code reads one the
table lacks, when a row is read nowhere, when the README's copy drifts, and when a library
module reads ``os.environ`` itself instead of taking the ``ClientConfig`` its front end built.
Then the config's own behaviour, through the real CLI where it matters.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from hbw_sync.client import schedule
from hbw_sync.client.cli import cli as client_cli
from hbw_sync.client.config import ClientConfig
from hbw_sync.client.store import default_home
from hbw_sync.envvars import ENV_VARS, LOCALE_VARS, markdown_table

ROOT = Path(__file__).resolve().parent.parent
NAMES = {v.name for v in ENV_VARS}
HBW_TOKEN = re.compile(r"\bHBW_[A-Z][A-Z0-9_]*\b")
#: environ.get("X"), environ["X"], getenv("X"), click's envvar="X", env.get("X") on a passed-in mapping
READ = re.compile(r"""(?:environ\.get\(|environ\[|getenv\(|envvar=|env\.get\(|environ\.get\(\s*)\s*["']([A-Z][A-Z0-9_]*)["']""")
#: The front ends that may touch os.environ: the client's one reader, and what both CLIs share
#: (the language before click parses, HBW_DEBUG, CI).
ENV_READERS = {"hbw_sync/client/cli_config.py", "hbw_sync/cli_common.py"}


def _sources() -> list[Path]:
    files = [*ROOT.glob("hbw_sync/**/*.py"), *ROOT.glob("scripts/*"), *ROOT.glob("tests/*.py"), ROOT / ".ci" / "run"]
    return [f for f in files if f.is_file() and f.name != "envvars.py" and f != Path(__file__)]


def _rel(f: Path) -> str:
    return f.relative_to(ROOT).as_posix()


def test_every_hbw_variable_in_the_code_is_in_the_table() -> None:
    unknown = {(_rel(f), name) for f in _sources() for name in HBW_TOKEN.findall(f.read_text(errors="replace"))
               if name not in NAMES}
    assert not unknown, f"add these to hbw_sync/envvars.py ENV_VARS: {sorted(unknown)}"


def test_every_variable_the_package_reads_is_in_the_table() -> None:
    read = {(_rel(f), name) for f in ROOT.glob("hbw_sync/**/*.py") for name in READ.findall(f.read_text())}
    assert {n for _f, n in read} >= {"HBW_LANG", "HBW_DEBUG", "CI", "XDG_CONFIG_HOME", "HBW_RELAY_DATA"}  # the regex sees them
    unknown = {(f, n) for f, n in read if n not in NAMES | set(LOCALE_VARS)}
    assert not unknown, f"add these to hbw_sync/envvars.py ENV_VARS: {sorted(unknown)}"


def test_every_row_of_the_table_is_read_somewhere() -> None:
    text = "\n".join(f.read_text(errors="replace") for f in _sources())
    stale = [v.name for v in ENV_VARS if v.name not in text]
    assert not stale, f"rows of ENV_VARS nothing reads any more: {stale}"


def test_only_the_front_ends_read_os_environ() -> None:
    readers = {_rel(f) for f in ROOT.glob("hbw_sync/**/*.py")
               if re.search(r"\bos\.environ\b|\bos\.getenv\b|\bgetenv\(", _code(f.read_text()))}
    assert readers == ENV_READERS


def _code(text: str) -> str:
    """The text without comments and docstring lines (which may name os.environ to explain)."""
    return "\n".join(line for line in text.splitlines()
                     if not line.lstrip().startswith(("#", '"""', "``")) and "os.environ``" not in line)


def test_the_readme_shows_the_table() -> None:
    assert markdown_table() in (ROOT / "README.md").read_text()


def test_from_env_reads_the_table_and_home_wins() -> None:
    env = {"HBW_SYNC_HOME": "/srv/a", "HBW_PASSPHRASE": "p1", "HBW_NEW_PASSPHRASE": "p2", "HBW_LANG": "fr",
           "LANG": "en_US.UTF-8", "PATH": "/bin", "XDG_CONFIG_HOME": "/x"}
    cfg = ClientConfig.from_env(env)
    assert cfg.home == Path("/srv/a") and cfg.store_home == Path("/srv/a")
    assert (cfg.passphrase, cfg.new_passphrase, cfg.language) == ("p1", "p2", "fr")
    assert dict(cfg.locale_env) == {"HBW_LANG": "fr", "LANG": "en_US.UTF-8"}  # nothing else of the environment
    assert cfg.scheduler_env == {"XDG_CONFIG_HOME": "/x"}
    assert ClientConfig.from_env(env, home=Path("/given")).home == Path("/given")  # --home wins
    empty = ClientConfig.from_env({})
    assert empty.home is None and empty.store_home == default_home() and empty.passphrase is None
    assert empty.scheduler_env == {}


def test_the_library_reads_no_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HBW_SYNC_HOME", str(tmp_path / "from-env"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_home() != tmp_path / "from-env"
    assert schedule.systemd_dir() == Path.home() / ".config" / "systemd" / "user"
    assert schedule.systemd_dir({"XDG_CONFIG_HOME": str(tmp_path / "xdg")}) == tmp_path / "xdg" / "systemd" / "user"


def test_the_cli_still_takes_its_home_and_language_from_the_environment(tmp_path: Path) -> None:
    """HBW_SYNC_HOME reaches the language setting read before click parses, and --home wins over it."""
    home, other = tmp_path / "env-home", tmp_path / "flag-home"
    runner = CliRunner()
    env = {"HBW_SYNC_HOME": str(home), "HBW_LANG": None}
    res = runner.invoke(client_cli, ["config", "language", "fr"], env=env)
    assert res.exit_code == 0, res.output
    assert (home / "language").read_text().strip() == "fr"
    res = runner.invoke(client_cli, ["config", "language", "--json"], env=env)
    assert json.loads(res.output) == {"language": "fr", "hbw_lang": None}
    res = runner.invoke(client_cli, ["--help"], env=env)
    assert "Travaillez" in res.output or "hors ligne" in res.output, res.output  # the saved French, from HBW_SYNC_HOME
    res = runner.invoke(client_cli, ["--home", str(other), "config", "language", "--json"], env=env)
    assert json.loads(res.output)["language"] == "auto"  # --home wins over HBW_SYNC_HOME
    res = runner.invoke(client_cli, ["config", "language", "--json"], env={**env, "HBW_LANG": "en"})
    assert json.loads(res.output) == {"language": "fr", "hbw_lang": "en"}
