"""Cheap late joiners (issue 11 item 6): the relay asks for a snapshot by the bytes of history.

A team that syncs every 10 changes makes many small batches whose bytes outweigh the state they
leave; asking only every 500 batches let a late joiner download far more than a snapshot of the
current state. With the bytes rule (§18, ``SNAPSHOT_BYTES_PERCENT``), its first sync downloads at
most about 1.5x a fresh snapshot.
"""

from __future__ import annotations

import random

import pytest

from hbw_sync.client import sync as syncing
from hbw_sync.client import snapshots as client_snapshots
from hbw_sync.server import relay

from relay_helpers import FAST_KDF, STRONG, Member, Team

WORDS = ("invoice permit inspection budget ledger district ward registry stamp payroll audit licence "
         "supplier council report quarter grant tender receipt hygiene market").split()


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def late_joiner_ratio(team: Team, rounds: int) -> tuple[int, int]:
    """A team of two edits 30 tasks, syncing every 10 changes; returns (late joiner's bytes, fresh snapshot)."""
    dana, chidi = team.pair()
    rng = random.Random(7)
    with dana.open() as rep:
        ids = rep.add_tasks([{"title": sentence(rng, 5)} for _ in range(30)])
    dana.sync()
    chidi.sync()
    for r in range(rounds):
        who = dana if r % 2 == 0 else chidi
        with who.open() as rep:
            for _ in range(10):
                tid = rng.choice(ids).hex()
                if rng.random() < 0.7:
                    rep.edit_task(tid, description=sentence(rng, rng.randint(10, 30)))
                else:
                    rep.note(tid, sentence(rng, 8))
        who.sync()
    dana.sync()
    with dana.open() as rep:
        _, fresh = rep.incoming.make_snapshot(rep.store.meta("pull_cursor"), client_snapshots.seen(rep.store))
    late = Member("bosco", team.tmp / "dev-bosco", f"bosco {STRONG}")
    # joining syncs once: its first download, a snapshot if one is held and the batches after it
    res = syncing.join(late.home, team.invite("bosco"), late.passphrase, kdf=FAST_KDF)
    assert res["synced"] and late.sync().received_batches == 0  # nothing was left for later
    return res["received_bytes"], len(fresh)


ROUNDS = 80


def test_a_late_joiner_downloads_at_most_1_5x_a_fresh_snapshot(team: Team) -> None:
    got, fresh = late_joiner_ratio(team, ROUNDS)
    print(f"late joiner: {got} bytes; fresh snapshot: {fresh} bytes; {got / fresh:.2f}x")
    assert got <= 1.5 * fresh, (got, fresh)


def test_by_count_alone_the_same_history_costs_a_late_joiner_more(team: Team, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound above is the bytes rule's doing: without it (count only), the same team overshoots."""
    monkeypatch.setattr(relay, "SNAPSHOT_MIN_BYTES", 1 << 60)
    got, fresh = late_joiner_ratio(team, ROUNDS)
    print(f"count rule only: late joiner {got} bytes; fresh snapshot {fresh} bytes; {got / fresh:.2f}x")
    assert got > 1.5 * fresh, (got, fresh)


def test_a_snapshot_that_saves_nothing_is_kept_back(team: Team, tmp_path) -> None:
    """A history that is mostly its state (a document, then small edits): the relay asks by bytes,
    the supervisor's device builds once, sees the snapshot would not save a joiner bytes, and
    neither uploads it nor builds again at the next syncs."""
    import sqlite3

    dana, chidi = team.pair()
    path = tmp_path / "scan.pdf"
    path.write_bytes(random.Random(5).randbytes(40_000))  # a scan: does not compress
    with dana.open() as rep:
        rep.add_doc(path)
        tid = rep.add_task("file the scan").id
    dana.sync()
    for i in range(3):
        with dana.open() as rep:
            rep.note(tid, f"checked page {i}")
        dana.sync()
    conn = sqlite3.connect(team.data / "relay.db")
    try:
        assert conn.execute("SELECT COUNT(*) FROM snapshots").fetchone()[0] == 0
    finally:
        conn.close()
    with dana.open() as rep:
        kept = rep.store.meta("snapshot_kept_back")
    assert kept is not None and kept > 40_000
