"""The sans-IO seam, guarded (STYLE.md §2): the core imports no aiohttp, SQLite or click, and
reads no clock; the edges read the wall clock through ``hbw_sync.clock.now_ms`` only.

The core is every module at the top of ``hbw_sync/`` and ``hbw_sync/delta/``, found on disk
(so a new core module is checked without anyone listing it), except the three that serve
both command lines with click. Each is imported in a fresh interpreter, alone, so that a
module cannot pass because another one imported something first, or fail for another's sake.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from relay_helpers import Team

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "hbw_sync"
#: Top-level modules that are edges, not core: the click helpers both CLIs share.
EDGE = {"cli_common", "click_words", "audit_cli"}
FORBIDDEN = ("aiohttp", "sqlite3", "click")
CORE = sorted([f"hbw_sync.{p.stem}" for p in PKG.glob("*.py") if p.stem not in EDGE and p.stem != "__init__"]
              + ["hbw_sync.delta"] + [f"hbw_sync.delta.{p.stem}" for p in (PKG / "delta").glob("*.py")
                                      if p.stem != "__init__"])
#: Reads of the wall clock (time.monotonic, for durations, is not one).
WALL_CLOCK = re.compile(r"\btime\.time(?:_ns)?\(|\bdatetime\.now\(|\bdate\.today\(|\butcnow\(|\btime\.localtime\(\)"
                        r"|\btime\.gmtime\(\)")


def test_the_core_list_holds_what_it_should() -> None:
    assert {"hbw_sync.batch", "hbw_sync.codec", "hbw_sync.envelope", "hbw_sync.chunks", "hbw_sync.merge",
            "hbw_sync.delta.patch", "hbw_sync.delta.zipdoc", "hbw_sync.clock"} <= set(CORE)
    assert not {m for m in CORE if m.removeprefix("hbw_sync.") in EDGE}


def test_each_core_module_alone_imports_no_io_framework() -> None:
    """One interpreter per module, started together (two cores: about as long as the slowest import)."""
    code = ("import importlib, sys; importlib.import_module(sys.argv[1]); "
            f"print(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))")
    procs = {m: subprocess.Popen([sys.executable, "-c", code, m], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, cwd=ROOT) for m in CORE}
    leaks = {}
    for m, p in procs.items():
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, (m, err)
        if out.strip():
            leaks[m] = out.strip()
    assert not leaks, f"core modules that pull in I/O frameworks: {leaks}"


def test_the_check_would_catch_a_leak() -> None:
    """The same probe on an edge module does see click: the test above can fail."""
    code = f"import sys, hbw_sync.cli_common; print(','.join(m for m in {FORBIDDEN!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert "click" in out


@pytest.mark.parametrize("module", CORE)
def test_the_core_reads_no_clock(module: str) -> None:
    """``now`` is an argument in the core; only clock.py itself reads the time."""
    if module == "hbw_sync.clock":
        return
    path = ROOT / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = ROOT / module.replace(".", "/") / "__init__.py"
    text = path.read_text()
    assert not WALL_CLOCK.search(text), f"{module} reads the wall clock"
    assert not re.search(r"\bclock\b.*\bimport\b|\bimport\b.*\bclock\b|now_ms\(\)", text), \
        f"{module} calls the wall clock: take `now` as an argument instead"


def test_one_wall_clock_function() -> None:
    """Outside hbw_sync/clock.py, nothing in the package reads the wall clock (durations use monotonic)."""
    readers = sorted(p.relative_to(ROOT).as_posix() for p in PKG.glob("**/*.py")
                     if WALL_CLOCK.search(p.read_text()) and p.name != "clock.py")
    assert readers == []
    defs = sorted(p.relative_to(ROOT).as_posix() for p in PKG.glob("**/*.py") if "def now_ms(" in p.read_text())
    assert defs == ["hbw_sync/clock.py"]


def test_the_relay_audit_and_revoke_take_the_time_they_are_given(team: Team) -> None:
    """``relay.revoke`` and ``relay.audit`` read no clock: the time is the caller's (the request's, or
    the admin command's), so the device's ``revoked_ms`` and the audit entry carry exactly it."""
    from hbw_sync.server import admin, relay, storage

    team.join("chidi")
    device = admin.devices(team.data)[0]["device"]
    given = 1_700_000_000_123  # 2023, long before this test runs: a read clock would show
    store = storage.open_store(team.data)
    try:
        store.transact(relay.revoke, device, "admin", given)
    finally:
        store.close()
    assert next(d for d in admin.devices(team.data) if d["device"] == device)["revoked_ms"] == given
    entry = next(e for e in admin.audit_log(team.data) if e["action"] == "revoke")
    assert entry["time_ms"] == given and entry["detail"]["device"] == device
