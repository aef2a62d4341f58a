"""The client's local store through its library API: secrecy at rest, crash safety, convergence."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hbw_sync import batch as wire
from hbw_sync.client import Device, Replica
from hbw_sync.client.vault import KdfParams
from hbw_sync.errors import IntegrityError, WrongKeyError

PASS = "orchid lantern 52 ferry"
FAST = KdfParams(n=2**10)
MARKERS = {
    "title": "Zanzibar-title-marker",
    "description": "Quokka-description-marker",
    "note": "Pangolin-note-marker",
    "doc": b"Axolotl-document-marker",
    "doc_name": "Narwhal-name-marker.pdf",
}


def new_replica(home: Path, name: str = "amina") -> Replica:
    dev = Device.init(home, name, PASS, kdf=FAST)
    return dev.unlock(PASS)


def raw_files(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(home.iterdir()) if p.name.startswith("store.db"))


def test_no_content_in_clear_in_db_or_wal(tmp_path: Path) -> None:
    rep = new_replica(tmp_path / "h")
    rep.create_team("team")
    t = rep.add_task(MARKERS["title"], description=MARKERS["description"])
    rep.note(t.id, MARKERS["note"])
    doc = tmp_path / "d.bin"
    doc.write_bytes(MARKERS["doc"] * 10)
    rep.add_doc(doc, name=MARKERS["doc_name"])
    # Both before a checkpoint (content in the WAL) and after (in the main file).
    for checkpoint in (False, True):
        if checkpoint:
            rep.store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        raw = raw_files(tmp_path / "h")
        assert len(raw) > 10_000
        for marker in MARKERS.values():
            m = marker if isinstance(marker, bytes) else marker.encode()
            assert m not in raw, f"{m!r} found in clear (checkpoint={checkpoint})"
    # ...while the replica itself reads them back.
    assert rep.task(t.id).notes[0].text == MARKERS["note"]
    rep.close()


def test_wrong_passphrase_is_told_at_once(tmp_path: Path) -> None:
    new_replica(tmp_path / "h").close()
    with Device.open(tmp_path / "h") as dev:
        with pytest.raises(WrongKeyError, match="wrong passphrase"):
            dev.unlock("nope")


def test_tampered_store_row_is_detected(tmp_path: Path) -> None:
    rep = new_replica(tmp_path / "h")
    rep.create_team("team")
    a = rep.add_task("first")
    b = rep.add_task("second")
    # Swap two sealed task states: each is bound to its row, so the swap is caught.
    s = rep.store
    sa = s.execute("SELECT state FROM entities WHERE id = ?", (bytes.fromhex(a.id),)).fetchone()[0]
    sb = s.execute("SELECT state FROM entities WHERE id = ?", (bytes.fromhex(b.id),)).fetchone()[0]
    with s.transaction():
        s.execute("UPDATE entities SET state = ? WHERE id = ?", (sb, bytes.fromhex(a.id)))
        s.execute("UPDATE entities SET state = ? WHERE id = ?", (sa, bytes.fromhex(b.id)))
    with pytest.raises(IntegrityError):
        rep.task(a.id)
    rep.close()


def test_outbox_coalesces_and_holds_every_change(tmp_path: Path) -> None:
    rep = new_replica(tmp_path / "h")
    rep.create_team("team")
    for i in range(5):
        rep.add_task(f"task {i}")
    ids = rep.add_tasks([{"title": f"bulk {i}"} for i in range(1200)])
    rows = rep.store.execute("SELECT seq, state, n_ops, data FROM outbox ORDER BY seq").fetchall()
    # 5 single edits joined one open batch; the import filled batches up to the cap.
    assert [r[2] for r in rows] == [1000, 205]
    assert [r[1] for r in rows] == ["closed", "closed"]
    pub, keys = rep.store.meta("author_public"), rep.team_keys()
    op_ids = []
    for seq, _, n, data in rows:
        b = wire.decode_batch(data, pub, keys, team=rep.store.meta("team_id"))
        assert b.seq == seq and len(b.ops) == n
        op_ids += b.op_ids()
    logged = {r[0] for r in rep.store.execute("SELECT op_id FROM oplog")}
    assert set(op_ids) == logged and len(op_ids) == 1205
    assert {op.entity for data in (r[3] for r in rows) for op in wire.parse_batch(data).routing_ops()} >= set(ids)
    assert rep.check() == []
    rep.close()


def _pair(tmp_path: Path) -> tuple[Replica, Replica]:
    """Two devices of one team, sharing the team key by hand (enrollment comes with the relay)."""
    a = new_replica(tmp_path / "a", "amina")
    a.create_team("team")
    b = new_replica(tmp_path / "b", "chidi")
    with b.store.transaction():
        b.store.set_meta("team_id", a.store.meta("team_id"))
        b.store.set_meta("team_name", "team")
        b.add_team_key(a.current_key())
    return a, b


def _exchange(src: Replica, dst: Replica, order: random.Random | None = None) -> None:
    rows = src.store.execute("SELECT data FROM outbox").fetchall()
    if order:
        rows = rows * 2
        order.shuffle(rows)
    for (data,) in rows:
        dst.apply_batch(data, src.store.meta("author_public"), received_ms=None)


def test_two_replicas_converge_in_any_order(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    t = a.add_task("Shared task", description="v0")
    _exchange(a, b)
    # Both edit offline: different fields merge, the same field settles the same way on both.
    a.edit_task(t.id, description="from amina", priority=3)
    a.note(t.id, "note by amina")
    b.edit_task(t.id, description="from chidi", due=20_800)
    b.note(t.id, "note by chidi")
    rng = random.Random(7)
    _exchange(a, b, rng)
    _exchange(b, a, rng)
    va, vb = a.task(t.id), b.task(t.id)

    def same(v):  # who wrote a note is shown by name only where the device is known (the roster)
        d = v.to_dict()
        d["notes"] = [(n["text"], n["at"]) for n in d["notes"]]
        return d

    assert same(va) == same(vb)
    assert va.priority == "urgent" and va.due is not None
    assert va.description in ("from amina", "from chidi")
    assert sorted(n.text for n in va.notes) == ["note by amina", "note by chidi"]
    assert a.check() == [] and b.check() == []


def test_foreign_or_tampered_batch_changes_nothing(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    a.add_task("x")
    data = a.store.execute("SELECT data FROM outbox").fetchone()[0]
    other = new_replica(tmp_path / "o", "eve")
    other.create_team("other team")
    with pytest.raises(IntegrityError):
        other.apply_batch(data, a.store.meta("author_public"))
    bad = bytearray(data)
    bad[60] ^= 1
    with pytest.raises((IntegrityError,)):
        b.apply_batch(bytes(bad), a.store.meta("author_public"))
    assert b.tasks() == [] and b.store.execute("SELECT COUNT(*) FROM oplog").fetchone()[0] == 0


WRITER = textwrap.dedent(
    """
    import sys
    from hbw_sync.client import Device
    home = sys.argv[1]
    rep = Device.open(home).unlock(PASS)
    i = 0
    while True:
        t = rep.add_task(f"task {i}", description="d" * 200)
        rep.note(t.id, f"note {i}")
        if i % 7 == 0:
            rep.add_tasks([{"title": f"bulk {i}-{j}"} for j in range(30)])
        print(i, flush=True)
        i += 1
    """
)


@pytest.mark.parametrize("seed", range(4))
def test_kill_9_during_writes_leaves_a_consistent_store(tmp_path: Path, seed: int) -> None:
    home = tmp_path / "h"
    rep = new_replica(home)
    rep.create_team("team")
    rep.close()
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(home)], stdout=subprocess.PIPE, text=True)
    stop_after = random.Random(seed).randint(3, 40)
    done = -1
    assert proc.stdout is not None
    for line in proc.stdout:
        done = int(line)
        if done >= stop_after:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    rep = Device.open(home).unlock(PASS)
    assert rep.check() == []
    titles = {t.title for t in rep.tasks()}
    # Every command reported as finished is there, with its note.
    for i in range(done + 1):
        assert f"task {i}" in titles
    logged = rep.store.execute("SELECT COUNT(*) FROM oplog").fetchone()[0]
    in_outbox = rep.store.execute("SELECT COALESCE(SUM(n_ops), 0) FROM outbox").fetchone()[0]
    assert logged == in_outbox
    rep.close()
