"""What every ``scripts/bench_*.py --json`` records beside its figures (STYLE.md §8).

A figure is only worth quoting next to what produced it: the commit (and whether the
tree had uncommitted changes), the machine (CPU count, load when the run started: on a
shared 2-core box the load moves figures a lot) and the versions of the libraries that
do the work (zstd, SQLite, cryptography, aiohttp...). ``stamp`` adds that, and one
``targets_met`` boolean, to a benchmark's JSON; the convention every bench script keeps:

* exit 0 when every target it checks is met, 1 when one is missed (and the miss is in
  the output: ``targets_met`` is false in the JSON), anything else is a failure;
* ``--quick`` is a smoke run (small counts, seconds to a minute), which
  ``tests/test_benchmarks.py`` runs for every script so none can rot unnoticed.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: The distributions whose code the benchmarks time (what a "before/after" must hold equal).
LIBRARIES = ("zstandard", "msgpack", "cryptography", "aiohttp", "sqlite-utils", "pyfastcdc", "xxhash",
             "python-calamine", "openpyxl", "psycopg")


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except OSError:
        return ""


def environment() -> dict[str, Any]:
    """Commit, machine and library versions of this run."""
    libs: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            libs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libs[name] = None
    try:
        import zstandard

        libs["libzstd"] = zstandard.ZSTD_VERSION and ".".join(map(str, zstandard.ZSTD_VERSION))
    except ImportError:
        libs["libzstd"] = None
    libs["libsqlite3"] = sqlite3.sqlite_version
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):  # not on Windows
        load = None
    return {
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "machine": platform.machine(),
        "system": platform.platform(),
        "cpus": os.cpu_count(),
        "load_at_start": load,
        "python": platform.python_version(),
        "libraries": libs,
    }


def stamp(result: dict[str, Any], targets_met: bool, *, quick: bool) -> dict[str, Any]:
    """``result`` with the run's environment, whether it was ``--quick``, and ``targets_met``."""
    return {**result, "quick": quick, "targets_met": bool(targets_met), "environment": environment()}


def run_on_throwaway_pg(bench: Any, cfg: dict[str, Any], prefix: str, quick: bool, as_json: bool,
                        markdown: Any) -> int:
    """Run an async ``bench(cfg, tmp, log)`` against a throwaway PostgreSQL (tests/pg.py), print its
    figures (JSON stamped, or markdown) and return the exit code: 0 when every row had no errors."""
    import asyncio
    import json
    import sys
    import tempfile

    from pg import PgServer  # tests/pg.py: a throwaway cluster

    cfg["pg"] = PgServer()
    log = (lambda *x: print(*x, file=sys.stderr, flush=True))
    try:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            res = asyncio.run(bench(cfg, Path(tmp), log))
    finally:
        cfg["pg"].stop()
    ok = all(r["errors"] == 0 and r["enroll_errors"] == 0 for r in res["rows"])
    print(json.dumps(stamp(res, ok, quick=quick), indent=2, default=str) if as_json else markdown(res))
    return 0 if ok else 1
