"""External programs some tests need (LibreOffice, Chromium, PostgreSQL), found one way.

On a laptop without the program, the test skips with a loud reason that says what to
install. In CI, ``HBW_REQUIRE`` names the programs that must be there (``.ci/run`` sets it
after installing them), and a missing one *fails* the test instead: a green CI can never
hide a test that silently did not run.
"""

from __future__ import annotations

import os
import shutil

import pytest

# name -> (executables to look for, Debian packages that provide it)
PROGRAMS: dict[str, tuple[tuple[str, ...], str]] = {
    "libreoffice": (("soffice", "libreoffice"),
                    "libreoffice-core-nogui libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui"),
    "chromium": (("chromium", "chromium-browser"), "chromium"),
    "postgres": (("initdb", "pg_ctl"), "postgresql"),
    "node": (("node",), "nodejs npm"),
}


def required() -> set[str]:
    """Programs CI insists on (``HBW_REQUIRE=libreoffice,chromium``)."""
    return {p.strip() for p in os.environ.get("HBW_REQUIRE", "").split(",") if p.strip()}


def find(name: str) -> str | None:
    """Path of the program's executable, or None. PostgreSQL's live outside PATH on Debian."""
    exes, _ = PROGRAMS[name]
    for exe in exes:
        path = shutil.which(exe)
        if path:
            return path
    if name == "postgres":
        import glob
        for found in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True):
            return found
    return None


def need(name: str) -> str:
    """Return the executable's path, or skip (laptop) / fail (CI requires it) with the reason."""
    path = find(name)
    if path:
        return path
    _, packages = PROGRAMS[name]
    reason = (f"{name} is not installed: this test needs it "
              f"(Debian: apt-get install {packages})")
    if name in required():
        pytest.fail(f"HBW_REQUIRE names {name}, but {reason}", pytrace=False)
    pytest.skip(f"SKIPPED LOUDLY: {reason}")
    raise AssertionError("unreachable")
