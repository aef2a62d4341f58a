"""Syncing over bad links: cut at any byte, throttled, blackholed, relay gone, relay restarted.

A real relay runs in a thread (``relay_helpers.Team``); devices reach it
through ``netem.LinkProxy``, a loopback proxy that limits bandwidth, adds
latency and cuts connections at chosen byte offsets. The property under test
is the one the sync module promises: a sync cut at any point either took
effect or left everything queued for the next run, and after one clean run
no op is lost and none is stored or applied twice.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

from hbw_sync.batch import parse_batch
from hbw_sync.client import Device
from hbw_sync.client import sync as syncing
from hbw_sync.client.cli import cli as client_cli
from hbw_sync.client.sync import sync_lock
from hbw_sync.client.retry import RetryNotice, RetryPolicy, parse_duration
from hbw_sync.errors import TransientError, UsageError
from netem import LinkProxy, Toxics, closed_port, http_message_length, split_messages
from relay_helpers import FAST_KDF, STRONG, Member, Team, set_relay_url

#: Small enough that A's sync takes several round trips (one batch each way per trip).
BUDGET = 1024
#: Seconds a sync through the proxy may take before the test calls it hung.
TIMEOUT = 10.0


# -- a team with work queued on both sides -----------------------------------------------------------


@dataclass
class World:
    team: Team
    sup: Member
    a: Member
    b: Member
    shared: str  # a task of B's that A knows and both annotate
    a_notes: int  # notes A put on the shared task
    b_notes: int


def _text(n: int) -> str:
    return os.urandom(n).hex()  # random: sizes barely vary between runs, and no two texts are alike


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def go_offline(*members: Member) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    for m in members:
        set_relay_url(m, dead)


def queue_batch(m: Member) -> None:
    """Close m's open batch the way real life does: a sync attempt while the link is down."""
    with pytest.raises(TransientError):
        m.sync(timeout=TIMEOUT)


@contextmanager
def world(tmp: Path, a_batches: int = 3, b_batches: int = 4, tasks_per_batch: int = 3) -> Iterator[World]:
    """Supervisor, A and B in one team; B's work waits at the relay, A's in A's outbox (closed batches)."""
    with Team(tmp) as team:
        sup = team.join("sup", "supervisor")
        a, b = team.join("anna"), team.join("ben")
        sup.sync()  # hands the team key to A and B
        a.sync()
        b.sync()
        with b.open() as rep:
            shared = rep.add_tasks([{"title": "Budget review", "description": _text(40)}])[0].hex()
        b.sync()
        a.sync()
        with a.open() as rep:
            assert [t.id for t in rep.tasks()] == [shared]
        for i in range(b_batches):
            with b.open() as rep:
                rep.add_tasks([{"title": f"ben {i}.{j}", "description": _text(60)} for j in range(tasks_per_batch)])
                rep.note(shared, f"ben note {i}")
            b.sync()
        go_offline(a)
        for i in range(a_batches):
            with a.open() as rep:
                ids = rep.add_tasks([{"title": f"anna {i}.{j}", "description": _text(60)}
                                     for j in range(tasks_per_batch)])
                rep.edit_task(ids[0].hex(), priority=2, description=_text(30))
                rep.note(shared, f"anna note {i}")
            queue_batch(a)
        set_relay_url(a, team.url)
        with Device.open(a.home) as dev:
            n = dev.store.execute("SELECT COUNT(*) FROM outbox WHERE state = 'closed'").fetchone()[0]
        assert n == a_batches
        yield World(team, sup, a, b, shared, a_batches, b_batches)


# -- what the stores hold ------------------------------------------------------------------------------


def device_id(m: Member) -> bytes:
    with Device.open(m.home) as dev:
        return dev.store.meta("device_id")


def own_ops(m: Member, device: bytes | None = None) -> set[bytes]:
    """Op ids in m's op log made by ``device`` (default: m itself)."""
    with Device.open(m.home) as dev:
        d = device or dev.store.meta("device_id")
        return {r[0] for r in dev.store.execute("SELECT op_id FROM oplog WHERE device = ?", (d,))}


def ops_of(blobs: list[bytes]) -> list[bytes]:
    out = []
    for data in blobs:
        f = parse_batch(data)
        out += [op.op_id(f.device) for op in f.routing_ops()]
    return out


