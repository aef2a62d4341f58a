"""Train the zstd dictionary for small batches and measure what it buys.

    .venv/bin/python scripts/train_dict.py             # train, write hbw_sync/data/ops-1.zdict, evaluate
    .venv/bin/python scripts/train_dict.py --no-write  # evaluate a fresh dictionary without writing it

Samples are what a batch's two zstd frames hold: the msgpack routing array and
the msgpack content array of small batches (1-10 ops), both, since the one
dictionary id in the batch header serves both sections. They come from the
generated workload (``scripts/workload.py``) with seeds 1-20 -- never the
benchmark's seed -- and, so that the dictionary cannot learn things a shipped
dictionary could never know, with *other* members (other device ids and
handles) and a week nine months before the benchmark's (other HLC prefixes).

The dictionary carries ``dict_id`` N (``codec.dictionary`` checks it) and is
written to ``hbw_sync/data/ops-N.zdict``, where ``codec`` finds it through
importlib.resources. A batch compressed with dictionary N can only ever be read
with that exact file: once clients write N, it must ship forever.

Evaluation (on the benchmark's seed, per section, bytes per op) compares no
dictionary, this dictionary, and a *lower bound*: a dictionary trained on the same
samples with every letter of every text scrambled, which can learn only the
msgpack structure and the routing values, not the vocabulary. The real gain
lies between the two: the trained dictionary shares its templates and word lists
with the benchmark's text, which real officials' text will not.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workload  # noqa: E402  (puts the source tree's hbw_sync on sys.path)

import zstandard  # noqa: E402

from hbw_sync import batch as hbatch  # noqa: E402
from hbw_sync import codec  # noqa: E402
from hbw_sync.ops import Op, routing_row  # noqa: E402

BENCH_SEED = 2024
TRAIN_SEEDS = range(1, 21)
TRAIN_MEMBERS = ("fatuma", "george", "hassan", "irene", "joseph")
TRAIN_START = _dt.datetime(2023, 6, 5, 7, 0, tzinfo=_dt.timezone.utc)  # a Monday, 9 months earlier
BATCH_SIZES = range(1, 11)
DATA_DIR = Path(__file__).resolve().parent.parent / "hbw_sync" / "data"
MAX_FILE = 64 * 1024


def _scramble(obj, rng: random.Random):
    if isinstance(obj, str):
        return "".join(c if c == " " else rng.choice("abcdefghijklmnopqrstuvwxyz") for c in obj)
    if isinstance(obj, list):
        return [_scramble(x, rng) for x in obj]
    if isinstance(obj, dict):
        return {k: _scramble(v, rng) for k, v in obj.items()}
    return obj


def samples(seeds=TRAIN_SEEDS, *, scramble_text: bool = False) -> list[bytes]:
    """Routing and content arrays of batches of 1-10 consecutive ops of each device."""
    out: list[bytes] = []
    scr = random.Random(0)
    for seed in seeds:
        if seed == BENCH_SEED:
            raise ValueError("never train on the benchmark's seed")
        cut = random.Random(seed * 7919)
        changes = workload.generate(seed=seed, members=TRAIN_MEMBERS, start=TRAIN_START)
        for ops in workload.by_device(changes).values():
            i = 0
            while i < len(ops):
                n = cut.choice(BATCH_SIZES)
                chunk = ops[i : i + n]
                i += n
                content = [dict(op.content or {}) for op in chunk]
                out.append(codec.pack([routing_row(op) for op in chunk]))
                out.append(codec.pack(_scramble(content, scr) if scramble_text else content))
    return out


def train(size: int, dict_id: int, *, scramble_text: bool = False) -> zstandard.ZstdCompressionDict:
    return zstandard.train_dictionary(size, samples(scramble_text=scramble_text), dict_id=dict_id, level=19)


def section_bytes(dev_ops: dict[str, list[Op]], n: int, d: zstandard.ZstdCompressionDict | None) -> tuple[int, int]:
    """Total routing and content frame bytes, compressed as encode_batch does (level 19, content size, no dict id)."""
    kw = {"level": 19, "write_content_size": True, "write_checksum": False}
    if d is not None:
        kw.update(dict_data=d, write_dict_id=False)
    cz = zstandard.ZstdCompressor(**kw)
    r = c = 0
    for ops in dev_ops.values():
        for i in range(0, len(ops), n):
            chunk = ops[i : i + n]
            r += len(cz.compress(codec.pack([routing_row(op) for op in chunk])))
            c += len(cz.compress(codec.pack([dict(op.content or {}) for op in chunk])))
    return r, c


def check_installed(dict_id: int, expected: bytes) -> None:
    """Load the written file the way clients do, and round-trip a batch with it."""
    codec._builtin_dict_bytes.cache_clear()
    codec.dictionary.cache_clear()
    from importlib import resources

    raw = resources.files("hbw_sync").joinpath(f"data/ops-{dict_id}.zdict").read_bytes()
    assert raw == expected, "importlib.resources returned other bytes"
    assert codec.dictionary(dict_id).dict_id() == dict_id
    changes = workload.generate(seed=BENCH_SEED, n_changes=40, n_tasks=10)
    name, ops = next(iter(workload.by_device(changes).items()))
    key = workload.device_key(name)
    from hbw_sync.crypto import TeamKey

    team = TeamKey(1, bytes(32))
    b = hbatch.Batch(b"\x01" * 8, key.device_id, 1, 1, tuple(ops[:5]))
    wire = hbatch.encode_batch(b, key, team, dict_id=dict_id)
    assert hbatch.decode_batch(wire, key.public, team).ops == b.ops


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=32 * 1024, help="dictionary size in bytes (default 32 KiB)")
    ap.add_argument("--dict-id", type=int, default=1)
    ap.add_argument("--no-write", action="store_true", help="evaluate only; do not write hbw_sync/data/")
    ap.add_argument("--no-eval", action="store_true", help="skip the evaluation")
    args = ap.parse_args(argv)
    if not 1 <= args.dict_id < (1 << 31):
        ap.error("dict id must be 1..2^31-1")
    if args.size > MAX_FILE:
        ap.error(f"dictionary must stay under {MAX_FILE} bytes")

    t0 = time.perf_counter()
    d = train(args.size, args.dict_id)
    raw = d.as_bytes()
    assert d.dict_id() == args.dict_id
    print(f"trained dictionary id {d.dict_id()}: {len(raw):,} bytes in {time.perf_counter() - t0:.1f} s")
    if not args.no_write:
        DATA_DIR.mkdir(exist_ok=True)
        path = DATA_DIR / f"ops-{args.dict_id}.zdict"
        path.write_bytes(raw)
        check_installed(args.dict_id, raw)
        print(f"wrote {path.relative_to(DATA_DIR.parent.parent)}; loads via importlib.resources and round-trips a batch")

    if args.no_eval:
        return 0
    lower = train(args.size, args.dict_id, scramble_text=True)
    bench = workload.by_device(workload.generate(seed=BENCH_SEED))
    n_ops = sum(len(v) for v in bench.values())
    print()
    print(f"Section bytes per op on the benchmark workload (seed {BENCH_SEED}), zstd 19, frames as encode_batch writes them.")
    print("'lower bound' = dictionary trained on the same samples with all text scrambled (structure only).")
    print()
    print("| ops/batch | routing: none | dict | lower bound | content: none | dict | lower bound | both: none | dict | saving | lower-bound saving |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in (1, 2, 5, 10, 20, 100, 1000):
        r0, c0 = section_bytes(bench, n, None)
        r1, c1 = section_bytes(bench, n, d)
        r2, c2 = section_bytes(bench, n, lower)
        f = lambda x: f"{x / n_ops:.1f}"  # noqa: E731
        print(
            f"| {n} | {f(r0)} | {f(r1)} | {f(r2)} | {f(c0)} | {f(c1)} | {f(c2)} | {f(r0 + c0)} | {f(r1 + c1)} | "
            f"{(1 - (r1 + c1) / (r0 + c0)) * 100:.0f}% | {(1 - (r2 + c2) / (r0 + c0)) * 100:.0f}% |"
        )
    print(f"({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
