"""Shared fixtures for the protocol core's tests (codec, batch, hlc, merge, errors).

Keys are fixed seeds, not fresh randomness, so that a failure replays exactly.
``frame_bytes`` builds *validly signed* batches from raw msgpack payloads: the
signature and the AEAD then hold, so a test reaches the decoder stages behind
them (schema, order, dictionaries, bombs) the way a malicious team member
or a buggy peer would.

Hypothesis runs with the ``hbw`` profile (modest example counts, no deadline,
so that the core suite stays well under a minute on two cores); set
``HBW_SLOW_TESTS=1`` for ``hbw-slow``, which runs 50 times as many examples.
Tests that want a different count than the profile's scale it with
``scaled_examples``, so the environment variable still multiplies them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
import tracemalloc
from typing import Any, Callable

import pytest
import xxhash

from relay_helpers import Team
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hbw_sync import batch, codec, crypto, hlc  # noqa: E402
from hbw_sync.batch import Batch  # noqa: E402
from hbw_sync.ops import Kind, Op, make_op, make_op_id  # noqa: E402

# Tests assert English words; a developer's LANG=fr_FR must not change them (HBW_LANG wins over LANG).
# tests/test_i18n.py removes it where it checks that LANG picks French.
os.environ["HBW_LANG"] = "en"

BASE_EXAMPLES = 100
SLOW = os.environ.get("HBW_SLOW_TESTS", "") not in ("", "0")

settings.register_profile(
    "hbw",
    max_examples=BASE_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "hbw-slow",
    max_examples=BASE_EXAMPLES * 50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("hbw-slow" if SLOW else "hbw")


def scaled_examples(n: int) -> int:
    """``n`` examples in a normal run, 50 times as many with HBW_SLOW_TESTS=1."""
    return n * 50 if SLOW else n


# -- keys and ids -------------------------------------------------------------------------

DEVICE_SEED = bytes(range(32))
OTHER_DEVICE_SEED = bytes(range(100, 132))
TEAM_SECRET = bytes(range(200, 232))
TEAM_ID = b"TEAM\x00\x00\x00\x01"
T0_MS = 1_700_000_000_000  # a fixed "now" (Nov 2023)


@pytest.fixture(scope="session")
def device_key() -> crypto.DeviceKey:
    return crypto.DeviceKey(DEVICE_SEED)


@pytest.fixture(scope="session")
def other_device_key() -> crypto.DeviceKey:
    return crypto.DeviceKey(OTHER_DEVICE_SEED)


@pytest.fixture(scope="session")
def team_key() -> crypto.TeamKey:
    return crypto.TeamKey(1, TEAM_SECRET)


@pytest.fixture(scope="session")
def team_id() -> bytes:
    return TEAM_ID


# -- valid ops and batches ------------------------------------------------------------------


def sample_ops(n: int, start_hlc: int | None = None, device: bytes = b"\x00" * 8) -> list[Op]:
    """``n`` valid ops with strictly increasing HLCs, cycling through tasks, documents and
    members and through nulls, unicode, notes and bytes fields."""
    t = hlc.pack(T0_MS) if start_hlc is None else start_hlc
    ops: list[Op] = []
    for i in range(n):
        t += 1 + (i % 3) * 70_000  # some ops share a millisecond, some do not
        entity = b"ent-%d" % (i % 5)
        base = make_op_id(t - 1, device) if i % 2 else None
        v = i % 6
        if v == 0:
            op = make_op(Kind.TASK, b"task-%d" % i, t, base, title=f"Task {i}: Überprüfung ✓", status=0, priority=2,
                         assignee="anna.k", due=19_700 + i, needs=3, pinned=False)
        elif v == 1:
            op = make_op(Kind.TASK, entity, t, base, assignee=None, due=None, status=1,
                         note="Rückruf — 市役所 \U0001f4de", description="")
        elif v == 2:
            op = make_op(Kind.DOC, b"doc-%d" % i, t, base, task=b"task-0", size=5, name="plan.pdf",
                         data=b"\x00\x01\xffdata", sha256=bytes(range(32)))
        elif v == 3:
            op = make_op(Kind.MEMBER, b"anna.k", t, base, laptop=True, internet=False, office_days=0b0011111,
                         away_until=None, display_name="Anna Kowalska-Ødegård")
        elif v == 4:
            op = make_op(Kind.DOC, b"doc-x", t, base, task=None, data=b"")
        else:
            op = make_op(Kind.TASK, entity, t, base, note="n" * (i % 40), pinned=True)
        ops.append(op)
    return ops


@pytest.fixture
def make_batch(device_key: crypto.DeviceKey, team_key: crypto.TeamKey, team_id: bytes) -> Callable[..., Batch]:
    """Factory: a valid ``Batch`` of ``n`` ops mixing tasks, docs and members."""

    def factory(n: int = 6, *, seq: int = 1, ops: list[Op] | None = None, start_hlc: int | None = None) -> Batch:
        the_ops = ops if ops is not None else sample_ops(n, start_hlc, device_key.device_id)
        return Batch(team_id, device_key.device_id, seq, team_key.epoch, tuple(the_ops))

    return factory


@pytest.fixture
def encode(device_key: crypto.DeviceKey, team_key: crypto.TeamKey) -> Callable[..., bytes]:
    """Encode a batch with the fixture keys (fast compression level unless told)."""

    def enc(b: Batch, **kw: Any) -> bytes:
        kw.setdefault("level", 3)
        return batch.encode_batch(b, device_key, team_key, **kw)

    return enc


@pytest.fixture
def valid_wire(make_batch: Callable[..., Batch], encode: Callable[..., bytes]) -> bytes:
    """The wire bytes of a small valid batch (all three kinds, nulls, a note, bytes)."""
    return encode(make_batch(6))


# -- validly signed, possibly malformed frames -------------------------------------------------


def frame_bytes(
    routing: bytes | None,
    content: bytes | None,
    device_key: crypto.DeviceKey,
    team_key: crypto.TeamKey,
    team: bytes = TEAM_ID,
    *,
    seq: int = 1,
    epoch: int | None = None,
    dict_id: int = 0,
    flags: int = 0,
    version: int = batch.VERSION,
    device: bytes | None = None,
    routing_z: bytes | None = None,
    content_z: bytes | None = None,
    sealed: bytes | None = None,
) -> bytes:
    """Assemble a batch frame from raw msgpack payloads, sealed and signed for real.

    ``routing``/``content`` are msgpack bytes (compressed here); ``routing_z``/``content_z``
    replace the compressed sections outright, and ``sealed`` the whole sealed section.
    """
    if routing_z is None:
        assert routing is not None
        routing_z = codec.compress(routing, level=3)
    if sealed is None:
        if content_z is None:
            assert content is not None
            content_z = codec.compress(content, level=3)
        s_len = crypto.NONCE_LEN + len(content_z) + crypto.TAG_LEN
    else:
        s_len = len(sealed)
    header = batch.HEADER.pack(
        batch.MAGIC,
        batch.TYPE_BATCH,
        bytes([version]),
        flags,
        team,
        device_key.device_id if device is None else device,
        seq,
        team_key.epoch if epoch is None else epoch,
        dict_id,
        len(routing_z),
        s_len,
    )
    aad = header + routing_z
    if sealed is None:
        sealed = crypto.seal(team_key.subkey(batch.CONTENT_PURPOSE), content_z, aad)
    signed = aad + sealed
    return signed + device_key.sign(signed)


@pytest.fixture
def build_frame(device_key: crypto.DeviceKey, team_key: crypto.TeamKey) -> Callable[..., bytes]:
    """``frame_bytes`` with the fixture keys; payloads given as Python objects or msgpack bytes."""

    def build(routing: Any = None, content: Any = None, **kw: Any) -> bytes:
        r = routing if isinstance(routing, bytes) or routing is None else codec.pack(routing)
        c = content if isinstance(content, bytes) or content is None else codec.pack(content)
        return frame_bytes(r, c, device_key, team_key, **kw)

    return build


# -- hand-made zstd frames --------------------------------------------------------------------------


def rle_bomb(total: int, byte: int = 0, *, declare: int | None = None) -> bytes:
    """A *valid* zstd frame of RLE blocks that really inflates to ``total`` bytes: 4 bytes
    of input per 128 KiB of output. ``declare`` overrides the size written in the header.
    The content checksum is right up to 64 MiB of output (beyond, nothing may inflate it)."""
    block_max = 128 * 1024
    fcs = total if declare is None else declare
    out = bytearray(codec.ZSTD_MAGIC)
    out.append(0xC4)  # 8-byte content size, not single segment, checksum, no dict id
    out.append((17 - 10) << 3)  # window descriptor: 128 KiB (one block; RLE needs no history)
    out += fcs.to_bytes(8, "little")
    left = total
    while True:
        n = min(left, block_max)
        left -= n
        last = 1 if left == 0 else 0
        out += (last | (1 << 1) | (n << 3)).to_bytes(3, "little") + bytes([byte])
        if last:
            digest = xxhash.xxh64_intdigest(bytes([byte]) * total) if total <= 64 << 20 else 0
            return bytes(out) + (digest & 0xFFFFFFFF).to_bytes(4, "little")


def zstd_header_fields(frame: bytes) -> dict[str, int]:
    """Parse a zstd frame header: descriptor flags, header length and the content size field."""
    fhd = frame[4]
    fcs_flag, single, checksum, dict_flag = fhd >> 6, (fhd >> 5) & 1, (fhd >> 2) & 1, fhd & 3
    pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag]
    fcs_len = (1 if single else 0, 2, 4, 8)[fcs_flag]
    return {"single": single, "checksum": checksum, "fcs_pos": pos, "fcs_len": fcs_len, "header_len": pos + fcs_len}


def with_content_size(frame: bytes, size: int, window_log: int = 20) -> bytes:
    """Re-emit ``frame``'s header declaring ``size`` (8-byte field, explicit window), same blocks."""
    h = zstd_header_fields(frame)
    fhd = 0xC0 | (h["checksum"] << 2)
    return codec.ZSTD_MAGIC + bytes([fhd, (window_log - 10) << 3]) + size.to_bytes(8, "little") + frame[h["header_len"]:]


# -- relay storage backends (TaskChampion's pattern: one suite, every backend) ----------------------


@pytest.fixture(scope="session")
def pg_server():
    """One throwaway PostgreSQL per session (tests/pg.py); skipped loudly, or failed in CI, when missing."""
    from pg import PgServer

    server = PgServer()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest):
    """Run the test once per relay storage backend; relays made by ``relay_helpers`` use it.

    A module opts in with ``pytestmark = pytest.mark.usefixtures("backend")``.
    """
    import relay_helpers

    if request.param == "postgres":
        why = request.node.get_closest_marker("sqlite_only")
        if why is not None:
            pytest.skip(f"SQLite only: {why.args[0]}")
        server = request.getfixturevalue("pg_server")
        relay_helpers.NEW_DATABASE = server.url
    try:
        yield request.param
    finally:
        relay_helpers.NEW_DATABASE = None


@pytest.fixture
def team(tmp_path: Path):
    """A real relay on a loopback port with its data in tmp_path (see relay_helpers.Team)."""
    with Team(tmp_path) as t:
        yield t


def peak(fn: Callable[[], object]) -> int:
    """Peak bytes Python allocated while ``fn`` ran (tracemalloc): memory bounds without timing."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
