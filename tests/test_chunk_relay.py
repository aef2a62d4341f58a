"""The relay's chunk store and actions (PROTOCOL.md §18e), on a real relay on loopback.

Put, missing and get round trips; the per-team quota refused plainly with nothing kept;
garbage collection of chunks no stored version refers to; and hostile arguments (wrong
types, oversize ids and chunks, too many ids, unsigned requests), each refused with a
code and changing nothing.
"""

from __future__ import annotations

import asyncio
import threading
import os
from pathlib import Path

import pytest

from hostile_helpers import post, signed
from relay_helpers import Member, Team
from hbw_sync import chunks, crypto, envelope
from hbw_sync.client import Device
from hbw_sync.client import sync as syncing
from hbw_sync.server import chunk_actions, chunkstore, limits, relay, storage
from relay_helpers import init_relay

# Every test here runs against each relay storage backend (SQLite: bytes in files; PostgreSQL: in rows).
pytestmark = pytest.mark.usefixtures("backend")

KEYS = chunks.ChunkKeys.of(crypto.TeamKey.generate(epoch=1))


def sealed_chunks(n: int, size: int = 40_000) -> list[tuple[bytes, bytes]]:
    return [chunks.seal_chunk(KEYS, os.urandom(size)) for _ in range(n)]


def call(team: Team, m: Member, action: str, args: dict) -> dict:
    """A signed request from ``m``'s device; the verified result (relay errors raise)."""
    with Device.open(m.home) as dev:
        body, nonce = envelope.make_request(dev.transport_key(), dev.identity.device_id, action, args,
                                            relay.now_ms())
        pub = dev.store.meta("relay_public")
    raw = asyncio.run(syncing.post(team.url, body, 30))
    return envelope.parse_response(raw, pub, nonce).result


def stored(team: Team) -> list[bytes]:
    """The chunk ids the relay holds (its index, either backend); on SQLite each has its file, and no other file."""
    return team.chunk_ids()


@pytest.fixture
def chunk_db(tmp_path: Path):
    """(chunk store, run): the backend's ``ChunkStore`` over a real relay database, and ``run(fn)`` that
    calls ``fn(txn)`` in one transaction of it."""
    init_relay(tmp_path / "r", "T")
    st = storage.open_store(tmp_path / "r")
    try:
        yield chunkstore.for_backend(st.kind, tmp_path / "r", 1 << 30), st.transact
    finally:
        st.close()


# -- the store ----------------------------------------------------------------------------------


def test_store_is_content_addressed_per_team_and_counts_usage(chunk_db, tmp_path: Path) -> None:
    store, run = chunk_db
    (a, sa), (b, sb) = sealed_chunks(2)
    t1, t2 = b"T" * 8, b"U" * 8
    assert run(lambda c: store.put(c, t1, a, sa, 1)) and not run(lambda c: store.put(c, t1, a, sa, 2))
    assert run(lambda c: store.put(c, t2, a, sa, 1))
    assert run(lambda c: store.has_many(c, t1, [a, b])) == [True, False]
    assert run(lambda c: (store.get(c, t1, a), store.get(c, t1, b))) == (sa, None)
    assert run(lambda c: store.usage(c, t1)) == len(sa) == run(lambda c: store.usage(c, t2))
    run(lambda c: store.delete(c, t1, a))
    run(lambda c: store.delete(c, t1, b))  # not held: no error
    assert run(lambda c: (store.usage(c, t1), store.has_many(c, t1, [a]), store.get(c, t2, a))) == (0, [False], sa)
    # a put whose transaction fails leaves nothing held (on SQLite: its file is unindexed, never served)
    with pytest.raises(RuntimeError):
        run(lambda c: (store.put(c, t1, b, sb, 3), (_ for _ in ()).throw(RuntimeError("rolled back"))))
    assert run(lambda c: (store.has_many(c, t1, [b]), store.get(c, t1, b), store.usage(c, t1))) == ([False], None, 0)
    assert run(lambda c: store.put(c, t1, b, sb, 4)) and run(lambda c: store.get(c, t1, b)) == sb
    if isinstance(store, chunkstore.FileChunkStore):  # SQLite: bytes in files, no row holds them
        assert store.path(t1, b).read_bytes() == sb  # a's file waits for GC's sweep (below)


