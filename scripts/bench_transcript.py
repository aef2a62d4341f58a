"""How fast the deflate transcript (codec 10, hbw_sync/delta/transcript.py) parses and re-encodes, in pure Python.

    .venv/bin/python scripts/bench_transcript.py            # table + targets
    .venv/bin/python scripts/bench_transcript.py --json     # machine-readable
    .venv/bin/python scripts/bench_transcript.py --quick    # 300 KB instead of 2 MB

What it measures: a .docx-like ``document.xml`` (paragraph markup around varied words, fixed
seed), deflated by zlib (level 6), libdeflate (level 9) and zopfli (one iteration); for each,
``parse`` (the stream to its transcript, as the writer does for both members and the reader for
its base member) and ``encode`` (the transcript back to the stream, the reader's rebuild), in MB of
inflated content per second and MB of deflate per second, and the transcript's size against the
stream's. Baseline, same run: zlib's own inflate (C) of the same stream, the floor any rebuild pays.

Targets: every stream round-trips byte for byte; parse and encode each at least 2 MB of content
per second, so the largest member transcribed (``MAX_DEFLATED``, 4 MiB of deflate, about 10 MB of
content) costs the writer and the reader a few seconds at most on this shared 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import zlib
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hbw_sync.delta import transcript  # noqa: E402

import _benchkit  # noqa: E402  (scripts/: what every --json records)

TARGET_MBPS = 2.0


def document(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghilmnoprstuvy") for _ in range(rng.randint(2, 10))) for _ in range(4000)]
    out: list[str] = []
    n = 0
    while n < size:
        p = ('<w:p w:rsidR="00A1' + f"{rng.randint(0, 9999):04d}" + '"><w:r><w:rPr><w:b/></w:rPr><w:t xml:space="preserve">'
             + " ".join(rng.choice(words) for _ in range(rng.randint(8, 60))) + "</w:t></w:r></w:p>")
        out.append(p)
        n += len(p)
    return "".join(out).encode()[:size]


def deflaters() -> dict[str, Callable[[bytes], bytes]]:
    def z6(d: bytes) -> bytes:
        co = zlib.compressobj(6, zlib.DEFLATED, -15)
        return co.compress(d) + co.flush()

    out: dict[str, Callable[[bytes], bytes]] = {"zlib 6": z6}
    try:
        import deflate  # type: ignore[import-untyped]

        out["libdeflate 9"] = lambda d: bytes(deflate.deflate_compress(d, 9))
    except ImportError:
        pass
    try:
        import zopfli.zlib  # type: ignore[import-untyped]

        out["zopfli"] = lambda d: bytes(zopfli.zlib.compress(d, numiterations=1)[2:-4])
    except ImportError:
        pass
    return out


def best(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="300 KB of content, one run each")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    a = ap.parse_args()
    content = document(300_000 if a.quick else 2_000_000, 7)
    runs = 1 if a.quick else 3
    rows = []
    for name, squeeze in deflaters().items():
        raw = squeeze(content)
        t = transcript.parse(raw, 1 << 30)
        exact = transcript.encode(t, len(raw)) == raw
        t_parse = best(lambda: transcript.parse(raw, 1 << 30), runs)
        t_encode = best(lambda: transcript.encode(t, len(raw)), runs)
        t_inflate = best(lambda: zlib.decompress(raw, -15), runs)
        mb = len(content) / 1e6
        rows.append({
            "deflater": name, "content": len(content), "deflated": len(raw), "transcript": len(t),
            "round_trip": exact,
            "parse_mb_s": round(mb / t_parse, 2), "parse_deflate_mb_s": round(len(raw) / 1e6 / t_parse, 2),
            "encode_mb_s": round(mb / t_encode, 2), "zlib_inflate_mb_s": round(mb / t_inflate, 1),
        })  # fmt: skip
    targets = []
    for r in rows:
        targets.append({"target": f"{r['deflater']}: round trip byte for byte", "value": r["round_trip"],
                        "pass": r["round_trip"]})
        for key in ("parse_mb_s", "encode_mb_s"):
            targets.append({"target": f"{r['deflater']}: {key.split('_')[0]} >= {TARGET_MBPS} MB/s of content",
                            "value": r[key], "pass": r[key] >= TARGET_MBPS})
    ok = all(t["pass"] for t in targets)
    if a.json:
        versions = {}
        for dist in ("zopfli", "deflate"):
            try:
                from importlib import metadata

                versions[dist] = metadata.version(dist)
            except Exception:
                versions[dist] = None
        print(json.dumps(_benchkit.stamp({"rows": rows, "targets": targets, "deflaters": versions}, ok,
                                         quick=a.quick), indent=2))
        return 0 if ok else 1
    print(f"Deflate transcript, pure Python, {len(content):,} bytes of content (best of {runs})\n")
    head = ("deflater", "deflated", "transcript", "parse MB/s (content / deflate)", "encode MB/s", "zlib inflate MB/s (C)")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        print(f"| {r['deflater']} | {r['deflated']:,} | {r['transcript']:,} | {r['parse_mb_s']} / "
              f"{r['parse_deflate_mb_s']} | {r['encode_mb_s']} | {r['zlib_inflate_mb_s']} |")
    print("\nTargets:")
    for t in targets:
        print(f"  {'PASS' if t['pass'] else 'FAIL':4}  {t['target']}  ({t['value']})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
