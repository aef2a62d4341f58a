"""A change costs the same whatever the outbox holds (issue 11 item 7).

The open batch is kept as pieces, signed, sealed batches that fold like a binary counter, and
built into full batches once when it closes. These tests check that a change rebuilds about
log2(n) ops, not all n that wait (the old outbox re-compressed and re-sealed the whole open batch
per change), that
closing builds one batch with its seqs taken back, and that pieces sent locked and a batch
built unlocked both arrive whole at the other device. Timing lives in scripts/bench_client.py.
"""

from __future__ import annotations

import math
from pathlib import Path

from hbw_sync import batch as wire
from hbw_sync.client import Device, Replica
from hbw_sync.client.replica import OPEN_MAX_OPS
from hbw_sync.client.vault import KdfParams

from relay_helpers import Team

STRONG = "amina orchid lantern 52 ferry"


def new_replica(home: Path) -> Replica:
    rep = Device.init(home, "amina", STRONG, kdf=KdfParams(n=2**10)).unlock(STRONG)
    rep.create_team("team")
    return rep


def outbox(rep: Replica) -> list[tuple[int, str, int, bytes]]:
    return rep.store.execute("SELECT seq, state, n_ops, data FROM outbox ORDER BY seq").fetchall()


def test_a_change_rebuilds_log_n_ops_not_all_that_wait_and_closing_builds_one_batch(tmp_path: Path) -> None:
    rep = new_replica(tmp_path / "h")
    tid = rep.add_task("ledger").id
    rebuilt = 0  # ops sealed again, summed over the changes: the work a change does
    for i in range(51):
        before = set(outbox(rep))
        rep.edit_task(tid, description=f"version {i}")
        rebuilt += sum(r[2] for r in set(outbox(rep)) - before)
        assert len(outbox(rep)) <= 1 + math.log2(i + 2), "pieces should fold like a binary counter"
    # The old outbox rebuilt every waiting op per change: 1 + 2 + ... + 52 = 1378 here.
    assert rebuilt <= 51 * (math.log2(52) + 1), rebuilt
    after = outbox(rep)
    assert all(r[1] == "open" for r in after)
    assert rep.status()["outbox"]["batches"] == 1 and rep.status()["outbox"]["changes"] == 52

    pieces = sum(len(r[3]) for r in after)
    rep.close_outbox()
    rows = outbox(rep)
    assert [(r[0], r[1], r[2]) for r in rows] == [(1, "closed", 52)]
    assert len(rows[0][3]) < pieces, "the built batch should be smaller than its pieces"
    b = wire.decode_batch(rows[0][3], rep.store.meta("author_public"), rep.team_keys(), team=rep.store.meta("team_id"))
    logged = {r[0] for r in rep.store.execute("SELECT op_id FROM oplog")}
    assert b.seq == 1 and set(b.op_ids()) == logged
    assert rep.store.meta("next_seq") == 2 and rep.check() == []
    rep.edit_task(tid, description="after the close")
    assert [(r[0], r[1]) for r in outbox(rep)] == [(1, "closed"), (2, "open")]
    rep.close()


def test_the_open_run_is_built_once_when_it_reaches_its_cap(tmp_path: Path) -> None:
    rep = new_replica(tmp_path / "h")
    tid = rep.add_task("ledger").id
    for i in range(OPEN_MAX_OPS + 5):
        rep.edit_task(tid, priority=i % 4)
    rows = outbox(rep)
    # the first OPEN_MAX_OPS ops became one closed batch; the rest wait as open pieces after it
    assert rows[0][1] == "closed" and rows[0][2] >= OPEN_MAX_OPS
    assert all(r[1] == "open" for r in rows[1:]) and len(rows) <= 4
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    assert sum(r[2] for r in rows) == OPEN_MAX_OPS + 6 and rep.check() == []
    rep.close()


def test_pieces_sent_locked_and_a_batch_built_unlocked_both_arrive_whole(team: Team) -> None:
    dana, chidi = team.pair()
    with chidi.open() as rep:
        t = rep.add_task("inspection report")
        for i in range(5):
            rep.note(t.id, f"stall {i} checked")
    r = chidi.sync(unlocked=False)  # locked: the pieces travel as they are (six changes: 6 = 4 + 2)
    assert r.sent_batches == 2
    with chidi.open() as rep:
        for i in range(5):
            rep.note(t.id, f"licence {i} renewed")
    r = chidi.sync()  # unlocked: built into one batch first
    assert r.sent_batches == 1
    dana.sync()
    with dana.open() as rep:
        notes = rep.task(t.id).notes
    assert len(notes) == 10
    with Device.open(chidi.home) as dev:
        assert dev.status()["outbox"]["batches"] == 0