def test_staged_bytes_are_indexed_by_the_put_or_removed(chunk_db) -> None:
    """SQLite: chunk bytes are written before the writer's transaction; a refused request leaves no file."""
    store, run = chunk_db
    if not isinstance(store, chunkstore.FileChunkStore):
        pytest.skip("PostgreSQL keeps chunk bytes in the transaction's own rows: nothing is staged")
    (a, sa), (b, sb) = sealed_chunks(2)
    t = b"T" * 8
    pa, pb = store.stage(t, a, sa), store.stage(t, b, sb)
    assert pa is not None and pa.read_bytes() == sa and store.stage(t, a, sa) is None  # once
    assert run(lambda c: store.put(c, t, a, sa, 1))  # indexed, not written again
    store.unstage([pa, pb])  # b was refused: its file goes, a stays
    assert pa.exists() and not pb.exists()
    assert run(lambda c: (store.get(c, t, a), store.get(c, t, b))) == (sa, None)
    # staged bytes that differ from the put's are replaced by the put's
    pb = store.stage(t, b, bytes(len(sb)))
    assert run(lambda c: store.put(c, t, b, sb, 2)) and run(lambda c: store.get(c, t, b)) == sb
    store.unstage([pb])
    assert run(lambda c: store.get(c, t, b)) == sb


# -- the actions ------------------------------------------------------------------------------


def test_put_missing_get_round_trip(team: Team) -> None:
    dana = team.join("dana", "supervisor")
    pieces = sealed_chunks(5)
    ids = [cid for cid, _ in pieces]
    assert call(team, dana, "chunk_missing", {"ids": ids})["missing"] == ids
    # the largest list the table allows fits its body limit (ids are 18 bytes each in msgpack)
    many = [os.urandom(16) for _ in range(limits.CHUNK_IDS_MAX)]
    assert len(call(team, dana, "chunk_missing", {"ids": many})["missing"]) == limits.CHUNK_IDS_MAX
    assert call(team, dana, "chunk_get", {"ids": many})["missing"] == many
    res = call(team, dana, "chunk_put", {"chunks": [list(p) for p in pieces[:3]]})
    assert res["stored"] == 3 and res["usage"] == sum(len(s) for _, s in pieces[:3])
    assert call(team, dana, "chunk_missing", {"ids": ids})["missing"] == ids[3:]
    # a put sent again (its answer was lost) stores nothing more
    assert call(team, dana, "chunk_put", {"chunks": [list(p) for p in pieces[:3]]})["stored"] == 0
    got = call(team, dana, "chunk_get", {"ids": ids})
    assert [c for c, _ in got["chunks"]] == ids[:3] and got["missing"] == ids[3:]
    assert [s for _, s in got["chunks"]] == [s for _, s in pieces[:3]]
    # a budget smaller than one chunk still answers one: the device always moves forward
    assert len(call(team, dana, "chunk_get", {"ids": ids, "budget": 1})["chunks"]) == 1
    assert len(stored(team)) == 3


def test_quota_refuses_the_whole_put_plainly(tmp_path: Path) -> None:
    with Team(tmp_path, chunk_quota=100_000) as team:
        dana = team.join("dana", "supervisor")
        first = sealed_chunks(2)  # about 80 KB: fits
        call(team, dana, "chunk_put", {"chunks": [list(p) for p in first]})
        more = sealed_chunks(2)
        status, err = post(team.url, signed(dana, "chunk_put", {"chunks": [list(p) for p in more]}))
        assert (status, err["code"]) == (413, "protocol.quota")
        assert "quota" in err["message"] and "nothing of this upload was kept" in err["message"]
        assert len(stored(team)) == 2  # nothing of the refused put
        # chunks already held cost nothing against the quota
        assert call(team, dana, "chunk_put", {"chunks": [list(p) for p in first]})["stored"] == 0
        assert dana.sync().ok


