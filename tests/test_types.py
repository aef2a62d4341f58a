"""The type hints are checked, not only written (STYLE.md §10).

mypy runs over the whole package with the settings in ``setup.cfg``: strict on the
sans-IO core (``hbw_sync/*.py`` and ``hbw_sync/delta/``), mypy's defaults on the
edges (``client/``, ``server/`` and the modules that import click), which are not
strict-clean yet. Its cache lives in a temporary directory, never in the repository.
A hint that lies (a ``str | None`` passed where ``str`` is needed, a record without
its fields' types) fails this test, so the seams the web app and tray code against
stay honest.
"""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EDGE_SECTION = "mypy-hbw_sync.client.*,hbw_sync.server.*,hbw_sync.cli_common,hbw_sync.click_words,hbw_sync.audit_cli"


def test_mypy_finds_nothing(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "setup.cfg"),
                        "--cache-dir", str(tmp_path / "mypy-cache"), "hbw_sync"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Success: no issues found" in p.stdout


def test_the_core_is_strict_and_only_the_edges_are_not() -> None:
    """The looser section names only edge packages: a core module cannot slip into it unnoticed."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg.getboolean("mypy", "strict")
    loose = [s for s in cfg.sections() if s.startswith("mypy-") and cfg.has_option(s, "strict")]
    assert loose == [EDGE_SECTION]
    core = {p.stem for p in (ROOT / "hbw_sync").glob("*.py")} | {"delta"}
    edges = {m.removeprefix("hbw_sync.").removesuffix(".*") for m in EDGE_SECTION.removeprefix("mypy-").split(",")}
    assert edges - {"client", "server"} <= core  # the click modules: the only top-level ones let off
    assert edges & core == {"cli_common", "click_words", "audit_cli"}


def test_mypy_would_catch_an_untyped_core_function(tmp_path: Path) -> None:
    """The strict settings really apply to a core module: a def without hints is an error there."""
    pkg = tmp_path / "hbw_sync"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "loose.py").write_text("def f(x):\n    return x\n")
    p = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "setup.cfg"),
                        "--cache-dir", str(tmp_path / "mypy-cache"), "hbw_sync"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 1 and "Function is missing a type annotation" in p.stdout, p.stdout + p.stderr
