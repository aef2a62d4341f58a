"""The Node.js conformance runner (protocol/conformance/) passes every vector, from scripts/test too.

Why here as well as in .ci/run: a change that adds a field or a vector family must also teach
the second implementation (seen: a new doc routing field passed every Python test and failed the
runner), and the README's one test command is what people run before they push.
"""
from __future__ import annotations

import re
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
    checked = {line.split()[1].rstrip(":") for line in out.stdout.splitlines() if line.startswith("ok ")}
    files = {p.name for p in (ROOT / "protocol" / "vectors").glob("*.json")}
    assert checked == files, f"vector files the runner did not check: {sorted(files - checked)}"


def test_the_spec_conformance_list_names_every_vector_file() -> None:
    """PROTOCOL.md's "Conformance" table is what a second client is told to pass: no file may be missing."""
    spec = (ROOT / "protocol" / "PROTOCOL.md").read_text(encoding="utf-8")
    section = spec.split("## Conformance (protocol 1.0)", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| \d+ \| `([a-z_]+\.json)` \|", section, flags=re.M))
    files = {p.name for p in (ROOT / "protocol" / "vectors").glob("*.json")}
    assert listed == files, f"missing from the list: {sorted(files - listed)}; listed but absent: {sorted(listed - files)}"