@pytest.mark.parametrize("action,args,status,code", [
    ("chunk_missing", {"ids": [b"short"]}, 400, "protocol.schema"),
    ("chunk_missing", {"ids": [b"x" * 17]}, 400, "protocol.schema"),
    ("chunk_missing", {"ids": "all"}, 400, "protocol.schema"),
    ("chunk_missing", {"ids": [b"i" * 16] * (limits.CHUNK_IDS_MAX + 1)}, 413, "protocol.limit"),
    ("chunk_get", {"ids": [1, 2, 3]}, 400, "protocol.schema"),
    ("chunk_get", {"ids": [b"i" * 16], "budget": 0}, 400, "protocol.schema"),
    ("chunk_get", {"ids": [b"i" * 16], "budget": 1 << 40}, 400, "protocol.schema"),
    ("chunk_put", {"chunks": [[b"i" * 16, bytes(chunks.SEALED_MAX + 1)]]}, 413, "protocol.limit"),
    ("chunk_put", {"chunks": [[b"i" * 16, b"tiny"]]}, 400, "protocol.schema"),
    ("chunk_put", {"chunks": [[b"i" * 15, bytes(100)]]}, 400, "protocol.schema"),
    ("chunk_put", {"chunks": [[b"i" * 16]]}, 400, "protocol.schema"),
    ("chunk_put", {"chunks": {"a": 1}}, 400, "protocol.schema"),
    ("chunk_put", {"chunks": [[b"i" * 16, bytes(200_000)]] * 22}, 413, "protocol.limit"),  # body over 4 MiB
], ids=lambda v: v if isinstance(v, str) else None)
def test_hostile_chunk_arguments_are_refused_and_change_nothing(team: Team, action, args, status, code) -> None:
    dana = team.join("dana", "supervisor")
    got, err = post(team.url, signed(dana, action, args))
    assert (got, err.get("code")) == (status, code), err
    assert err["message"] and "Error" not in err["message"]
    assert stored(team) == []
    assert dana.sync().ok


def test_unsigned_and_unknown_devices_get_nothing(team: Team) -> None:
    dana = team.join("dana", "supervisor")
    cid, sealed = sealed_chunks(1)[0]
    call(team, dana, "chunk_put", {"chunks": [[cid, sealed]]})
    from hostile_helpers import frame
    import msgpack

    dev = Device.open(dana.home).identity.device_id
    raw = msgpack.packb({"ids": [cid]})
    status, err = post(team.url, frame(dev, "chunk_get", raw))  # junk signature
    assert (status, err["code"]) == (400, "integrity.signature") or status in (400, 403), err
    status, err = post(team.url, frame(os.urandom(8), "chunk_get", raw))
    assert (status, err["code"]) == (403, "access.unknown_device")
    status, err = post(team.url, frame(os.urandom(8), "chunk_put", msgpack.packb({"chunks": [[cid, bytes(50)]]})))
    assert status == 403 and len(stored(team)) == 1


# -- garbage collection -------------------------------------------------------------------------


def test_garbage_collection_keeps_referenced_and_recent_chunks(chunk_db) -> None:
    """On the relay's real database: refs come from document ops' routing, never from content."""
    from hbw_sync.ops import Kind, make_op

    store, run = chunk_db
    team = b"T" * 8
    pieces = sealed_chunks(4)
    now = relay.now_ms()
    for cid, s in pieces:
        run(lambda c: store.put(c, team, cid, s, now))
    (a, _), (b, _), (c, _), (d, _) = pieces
    op = make_op(Kind.DOC, b"doc1", 1, None, size=10, chunks=a + b)
    assert run(lambda t: chunk_actions.record_refs(t, 7, [op])) == 2
    # within the grace period nothing goes (its batch may still be on the way)
    assert run(lambda t: chunk_actions.collect(t, store, team, now))["deleted"] == 0
    out = run(lambda t: chunk_actions.collect(t, store, team, now + limits.CHUNK_GRACE_MS + 10_000))
    assert (out["kept"], out["deleted"]) == (2, 2) and out["freed"] == len(pieces[2][1]) + len(pieces[3][1])
    assert run(lambda t: store.has_many(t, team, [a, b, c, d])) == [True, True, False, False]
    assert run(lambda t: store.usage(t, team)) == len(pieces[0][1]) + len(pieces[1][1])
    run(lambda t: t.execute("DELETE FROM meta WHERE key = ?", (chunkstore.usage_key(team),)))  # a restored backup
    assert run(lambda t: store.usage(t, team)) == len(pieces[0][1]) + len(pieces[1][1])  # counted again