def outbox(m: Member) -> list[tuple[int, int, bytes]]:
    with Device.open(m.home) as dev:
        return dev.store.execute("SELECT seq, n_ops, data FROM outbox ORDER BY seq").fetchall()


def inbox_rseqs(m: Member) -> set[int]:
    with Device.open(m.home) as dev:
        return {r[0] for r in dev.store.execute("SELECT rseq FROM inbox")}


def pending_rseqs(m: Member) -> set[int]:
    """Batches received but not applied yet: whole in the inbox, or announced and being fetched in pieces."""
    with Device.open(m.home) as dev:
        tables = {r[0] for r in dev.store.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        big = {r[0] for r in dev.store.execute("SELECT rseq FROM downloads")} if "downloads" in tables else set()
    return inbox_rseqs(m) | big


def pull_cursor(m: Member) -> int:
    with Device.open(m.home) as dev:
        return dev.store.meta("pull_cursor", 0)


def relay_rows(team: Team) -> list[tuple[int, bytes, int, bytes]]:
    conn = sqlite3.connect(team.data / "relay.db")
    try:
        return conn.execute("SELECT rseq, device, seq, data FROM batches ORDER BY rseq").fetchall()
    finally:
        conn.close()


def relay_ops(team: Team, device: bytes) -> list[bytes]:
    return ops_of([data for _, d, _, data in relay_rows(team) if d == device])


def tasks(m: Member) -> list[dict]:
    with m.open() as rep:
        return sorted((t.to_dict() for t in rep.tasks()), key=lambda t: t["id"])


def assert_nothing_lost_yet(w: World, where: str) -> None:
    """After a cut: every op of A is at the relay or still queued; what A's cursor passed is held by A."""
    a = device_id(w.a)
    mine = own_ops(w.a)
    at_relay = relay_ops(w.team, a)
    queued = set(ops_of([data for _, _, data in outbox(w.a)]))
    assert len(at_relay) == len(set(at_relay)), f"{where}: an op of A is stored twice at the relay"
    assert mine == queued | set(at_relay), f"{where}: ops of A neither queued nor at the relay"
    rows = relay_rows(w.team)
    seqs = [(d, s) for _, d, s, _ in rows]
    assert len(seqs) == len(set(seqs)), f"{where}: a (device, seq) stored twice"
    cursor = pull_cursor(w.a)
    held = set().union(*(own_ops(w.a, device_id(m)) for m in (w.b, w.sup)))
    waiting = pending_rseqs(w.a)
    for rseq, d, _, data in rows:
        if d != a and rseq <= cursor and rseq not in waiting:
            assert set(ops_of([data])) <= held, f"{where}: A's cursor passed batch {rseq} without keeping it"


def assert_converged(w: World, where: str) -> None:
    """After one clean sync of A, then B, then A: everything exactly once, everywhere."""
    a, b = device_id(w.a), device_id(w.b)
    mine = own_ops(w.a)
    at_relay = relay_ops(w.team, a)
    assert sorted(at_relay) == sorted(mine), f"{where}: relay holds A's ops {len(at_relay)}x, A made {len(mine)}"
    assert outbox(w.a) == [], f"{where}: A's outbox not emptied"
    assert pending_rseqs(w.a) == set() and pending_rseqs(w.b) == set(), f"{where}: batches left unapplied"
    b_made = own_ops(w.b)
    assert sorted(relay_ops(w.team, b)) == sorted(b_made)
    assert own_ops(w.a, b) == b_made, f"{where}: A did not apply B's ops exactly"
    assert own_ops(w.b, a) == mine, f"{where}: B did not apply A's ops exactly"
    ta, tb = tasks(w.a), tasks(w.b)
    assert ta == tb, f"{where}: A and B disagree"
    shared = next(t for t in ta if t["id"] == w.shared)
    texts = [n["text"] for n in shared["notes"]]
    assert sorted(texts) == sorted([f"ben note {i}" for i in range(w.b_notes)]
                                   + [f"anna note {i}" for i in range(w.a_notes)]), f"{where}: notes {texts}"


def recover(w: World) -> None:
    """The next run, on a good link: A syncs once and must finish; then B and A pick up each other's work."""
    set_relay_url(w.a, w.team.url)
    w.a.sync(budget=BUDGET, timeout=TIMEOUT)
    assert outbox(w.a) == [], "one clean sync did not empty the outbox"
    w.b.sync()
    w.a.sync()


# -- 1. cut at many byte offsets ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def shape(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[int, int, int, int]]:
    """Per connection of an uncut sync of A: (request head, request total, response head, response total)."""
    with world(tmp_path_factory.mktemp("calibrate")) as w, LinkProxy(port_of(w.team.url)) as proxy:
        set_relay_url(w.a, proxy.url)
        report = w.a.sync(budget=BUDGET, timeout=TIMEOUT)
        assert report.ok and report.sent_batches == 3 and report.received_batches == 4
        recover(w)
        assert_converged(w, "uncut")
        # One sync reuses one keep-alive connection: each round trip is one request and one answer in it.
        assert len(proxy.conns) == 1, "a sync should reuse one connection for all its round trips"
        c = proxy.conns[0]
        ups, downs = split_messages(c.up_data), split_messages(c.down_data)
        out = [(uh, ut, dh, dt) for (uh, ut), (dh, dt) in zip(ups, downs)]
    assert len(out) >= 3, f"the scenario should take several round trips, took {len(out)}"
    assert all(0 < uh < ut and 0 < dh < dt for uh, ut, dh, dt in out)
    return out


NEAR_END = ("all but 1", "whole request")  # may spill into the next trip, or past the end


def offsets(shape: list[tuple[int, int, int, int]], direction: str) -> list[tuple[int, int, str]]:
    """Cut points (trip, byte offset in that trip, label): heads and bodies of the first, second and last trips."""
    out: list[tuple[int, int, str]] = []
    for i in sorted({0, 1, len(shape) - 1}):
        uh, ut, dh, dt = shape[i]
        head, total = (uh, ut) if direction == "up" else (dh, dt)
        body = total - head
        for local, what in ((0, "nothing"), (head // 2, "mid-head"), (head, "head only"),
                            (head + body // 2, "mid-body"), (total - 1, "all but 1")):
            out.append((i, local, what))
        if direction == "up":
            out.append((i, total, "whole request"))  # the relay may or may not have read it all
    return out


@pytest.mark.parametrize("direction", ["up", "down"])
def test_sync_cut_at_any_byte_completes_or_stays_queued(tmp_path: Path, shape, direction: str) -> None:
    cases = offsets(shape, direction)
    assert len(cases) >= 15
    truncated = 0
    col = 1 if direction == "up" else 3
    for k, (trip, offset, label) in enumerate(cases):
        where = f"{direction} cut in trip {trip} at byte {offset} ({label}, {'RST' if k % 2 == 0 else 'FIN'})"
        before = sum(t[col] for t in shape[:trip])  # earlier round trips' bytes on the same connection
        cut = Toxics(cut_after=before + offset, reset=k % 2 == 0)
        with world(tmp_path / f"c{k}") as w, LinkProxy(port_of(w.team.url), **{direction: cut}) as proxy:
            set_relay_url(w.a, proxy.url)
            try:
                w.a.sync(budget=BUDGET, timeout=TIMEOUT)
                failed = False
            except TransientError:
                failed = True
            # The sizes drift by a few bytes from the calibration run: judge by what really went through.
            if proxy.cuts == 0:  # the message was shorter than this run's cut point
                assert label in NEAR_END and not failed, f"{where}: failed uncut"
            else:
                c = next(c for c in proxy.conns if c.cut)
                assert c.index == 0, f"{where}: cut connection {c.index}"
                answer_end = before + (http_message_length(bytes(c.down_data)[before:]) or 1 << 62)
                whole = direction == "down" and c.down_bytes >= answer_end
                truncated += not whole
                if not whole:
                    assert failed, f"{where}: a sync whose answer never arrived whole reported success"
            assert_nothing_lost_yet(w, where)
            recover(w)
            assert_converged(w, where)
    assert truncated >= len(cases) - 3, f"only {truncated} of {len(cases)} cuts broke a message"


# -- 2. a slow, laggy link ------------------------------------------------------------------------------


@pytest.mark.parametrize("link", [
    Toxics(rate=20_000, latency_ms=100, jitter_ms=20),  # 160 kbit/s, a good 3G minute
    Toxics(slice=7, latency_ms=2),  # messages in tiny pieces
], ids=["3g", "sliced"])
def test_slow_link_sync_completes_and_is_correct(tmp_path: Path, link: Toxics) -> None:
    with world(tmp_path, a_batches=3, b_batches=3, tasks_per_batch=20) as w, \
            LinkProxy(port_of(w.team.url), up=link, down=link, max_seconds=30) as proxy:
        set_relay_url(w.a, proxy.url)
        t0 = time.monotonic()
        report = w.a.sync(timeout=TIMEOUT)  # the default budget: one round trip
        elapsed = time.monotonic() - t0
        assert report.ok and report.sent_batches == 3 and report.received_batches == 3
        moved = sum(c.up_bytes + c.down_bytes for c in proxy.conns)
        assert proxy.cuts == 0 and moved > 8_000
        if link.rate:
            # the throttle was real: at least the time the bytes need at that rate, plus one latency each way.
            # The proxy pauses *after* each slice of rate/20 bytes, so the last slice each way arrives one
            # pause early: the request and the answer each save up to one slice's time.
            early = 2 * max(1, link.rate // 20)
            assert elapsed >= (moved - early) / link.rate + 2 * link.latency_ms / 1000 * 0.9, (elapsed, moved)
        recover(w)
        assert_converged(w, f"slow link {link}")


# -- 3. relay unreachable -----------------------------------------------------------------------------------


def cli(m: Member, *args: str, passphrase: bool = True):
    env = {"HBW_SYNC_HOME": str(m.home), "HBW_PASSPHRASE": m.passphrase if passphrase else None}
    return CliRunner().invoke(client_cli, list(args), env=env, catch_exceptions=False)


def last_sync(m: Member) -> dict:
    r = cli(m, "status", "--json", passphrase=False)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)["last_sync"]


@pytest.mark.parametrize("how", ["nothing listening", "blackhole"])
def test_unreachable_relay_exits_75_and_keeps_the_outbox(tmp_path: Path, how: str) -> None:
    with world(tmp_path, a_batches=2, b_batches=1) as w, LinkProxy(None) as hole:
        with w.a.open() as rep:
            rep.add_tasks([{"title": "still open"}])  # an open batch too: a failed sync closes it, loses nothing
        before = outbox(w.a)
        assert len(before) == 3
        set_relay_url(w.a, f"http://127.0.0.1:{closed_port()}" if how == "nothing listening" else hole.url)
        t0 = time.monotonic()
        with pytest.raises(TransientError) as e:
            w.a.sync(timeout=0.3)
        assert "nothing was lost" in (e.value.hint or "")
        assert outbox(w.a) == before
        assert last_sync(w.a)["ok"] is False
        for unlocked in (True, False):  # by a person, and by a scheduler without the passphrase
            r = cli(w.a, "sync", "--timeout", "0.3", "--deadline", "0", passphrase=unlocked)  # one attempt
            assert r.exit_code == 75, r.output
            assert outbox(w.a) == before
            status = last_sync(w.a)
            assert status["ok"] is False and status["how"] == "relay"
        assert time.monotonic() - t0 < 60  # gave up rather than hanging (generous: CI machines are noisy)
        if how == "blackhole":
            assert len(hole.conns) == 3  # it was reached, and kept silent
        assert relay_ops(w.team, device_id(w.a)) == []
        recover(w)
        assert_converged(w, how)
        assert last_sync(w.a)["ok"] is True


# -- 4. the relay stored the batches, but its answer never came back -------------------------------------


@pytest.mark.parametrize("how", ["answer cut", "answer cut with FIN", "answer blackholed", "relay restarted"])
def test_stored_but_not_acked_loses_nothing_and_duplicates_nothing(tmp_path: Path, how: str) -> None:
    lost = (Toxics(blackhole=True) if how == "answer blackholed"
            else Toxics(cut_after=0, reset=how != "answer cut with FIN"))
    with world(tmp_path, a_batches=3, b_batches=2) as w, LinkProxy(port_of(w.team.url), down=lost) as proxy:
        a = device_id(w.a)
        before = outbox(w.a)
        cursor = pull_cursor(w.a)
        set_relay_url(w.a, proxy.url)
        with pytest.raises(TransientError):
            w.a.sync(timeout=0.5 if how == "answer blackholed" else TIMEOUT)  # default budget: one trip
        assert len(proxy.conns) == 1 and proxy.conns[0].down_bytes == 0
        # The relay committed A's batches; A does not know: nothing is acknowledged, nothing pulled.
        stored = relay_rows(w.team)
        assert sorted(relay_ops(w.team, a)) == sorted(own_ops(w.a))
        assert outbox(w.a) == before and pull_cursor(w.a) == cursor and inbox_rseqs(w.a) == set()
        # B pulls A's batches before A hears of them.
        w.b.sync()
        assert own_ops(w.b, a) == own_ops(w.a)
        if how == "relay restarted":
            w.team.restart()  # a new port: everyone follows it
            for m in (w.b, w.sup):
                set_relay_url(m, w.team.url)
        set_relay_url(w.a, w.team.url)
        report = w.a.sync(timeout=TIMEOUT)
        # The same batches again: acknowledged from what the relay already holds, not stored again.
        assert report.sent_batches == 3 and outbox(w.a) == []
        assert relay_rows(w.team) == stored
        w.b.sync()
        assert relay_rows(w.team) == stored
        w.a.sync()
        assert_converged(w, how)


def test_answer_lost_on_a_later_round_trip(tmp_path: Path) -> None:
    """The first trips worked, the third answer is lost: what was acknowledged stays so, the rest is resent."""
    # Calibrate: the answers' sizes on the one keep-alive connection of an uncut run.
    with world(tmp_path / "cal", a_batches=4, b_batches=4) as w, LinkProxy(port_of(w.team.url)) as proxy:
        set_relay_url(w.a, proxy.url)
        w.a.sync(budget=BUDGET, timeout=TIMEOUT)
        answers = split_messages(proxy.conns[0].down_data)
    assert len(answers) >= 3
    lost = Toxics(cut_after=answers[0][1] + answers[1][1] + answers[2][0] // 2)  # mid-head of the third answer
    with world(tmp_path / "run", a_batches=4, b_batches=4) as w, LinkProxy(port_of(w.team.url), down=lost) as proxy:
        set_relay_url(w.a, proxy.url)
        with pytest.raises(TransientError):
            w.a.sync(budget=BUDGET, timeout=TIMEOUT)
        assert len(proxy.conns) == 1 and proxy.cuts == 1
        left = outbox(w.a)
        assert len(left) == 2, "the two acknowledged batches must be gone, the two others queued"
        assert sum(1 for r in relay_rows(w.team) if r[1] == device_id(w.a)) == 3, "the third was stored"
        assert_nothing_lost_yet(w, "third answer lost")
        recover(w)
        assert_converged(w, "third answer lost")


# -- 5. two syncs at once on one store ------------------------------------------------------------------------


def test_second_sync_on_a_locked_store_gives_up_at_once(tmp_path: Path) -> None:
    with world(tmp_path, a_batches=2, b_batches=1) as w:
        before = outbox(w.a)
        with Device.open(w.a.home) as dev:
            home = dev.store.home
        with sync_lock(home):
            t0 = time.monotonic()
            with pytest.raises(TransientError, match="another sync"):
                w.a.sync(timeout=TIMEOUT)
            r = cli(w.a, "sync")
            assert r.exit_code == 75, r.output
            assert time.monotonic() - t0 < 60  # did not wait for the lock (a wait would never end here)
            assert outbox(w.a) == before and relay_ops(w.team, device_id(w.a)) == []
        recover(w)
        assert_converged(w, "after the lock")


def test_sync_during_a_slow_sync_gets_the_lock_error(tmp_path: Path) -> None:
    with world(tmp_path, a_batches=2, b_batches=1) as w, \
            LinkProxy(port_of(w.team.url), up=Toxics(latency_ms=600)) as proxy:
        set_relay_url(w.a, proxy.url)
        result: dict = {}

        def first() -> None:
            try:
                result["report"] = w.a.sync(timeout=TIMEOUT)
            except BaseException as e:  # noqa: BLE001 - reported below
                result["error"] = e

        t = threading.Thread(target=first)
        t.start()
        deadline = time.monotonic() + 5
        while not proxy.conns and time.monotonic() < deadline:
            time.sleep(0.005)
        assert proxy.conns, "the first sync never reached the link"
        with pytest.raises(TransientError, match="another sync"):
            w.a.sync(timeout=TIMEOUT)
        t.join(TIMEOUT)
        assert "error" not in result, result
        assert result["report"].sent_batches == 2
        w.b.sync()
        w.a.sync()
        assert_converged(w, "two syncs at once")


# -- 6. a batch bigger than what the link moves within one --timeout ---------------------------------------


def test_batch_slower_than_the_timeout_still_gets_through(tmp_path: Path) -> None:
    """--timeout bounds a stall, not the transfer: else a big batch on a slow link would fail forever.

    Scaled down: 30 KB/s and a 0.5 s timeout; a 30 KB document each way needs ~1 s per direction.
    (Full scale: a 768 KB document batch at 64 kbit/s needs ~100 s against the 60 s default.)
    """
    doc = tmp_path / "scan.pdf"
    with world(tmp_path, a_batches=1, b_batches=1) as w, \
            LinkProxy(port_of(w.team.url), up=Toxics(rate=30_000), down=Toxics(rate=30_000)) as proxy:
        doc.write_bytes(os.urandom(30_000))
        with w.b.open() as rep:
            rep.add_doc(doc, name="b.pdf")
        w.b.sync()
        with w.a.open() as rep:
            rep.add_doc(doc, name="a.pdf")
        set_relay_url(w.a, proxy.url)
        w.a.sync(timeout=0.5)
        assert proxy.cuts == 0 and len(proxy.conns) == 1 and proxy.conns[0].up_bytes > 30_000
        assert proxy.conns[0].down_bytes > 30_000
        recover(w)
        assert_converged(w, "big batches")
        for m in (w.a, w.b):
            with m.open() as rep:
                assert sorted(d.name for d in rep.docs()) == ["a.pdf", "b.pdf"]
    # ... and a link that really stalls still gives up, after about --timeout.
    with world(tmp_path / "stall", a_batches=1, b_batches=1) as w, \
            LinkProxy(port_of(w.team.url), down=Toxics(blackhole=True)) as proxy:
        set_relay_url(w.a, proxy.url)
        t0 = time.monotonic()
        with pytest.raises(TransientError):
            w.a.sync(timeout=0.5)
        assert time.monotonic() - t0 < 60  # gave up on the stall (generous: CI machines are noisy)


# -- 7. joining over a bad link ---------------------------------------------------------------------------


@pytest.mark.parametrize("lost", ["request", "answer"])
def test_join_cut_can_be_retried_with_the_same_invite(tmp_path: Path, lost: str) -> None:
    """The relay enrolled the device but its answer was lost: joining again with the same invite must work."""
    cut = {"up": Toxics(cut_after=100)} if lost == "request" else {"down": Toxics(cut_after=0)}
    with Team(tmp_path) as team:
        sup = team.join("sup", "supervisor")
        with LinkProxy(port_of(team.url), **cut) as proxy:
            carl = Member("carl", tmp_path / "dev-carl", f"carl {STRONG}")
            code = team.invite("carl", url=proxy.url)
            with pytest.raises(TransientError):
                syncing.join(carl.home, code, carl.passphrase, kdf=FAST_KDF)
            assert proxy.cuts == 1
            out = syncing.join(carl.home, code, carl.passphrase, kdf=FAST_KDF)
            assert out["member"] == "carl" and out["synced"] is True
        set_relay_url(carl, team.url)
        sup.sync()  # hands carl the team key
        carl.sync()
        with carl.open() as rep:
            rep.add_task("Inventory of the archive")
        carl.sync()
        sup.sync()
        assert [t["title"] for t in tasks(sup)] == ["Inventory of the archive"]


# -- 8. large batches (resumable pieces) cut on every round trip -------------------------------------------


def docs(m: Member) -> list[tuple[str, str, int]]:
    with m.open() as rep:
        return sorted((d.name, d.sha256, d.versions) for d in rep.docs())


@pytest.mark.parametrize("direction", ["up", "down"])
def test_large_batches_cut_on_every_round_trip(tmp_path: Path, direction: str) -> None:
    """Documents big enough to travel on their own (streams); the link drops once, in trip 0, 1, 2... of the sync."""

    def setup(root: Path):  # (context manager, world): entered here, exited by the caller
        w = world(root, a_batches=1, b_batches=1)
        wd = w.__enter__()
        for m, name, size in ((wd.a, "a.pdf", 100_000), (wd.b, "b.pdf", 80_000)):
            f = root / name
            f.write_bytes(os.urandom(size))
            with m.open() as rep:
                rep.add_doc(f, name=name)
        wd.b.sync()
        return w, wd

    # Calibrate: the round trips of an uncut sync, all on one keep-alive connection.
    ctx, w = setup(tmp_path / "cal")
    try:
        with LinkProxy(port_of(w.team.url)) as proxy:
            set_relay_url(w.a, proxy.url)
            w.a.sync(budget=BUDGET, timeout=TIMEOUT)
            c = proxy.conns[0]
            trips = split_messages(c.up_data if direction == "up" else c.down_data)
    finally:
        ctx.__exit__(None, None, None)
    assert len(trips) >= 4, f"only {len(trips)} round trips: the documents did not travel on their own"
    for trip in range(len(trips)):
        before = sum(t[1] for t in trips[:trip])
        head, total = trips[trip]
        inside = head // 2 if direction == "down" else min(20_000, (head + total) // 2)
        where = f"large batches, {direction} cut in trip {trip}"
        ctx, w = setup(tmp_path / f"t{trip}")
        try:
            with LinkProxy(port_of(w.team.url), **{direction: Toxics(cut_after=before + inside,
                                                                      reset=trip % 2 == 0)}) as proxy:
                set_relay_url(w.a, proxy.url)
                with pytest.raises(TransientError):
                    w.a.sync(budget=BUDGET, timeout=TIMEOUT)
                assert proxy.cuts == 1, where
            assert_nothing_lost_yet(w, where)
            recover(w)
            assert_converged(w, where)
            assert docs(w.a) == docs(w.b) and [d[0] for d in docs(w.a)] == ["a.pdf", "b.pdf"], where
        finally:
            ctx.__exit__(None, None, None)


# -- 9. one sync finishes the job: it goes on after each drop, within a deadline ---------------------------

#: Retry at once in tests: the waits are the policy's business, not what these tests check.
NO_WAIT = RetryPolicy(first_wait_s=0, max_wait_s=0)


def add_docs(m: Member, root: Path, sizes: dict[str, int]) -> None:
    for name, size in sizes.items():
        f = root / name
        f.write_bytes(os.urandom(size))  # incompressible: every byte has to cross the link
        with m.open() as rep:
            rep.add_doc(f, name=name)


def test_one_sync_finishes_a_multi_mb_outbox_across_cuts_every_few_kb(tmp_path: Path) -> None:
    """The link drops every 16 KB each way, hundreds of times; ONE sync call still moves 2 MB up and 200 KB down.

    Pieces bigger than the gap between two drops would be cut for ever: the sync shrinks them after a
    drop. Every drop is told in words (how much went, how much is left), never as an exception name.
    """
    with world(tmp_path, a_batches=1, b_batches=1) as w:
        add_docs(w.b, tmp_path, {"b.pdf": 200_000})
        w.b.sync()
        add_docs(w.a, tmp_path, {"a1.pdf": 1_000_000, "a2.pdf": 1_000_000})
        cuts = Toxics(cut_every=16_000)
        with LinkProxy(port_of(w.team.url), up=cuts, down=cuts, max_seconds=900) as proxy:
            set_relay_url(w.a, proxy.url)
            told: list[RetryNotice] = []
            report = w.a.sync(timeout=TIMEOUT, deadline=900, policy=NO_WAIT, on_retry=told.append)
            assert proxy.cuts >= 100, proxy.cuts  # 2 MB through 16 KB gaps: the link really dropped, often
        assert report.ok and report.attempts == len(told) + 1 and report.attempts > 100
        assert report.sent_bytes >= 2_000_000 and report.received_bytes >= 200_000
        assert outbox(w.a) == [] and pending_rseqs(w.a) == set()
        texts = [n.text() for n in told]
        assert all(t.startswith("The link dropped after ") and " left; trying again now." in t for t in texts)
        assert not any("Error" in t or "aiohttp" in t for t in texts), texts[:3]
        assert all(n.error.startswith("TransientError: ") for n in told)  # the cause, kept for the log
        lefts = [n.left for n in told]
        assert lefts[0] > 1_900_000 and lefts[-1] < lefts[0]  # it went on where it stopped
        recover(w)
        assert_converged(w, "cut every 16 KB")
        assert docs(w.a) == docs(w.b) and [d[0] for d in docs(w.b)] == ["a1.pdf", "a2.pdf", "b.pdf"]


def test_deadline_stops_the_sync_and_says_what_went_and_what_is_left(tmp_path: Path) -> None:
    """A link far too slow for the outbox: the sync stops at its deadline, in words, and loses nothing."""
    with world(tmp_path, a_batches=1, b_batches=1) as w:
        add_docs(w.a, tmp_path, {"scan.pdf": 1_000_000})
        slow = Toxics(rate=20_000, cut_every=30_000)  # 1 MB at 20 KB/s: about 50 s; the deadline is 2 s
        with LinkProxy(port_of(w.team.url), up=slow, max_seconds=120) as proxy:
            set_relay_url(w.a, proxy.url)
            with pytest.raises(TransientError) as e:
                w.a.sync(timeout=TIMEOUT, deadline=2, policy=NO_WAIT)
        assert e.value.code == "transient.deadline"
        assert str(e.value).startswith("The sync stopped at its deadline (2 s): ") and " is left." in str(e.value)
        assert "nothing was lost" in (e.value.hint or "")
        assert_nothing_lost_yet(w, "deadline")
        recover(w)
        assert_converged(w, "deadline")


def test_cli_sync_gives_up_on_an_unreachable_relay_after_a_few_tries(tmp_path: Path) -> None:
    """No progress across the policy's tries: exit 75, in words; each wait was told on the way."""
    with world(tmp_path, a_batches=1, b_batches=1) as w:
        before = outbox(w.a)
        set_relay_url(w.a, f"http://127.0.0.1:{closed_port()}")
        r = cli(w.a, "sync", "--timeout", "0.3", "--deadline", "5m")
        assert r.exit_code == 75, r.output
        assert "Could not reach the relay at http://127.0.0.1:" in r.output and "(3 tries in " in r.output
        assert r.stderr.count("Could not get through to the relay; trying again ") == 2
        assert "ClientConnectorError" not in r.output and "Errno" not in r.output
        assert outbox(w.a) == before
        r = cli(w.a, "sync", "--deadline", "soon")
        assert r.exit_code == 2 and "is not a duration" in r.output
        recover(w)
        assert_converged(w, "unreachable, then back")


def test_deadline_durations() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "10m", "1h", "0", " 2 min ")] == [90, 90, 600, 3600, 0, 120]
    for bad in ("", "m", "-1s", "2d", "25h", "nan", "inf"):
        with pytest.raises(UsageError):
            parse_duration(bad)


def test_an_upload_cut_every_few_kb_resumes_at_the_byte_in_one_sync(tmp_path: Path) -> None:
    """Large batches and document chunks go up as streams the relay keeps at the byte (``POST
    /v1/stream``): the link is cut every 16 KB, hundreds of times across 3 MB (two documents as
    large batches, one of 1.5 MB as chunks of about 64 KiB, which never fit between two cuts
    whole), and ONE sync finishes with each byte sent about once: what went up, round trips and
    headers included, is at most 1.1x the bytes that had to go."""
    with world(tmp_path, a_batches=1, b_batches=1) as w:
        (tmp_path / "docs").mkdir()
        add_docs(w.a, tmp_path / "docs", {"ledger.pdf": 900_000, "scan.pdf": 1_500_000, "forms.pdf": 600_000})
        waiting = syncing.pending_bytes(w.a.home)
        cuts = Toxics(cut_every=16_000)
        with LinkProxy(port_of(w.team.url), up=cuts, max_seconds=600) as proxy:
            set_relay_url(w.a, proxy.url)
            told: list[RetryNotice] = []
            report = w.a.sync(timeout=TIMEOUT, deadline=600, policy=NO_WAIT, on_retry=told.append)
            up = sum(c.up_bytes for c in proxy.conns)
            n_cuts = proxy.cuts
        assert report.ok and n_cuts >= 150 and outbox(w.a) == [], (n_cuts, report.attempts)
        assert report.attempts == n_cuts + 1  # one attempt per cut, and none gave up
        assert up <= 1.1 * waiting, f"{up} bytes went up for {waiting}: {up / waiting:.3f}x, {n_cuts} cuts"
        # Each drop said what is left, and it only shrinks: the relay kept every byte that arrived.
        lefts = [n.left for n in told]
        assert lefts == sorted(lefts, reverse=True) and lefts[-1] < 3 * 16_000, lefts[-5:]
        recover(w)
        assert_converged(w, "cut every 16 KB, streamed")
        assert [d[0] for d in docs(w.b)] == ["forms.pdf", "ledger.pdf", "scan.pdf"]
