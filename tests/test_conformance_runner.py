"""The Node.js conformance runner (protocol/conformance/) passes every vector, from scripts/test too.

Why here as well as in .ci/run: a change that adds a field or a vector family must also teach
the second implementation (seen: a new doc routing field passed every Python test and failed the
runner), and the README's one test command is what people run before they push.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from external import need

ROOT = Path(__file__).resolve().parent.parent


def test_the_node_runner_passes_every_vector_file() -> None:
    need("node")
    out = subprocess.run(["bash", str(ROOT / "scripts" / "conformance")], capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    summary = [line for line in out.stdout.splitlines() if line.startswith("conformance:")]
    assert summary and summary[-1].endswith(" 0 failed"), out.stdout[-4000:]
    assert "FAIL" not in out.stdout