def test_garbage_collection_sweeps_files_of_transactions_that_never_committed(chunk_db) -> None:
    """SQLite: bytes written for a put whose transaction never committed (a crash) go with GC, held ones stay."""
    store, run = chunk_db
    if not isinstance(store, chunkstore.FileChunkStore):
        pytest.skip("PostgreSQL writes chunk bytes in the transaction's own rows: nothing is left behind")
    team = b"T" * 8
    (a, sa), (b, sb) = sealed_chunks(2)
    now = relay.now_ms()
    run(lambda t: store.put(t, team, a, sa, now))
    orphan = store.path(team, b)
    chunkstore.write_file(orphan, sb)  # staged, then the process died before its transaction
    cut = orphan.with_name(orphan.name + ".123.tmp")
    cut.write_bytes(b"half")
    fresh = store.path(team, os.urandom(16))
    chunkstore.write_file(fresh, sb)  # staged just now: its transaction may be on its way
    week = (now - limits.CHUNK_GRACE_MS - 60_000) / 1000
    for p in (store.path(team, a), orphan, cut):
        os.utime(p, (week, week))
    run(lambda t: chunk_actions.collect(t, store, team, now))
    assert store.path(team, a).exists() and fresh.exists() and not orphan.exists() and not cut.exists()
    assert run(lambda t: store.get(t, team, a)) == sa
    # A collected chunk loses its row first; its file goes at the next pass, once that has committed.
    later = now + limits.CHUNK_GRACE_MS + 120_000
    assert run(lambda t: chunk_actions.collect(t, store, team, later))["deleted"] == 1
    assert run(lambda t: store.get(t, team, a)) is None and store.path(team, a).exists()
    run(lambda t: chunk_actions.collect(t, store, team, later + limits.CHUNK_GC_EVERY_MS))
    assert not store.path(team, a).exists()


def test_the_spec_states_the_chunk_limits_the_code_uses() -> None:
    """PROTOCOL.md §18e against limits.py: a number changed in one place fails here."""
    from hbw_sync.ops import MAX_DOC_CHUNKS, MAX_MANIFEST

    spec = (Path(__file__).resolve().parent.parent / "protocol/PROTOCOL.md").read_text(encoding="utf-8")
    sec = spec[spec.index("## 18e."):spec.index("## 19.")]

    def n(x: int) -> str:
        return f"{x:,}".replace(",", " ")

    for action in ("chunk_missing", "chunk_get"):
        assert f"| `{action}` | {n(limits.ACTIONS[action].body)} bytes" in sec
    assert f"| `chunk_put` | {n(limits.ACTIONS['chunk_put'].body)} bytes" in sec
    assert f"≤ {limits.CHUNK_IDS_MAX} bin 16" in sec
    assert f"sealed (bin {chunk_actions.SEALED_MIN} – {n(chunks.SEALED_MAX)})" in sec
    assert f"uint 1 – {n(limits.CHUNK_GET_MAX)}" in sec
    assert f"`CHUNK_QUOTA` = {n(limits.CHUNK_QUOTA)} bytes" in sec
    assert f"`CHUNK_GRACE_MS` = {n(limits.CHUNK_GRACE_MS)} ms" in sec
    assert f"at most {n(MAX_DOC_CHUNKS)} ids" in sec
    assert f"bin ≤ {n(MAX_MANIFEST)}" in spec


def test_the_chunks_routing_field_is_checked_like_every_field() -> None:
    from hbw_sync.errors import ProtocolError
    from hbw_sync.ops import MAX_DOC_CHUNKS, Kind, make_op

    make_op(Kind.DOC, b"d", 1, None, chunks=b"i" * 32)
    for bad in (b"i" * 15, "ids", b"i" * 16 * (MAX_DOC_CHUNKS + 1)):
        with pytest.raises(ProtocolError):
            make_op(Kind.DOC, b"d", 1, None, chunks=bad)


def test_chunk_files_are_written_outside_the_single_writer(team: Team, monkeypatch) -> None:
    """SQLite: a chunk_put's files are written by staging threads before the writer's transaction,
    which only indexes them; over the quota, the staged files are removed (``stored`` checks)."""
    if storage.database_url(team.data):
        pytest.skip("PostgreSQL keeps chunk bytes in rows, written in the request's transaction")
    writers: list[str] = []
    real = chunkstore.write_file
    monkeypatch.setattr(chunkstore, "write_file",  # a spy: records which thread writes, then writes
                        lambda path, data: (writers.append(threading.current_thread().name), real(path, data))[1])
    dana = team.join("dana", "supervisor")
    pieces = sealed_chunks(3)
    assert call(team, dana, "chunk_put", {"chunks": [list(p) for p in pieces]})["stored"] == 3
    assert len(writers) == 3 and all(n.startswith("hbw-relay-stage") for n in writers), writers
    assert call(team, dana, "chunk_get", {"ids": [c for c, _ in pieces]})["chunks"] == [list(p) for p in pieces]
    assert len(stored(team)) == 3
