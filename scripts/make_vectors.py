#!/usr/bin/env python3
"""Write the protocol test vectors to ``protocol/vectors/`` (deterministically).

Usage: ``.venv/bin/python scripts/make_vectors.py [OUT_DIR]``

Each vector family has its own module in ``scripts/vectors/`` with ``build() -> dict``;
``scripts/vectors/_kit.py`` holds what they share (fixed keys and seeds, the vectors' JSON
forms, hand assembly of batches that must fail behind a valid signature). This script only
runs them and writes the files.

Every input is fixed: device keys come from fixed seeds, team keys from fixed secrets, AEAD
nonces are derived from the vector's name. Ed25519 signatures and ChaCha20-Poly1305 are
deterministic for fixed inputs, and msgpack encoding is canonical for the values used here, so
everything except the zstd output is reproducible with any library version. zstd output at a
fixed level is stable for one zstd release only; the files in ``ZSTD_DEPENDENT`` record the
zstandard version that produced them in ``meta``, and the tests compare their zstd-dependent
bytes only when the installed version matches.

Importable: ``generate(out_dir)`` writes the files and returns their paths.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT, ROOT / "scripts"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from vectors import (  # noqa: E402  (scripts/vectors/: one module per family)
    approval, batches, bundle_stream, bundles, cdc, chunk_delta, chunks, delta, enroll, envelopes, evidence, hlc, invalid, keys, merge,
    policy, snapshot, sync, zstd,
)
from vectors._kit import T0, jval, op_from_json, untjson  # noqa: E402,F401  (the tests use these)

DEFAULT_OUT = ROOT / "protocol" / "vectors"

FILES: dict[str, Callable[[], dict[str, Any]]] = {
    "keys.json": keys.build,
    "hlc.json": hlc.build,
    "batches.json": batches.build,
    "invalid.json": invalid.build,
    "merge.json": merge.build,
    "envelopes.json": envelopes.build,
    "enroll.json": enroll.build,
    "snapshot.json": snapshot.build,
    "bundles.json": bundles.build,
    "bundle_stream.json": bundle_stream.build,
    "approval.json": approval.build,
    "delta.json": delta.build,
    "chunks.json": chunks.build,
    "chunk_delta.json": chunk_delta.build,
    "cdc.json": cdc.build,
    "evidence.json": evidence.build,
    "zstd.json": zstd.build,
    "policy.json": policy.build,
    "sync.json": sync.build,
}
ZSTD_DEPENDENT = ("batches.json", "invalid.json", "snapshot.json", "delta.json", "chunks.json", "evidence.json",
                  "sync.json", "chunk_delta.json")


def render(obj: Any) -> str:
    return json.dumps(obj, indent=1, ensure_ascii=False) + "\n"


def generate(out_dir: Path | str = DEFAULT_OUT) -> list[Path]:
    """Write every vector file into ``out_dir`` and return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, build in FILES.items():
        path = out / name
        path.write_text(render(build()), encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="Write the protocol test vectors (deterministically); the files "
                                "written are printed, one per line.")
    p.add_argument("out_dir", nargs="?", default=str(DEFAULT_OUT),
                   help="where to write them (default: protocol/vectors/)")
    a = p.parse_args(sys.argv[1:] if argv is None else argv)  # '--help' is help, never a directory's name
    for path in generate(a.out_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
