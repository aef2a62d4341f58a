"""Every ``scripts/bench_*.py`` still runs (STYLE.md §8): benchmarks nobody runs rot.

One test per script runs it the way a person quoting figures would, ``--quick --json``, in a
subprocess, and checks the convention ``scripts/_benchkit.py`` states: exit 0 when its
targets are met, exit 1 only for a missed target that its JSON says it missed
(``targets_met`` false: a timing target missed on this shared 2-core machine is the
benchmark's news, not a broken script), anything else (a traceback, no JSON) fails. The JSON
must record what the figures came from: commit, machine, library versions.

The quick runs of the faster scripts are part of the default suite (about 40 s together);
the ones that take minutes or need PostgreSQL run with ``HBW_SLOW_TESTS=1``. A new bench
script must be added to one of the two lists, or ``test_every_bench_script_is_listed`` fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SLOW

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p.name for p in (ROOT / "scripts").glob("bench_*.py"))

#: Quick runs of a few seconds to ~20 s each on this machine.
DEFAULT = ["bench_app_upload.py", "bench_chunkstore.py", "bench_client.py", "bench_hostile.py", "bench_import.py",
           "bench_snapshot.py", "bench_sync_cost.py", "bench_transcript.py", "bench_wire.py"]
#: Minutes (a slowed link, relay load levels, 20 MB documents) or PostgreSQL.
SLOW_ONLY = ["bench_bundles_memory.py", "bench_docs.py", "bench_docs_memory.py", "bench_link.py", "bench_relay.py",
             "bench_relay_pg.py", "bench_teams.py"]

slow = [pytest.mark.slow, pytest.mark.skipif(not SLOW, reason="benchmark smoke run of minutes: HBW_SLOW_TESTS=1")]


def test_every_bench_script_is_listed() -> None:
    assert sorted(DEFAULT + SLOW_ONLY) == SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_script_takes_quick_and_json(script: str) -> None:
    """Cheap (``--help`` only), so it runs by default for the slow scripts too."""
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / script), "--help"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert "--quick" in p.stdout and "--json" in p.stdout


@pytest.mark.parametrize("script", [pytest.param(s, id=s) for s in DEFAULT]
                         + [pytest.param(s, id=s, marks=slow) for s in SLOW_ONLY])
def test_bench_script_runs_quick(script: str) -> None:
    if script in ("bench_relay_pg.py", "bench_teams.py"):
        from external import need

        need("postgres")
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / script), "--quick", "--json"], cwd=ROOT,
                       capture_output=True, text=True, timeout=1800)
    assert p.returncode in (0, 1), p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["quick"] is True
    assert p.returncode == (0 if out["targets_met"] else 1), "exit 1 without a missed target, or 0 with one"
    env = out["environment"]
    assert len(env["commit"]) == 40 and isinstance(env["dirty"], bool)
    assert env["cpus"] >= 1 and env["machine"] and env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["libraries"]["zstandard"] and env["libraries"]["libzstd"] and env["libraries"]["libsqlite3"]
