"""Snapshots trusted only when they should be (issue 10 item 3, PROTOCOL.md §18), end to end.

The attack this guards against: a member's device stored a bogus snapshot (empty, claiming to
cover all history) and the relay served it to every later joiner, whose cursor jumped past all
history: they saw 0 of 6,814 tasks, for ever, while every sync "worked". Here the relay refuses
such a snapshot (and never serves one it would not keep), and a device that is served one
anyway, by whoever controls the relay host, refuses it, replays the history and says so.

Everything is real: the relay in its thread on loopback, real stores, real HTTP. The hostile
relay host is played by a transport that re-signs the real relay's answers with the relay's
own key (read from its data dir, as an attacker holding the host would).
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import pytest
from click.testing import CliRunner

from hbw_sync import crypto, envelope, hlc, snapshot
from hbw_sync.client import Device
from hbw_sync.client import sync as syncing
from hbw_sync.client import snapshots as client_snapshots
from hbw_sync.client import team as team_cmds
from hbw_sync.client.cli import cli as client_cli
from hbw_sync.errors import HbwError
from hbw_sync.ops import Kind, make_op
from hbw_sync.server import admin, relay, storage

from relay_helpers import FAST_KDF, Member, Team

N_TASKS = 30


# Every test here runs against each relay storage backend (SQLite, PostgreSQL): conftest.py ``backend``.
pytestmark = pytest.mark.usefixtures("backend")


def relay_count(team: Team, sql: str) -> int:
    return team.sql(sql)[0][0]


def top_rseq(team: Team) -> int:
    return relay_count(team, "SELECT MAX(rseq) FROM batches")


def held_coverage(team: Team, cursor: int) -> dict[bytes, int]:
    store = storage.open_store(team.data)
    try:
        return store.read(relay.snapshot_coverage, cursor)
    finally:
        store.close()


def history(team: Team, n: int = N_TASKS) -> tuple[Member, Member]:
    """A supervisor and a member; the supervisor adds ``n`` tasks, one batch each (a history to skip)."""
    dana, chidi = team.pair("dana", "chidi")
    for i in range(n):
        with dana.open() as rep:
            rep.add_task(f"task {i}")
        dana.sync(unlocked=False)
    with chidi.open() as rep:
        rep.add_task("chidi's task")
    chidi.sync()
    dana.sync()
    return dana, chidi


def forged(member: Member, cursor: int, coverage: dict[bytes, int], ops: tuple = ()) -> bytes:
    """A snapshot signed and sealed by ``member``'s own device: as valid as its author can make it."""
    with member.open() as rep:
        key = rep.current_key()
        snap = snapshot.Snapshot(rep.require_team(), rep.author.device_id, cursor, key.epoch, ops, coverage)
        return snapshot.encode(snap, rep.author, key)


def device_id(member: Member) -> bytes:
    with Device.open(member.home) as dev:
        return dev.store.meta("device_id")


def send_sync(member: Member, **args: Any) -> dict[str, Any]:
    """One raw, correctly signed sync request from ``member``'s device (what a modified client can send)."""
    with Device.open(member.home) as dev:
        s = dev.store
        body, nonce = envelope.make_request(dev.transport_key(), s.meta("device_id"), "sync",
                                            {"cursor": s.meta("pull_cursor", 0), **args}, relay.now_ms())
        raw = asyncio.run(syncing.post(s.meta("relay_url"), body, 30))
        return envelope.parse_response(raw, s.meta("relay_public"), nonce).result


def hostile_relay(team: Team, inject: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any] | None],
                  requests: list[dict[str, Any]]) -> syncing.Transport:
    """The real relay's answers, rewritten by ``inject`` and signed again with the relay's own key."""
    key = crypto.DeviceKey((team.data / "relay.key").read_bytes())

    async def transport(url: str, body: bytes, timeout: float) -> bytes:
        raw = await syncing.post(url, body, timeout)
        req = envelope.parse_request(body)
        requests.append({"action": req.action, **req.args})
        if req.action != "sync":
            return raw
        res = envelope.parse_response(raw, key.public, req.nonce).result
        new = inject(req.args, res)
        return raw if new is None else envelope.make_response(key, req.nonce, new, relay.now_ms())

    return transport


def titles(member: Member) -> set[str]:
    with member.open() as rep:
        return {t.title for t in rep.tasks()}


# -- the relay ---------------------------------------------------------------------------------


def test_relay_refuses_a_members_snapshot_and_a_later_joiner_sees_everything(team: Team) -> None:
    dana, chidi = history(team)
    top = top_rseq(team)
    # The attack of issue 10: an empty snapshot claiming to cover all history (and far beyond).
    for cursor, coverage in ((top + 1_000_000, {}), (top, held_coverage(team, top))):
        res = send_sync(chidi, snapshot=[cursor, forged(chidi, cursor, coverage)])
        assert res["snapshot_refused"]["code"] == "access.role"
        assert res["want_snapshot"] is False  # members are never asked
    assert relay_count(team, "SELECT COUNT(*) FROM snapshots") == 0
    late = team.join("bosco")
    dana.sync()  # grants the key to the newcomer
    r = late.sync()
    assert r.snapshot_reject is None
    assert titles(late) == {f"task {i}" for i in range(N_TASKS)} | {"chidi's task"}


def test_relay_does_not_serve_a_snapshot_an_older_relay_kept_unchecked(team: Team) -> None:
    dana, chidi = history(team)
    top = top_rseq(team)
    # what the relay kept before it checked: a member's snapshot
    team.sql("INSERT INTO snapshots (cursor, device, created_ms, data) VALUES (?, ?, ?, ?)",
             (top, device_id(chidi), 0, forged(chidi, top, held_coverage(team, top))))
    late = team.join("bosco")
    assert "snapshot" not in send_sync(late, cursor=0)
    dana.sync()
    late.sync()
    assert len(titles(late)) == N_TASKS + 1


def test_relay_refuses_a_supervisors_snapshot_that_does_not_cover_what_it_holds(team: Team) -> None:
    dana, chidi = history(team)
    top = top_rseq(team)
    good = held_coverage(team, top)
    assert device_id(chidi) in good and device_id(dana) in good
    short = {d: (q - 1 if d == device_id(dana) else q) for d, q in good.items()}  # one batch of dana's left out
    without_chidi = {d: q for d, q in good.items() if d != device_id(chidi)}
    cases = [
        (top, short, "integrity.coverage"),
        (top, without_chidi, "integrity.coverage"),
        (top + 50, held_coverage(team, top + 50), "integrity.coverage"),  # beyond what the relay holds
        (top - 1, good, "integrity.coverage"),  # the last batch is not at or below this cursor
    ]
    for cursor, coverage, code in cases:
        res = send_sync(dana, snapshot=[cursor, forged(dana, cursor, coverage)])
        assert res["snapshot_refused"]["code"] == code, (cursor, coverage)
    # signed by another device than the one sending it, or sent for another cursor than its header's
    res = send_sync(dana, snapshot=[top, forged(chidi, top, good)])
    assert res["snapshot_refused"]["code"] == "integrity.device"
    res = send_sync(dana, snapshot=[top - 1, forged(dana, top, good)])
    assert res["snapshot_refused"]["code"] == "integrity.coverage"
    res = send_sync(dana, snapshot=[top, b"HBWS\x01" + bytes(200)])
    assert res["snapshot_refused"]["code"] == "protocol.version"
    res = send_sync(dana, snapshot=["top", b""])
    assert res["snapshot_refused"]["code"] == "protocol.schema"
    assert relay_count(team, "SELECT COUNT(*) FROM snapshots") == 0
    # ... and the same supervisor's exact claim is kept (it changes nothing else of the sync)
    res = send_sync(dana, snapshot=[top, forged(dana, top, good)])
    assert "snapshot_refused" not in res
    assert relay_count(team, "SELECT COUNT(*) FROM snapshots") == 1


def test_a_revoked_authors_snapshot_is_no_longer_served(team: Team, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay, "SNAPSHOT_EVERY", 5)
    dana, chidi = history(team, n=12)
    dana.sync()  # answers want_snapshot
    assert relay_count(team, "SELECT COUNT(*) FROM snapshots") == 1
    late = team.join("bosco")
    assert "snapshot" in send_sync(late, cursor=0)
    assert "snapshot" not in send_sync(late, cursor=0, no_snapshot=True)  # a device replaying history
    admin.revoke(team.data, device_id(dana).hex())
    assert "snapshot" not in send_sync(late, cursor=0)


# -- the receiving device -----------------------------------------------------------------------


def test_device_refuses_a_members_snapshot_served_by_a_hostile_relay(team: Team) -> None:
    """The issue's figure, replayed: the relay host serves the member's bogus snapshot anyway."""
    dana, chidi = history(team)
    top = top_rseq(team)
    bogus = forged(chidi, top, held_coverage(team, top))
    served: list[int] = []

    def inject(args: dict[str, Any], res: dict[str, Any]) -> dict[str, Any] | None:
        if args.get("cursor") == 0 and not args.get("no_snapshot"):
            served.append(1)  # jump past all history on the member's word, as the old relay did
            return res | {"snapshot": [top, device_id(chidi), bogus], "batches": [], "cursor": top, "more": False}
        return None

    requests: list[dict[str, Any]] = []
    late = Member("bosco", team.tmp / "dev-bosco", "orchid lantern 52 ferry")
    syncing.join(late.home, team.invite("bosco"), late.passphrase, kdf=FAST_KDF,
                 transport=hostile_relay(team, inject, requests))
    assert served, "the hostile relay served its snapshot"
    with Device.open(late.home) as dev:
        assert dev.store.meta("pull_cursor") >= top  # it replayed the history instead of jumping
        assert dev.store.meta("snapshot_in") is None
        assert any("Refused a summary of the team's history from chidi's device" in n for n in dev.status()["notices"])
    syncs = [r for r in requests if r["action"] == "sync"]
    assert syncs[0]["cursor"] == 0 and syncs[1] == syncs[1] | {"cursor": 0, "no_snapshot": True}
    dana.sync()  # grants the newcomer the team key
    r = syncing.sync(late.home, late.passphrase, transport=hostile_relay(team, inject, requests))
    assert len(served) == 1  # asked for no snapshot while replaying, then past it: never served again
    assert titles(late) == {f"task {i}" for i in range(N_TASKS)} | {"chidi's task"}
    assert r.ok and r.snapshot_reject is None


def test_device_refuses_a_snapshot_whose_author_the_relay_host_promoted_in_the_roster(team: Team) -> None:
    """The relay host rewrites its roster to call the member a supervisor: the device's own trust decides."""
    dana, chidi = history(team, n=8)
    top = top_rseq(team)
    bogus = forged(chidi, top, held_coverage(team, top))
    chidi_id = device_id(chidi)

    def inject(args: dict[str, Any], res: dict[str, Any]) -> dict[str, Any] | None:
        roster = dict(res.get("roster") or {})
        if chidi_id in roster:
            roster[chidi_id] = [*roster[chidi_id][:4], "supervisor"]
        new = res | ({"roster": roster} if "roster" in res else {})
        if args.get("cursor") == 0 and not args.get("no_snapshot"):
            return new | {"snapshot": [top, chidi_id, bogus], "batches": [], "cursor": top, "more": False}
        return new

    late = Member("bosco", team.tmp / "dev-bosco", "orchid lantern 52 ferry")
    syncing.join(late.home, team.invite("bosco"), late.passphrase, kdf=FAST_KDF,
                 transport=hostile_relay(team, inject, []))
    with Device.open(late.home) as dev:
        assert dev.store.meta("roster_keys")[chidi_id.hex()][4] == "supervisor"  # the lie was recorded...
        assert dev.store.meta("pull_cursor") >= top  # ...but the device replayed the history instead of jumping
        refused = dev.store.meta("snapshot_refused")
        assert refused and refused["code"] in ("access.role", "integrity.device"), refused
    dana.sync()
    syncing.sync(late.home, late.passphrase, transport=hostile_relay(team, inject, []))
    assert len(titles(late)) == 9


def test_device_refuses_without_the_passphrase_and_tells_the_report(team: Team) -> None:
    dana, chidi = history(team, n=8)
    top = top_rseq(team)
    late = team.join("bosco")
    dana.sync()
    with Device.open(late.home) as dev:  # a fresh store again: back to the start of the history
        with dev.store.transaction():
            dev.store.set_meta("pull_cursor", 0)
            dev.store.set_meta("seen_seqs", None)
    bogus = forged(chidi, top, held_coverage(team, top))

    def inject(args: dict[str, Any], res: dict[str, Any]) -> dict[str, Any] | None:
        if args.get("cursor") == 0 and not args.get("no_snapshot"):
            return res | {"snapshot": [top, device_id(chidi), bogus], "batches": [], "cursor": top, "more": False}
        return None

    r = syncing.sync(late.home, None, transport=hostile_relay(team, inject, []))  # the scheduler: no passphrase
    assert r.snapshot_reject == {"code": "access.role", "cursor": top,
                                 "reason": "chidi is not a supervisor, and only a supervisor's device may provide one"}
    assert any("fetches the full history instead; nothing will be missing" in n for n in r.notes)
    assert r.to_dict()["snapshot_reject"]["code"] == "access.role"  # what `sync --json` prints
    # what the person sees next, with no passphrase: the status says it in plain words
    shown = CliRunner().invoke(client_cli, ["status"], env={"HBW_SYNC_HOME": str(late.home), "HBW_PASSPHRASE": None})
    assert shown.exit_code == 0, shown.output
    assert ("Notice: Refused a summary of the team's history from chidi's device: chidi is not a supervisor"
            in shown.output)
    assert "nothing will be missing" in shown.output
    late.sync()
    assert len(titles(late)) == 9


def test_device_refuses_a_snapshot_served_for_another_cursor_or_covering_less_than_it_holds(team: Team) -> None:
    dana, chidi = history(team, n=6)
    top = top_rseq(team)
    genuine = forged(dana, top, held_coverage(team, top))
    late = team.join("bosco")
    dana.sync()
    late.sync()
    cases = {
        "served for another cursor": ([top + 7, device_id(dana), genuine], "integrity.coverage"),
        "unknown author": ([top, b"\x01" * 8, genuine], "integrity.device"),
        "author mislabelled": ([top, device_id(dana), forged(chidi, top, held_coverage(team, top))],
                               "integrity.device"),
        "fewer of chidi's batches than held": (
            [top, device_id(dana), forged(dana, top, {**held_coverage(team, top), device_id(chidi): 0})],
            "integrity.coverage"),
    }
    for name, (entry, code) in cases.items():
        with Device.open(late.home) as dev:
            with dev.store.transaction():
                got = client_snapshots.check_served(dev.store, entry)
        assert getattr(got, "code", None) == code, name
    with Device.open(late.home) as dev:
        claim, who = client_snapshots.check_served(dev.store, [top, device_id(dana), genuine])
        assert (claim.cursor, who) == (top, "dana")


def test_a_supervisors_snapshot_that_fails_to_decode_sends_the_cursor_back(team: Team) -> None:
    """Signed, covering what the relay holds, but holding ops of a device it does not cover: refused once opened."""
    dana, chidi = history(team)
    top = top_rseq(team)
    stray = make_op(Kind.TASK, b"\x07" * 8, hlc.pack(relay.now_ms(), 0), None, title="planted")
    bad = forged(dana, top, held_coverage(team, top), ops=(snapshot.SnapOp(b"\x09" * 8, relay.now_ms(), stray),))
    assert "snapshot_refused" not in send_sync(dana, snapshot=[top, bad])  # the relay cannot open it: kept
    # Joined with office IT's invite: served the snapshot, it waits, sealed, for a supervisor's approval.
    late = Member("bosco", team.tmp / "dev-bosco", "orchid lantern 52 ferry")
    syncing.join(late.home, team.it_invite("bosco"), late.passphrase, kdf=FAST_KDF)
    with Device.open(late.home) as dev:
        assert dev.store.meta("snapshot_in") is not None and dev.store.meta("pull_cursor") >= top, dev.store.meta("snapshot_refused")
        code = dev.status()["key_flow"][0]["code"]
    team_cmds.approve(dana.home, dana.passphrase, code)  # Dana reads the code on Bosco's screen
    r = late.sync()  # opens the snapshot, refuses it, goes back and replays the history in the same sync
    assert r.snapshot_reject is not None and r.snapshot_reject["code"] == "integrity.coverage"
    assert titles(late) == {f"task {i}" for i in range(N_TASKS)} | {"chidi's task"}  # replayed in the same sync
    assert "planted" not in titles(late)


def test_a_genuine_supervisor_snapshot_still_saves_the_history(team: Team, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay, "SNAPSHOT_EVERY", 10)
    dana, chidi = history(team)
    dana.sync()
    assert relay_count(team, "SELECT COUNT(*) FROM snapshots") == 1
    cursor, data = team.sql("SELECT cursor, data FROM snapshots")[0]
    claim = snapshot.verify(data, _author_pub(dana), _team(dana))
    assert claim.coverage == held_coverage(team, cursor)  # the count the device signed is the relay's
    served: list[dict[str, Any]] = []

    def watch(args: dict[str, Any], res: dict[str, Any]) -> None:
        served.append(res)

    late = Member("bosco", team.tmp / "dev-bosco", "orchid lantern 52 ferry")
    syncing.join(late.home, team.invite("bosco"), late.passphrase, kdf=FAST_KDF,
                 transport=hostile_relay(team, watch, []))
    assert any("snapshot" in res for res in served)
    assert sum(len(res["batches"]) for res in served) < N_TASKS // 2  # the snapshot replaced most of the history
    dana.sync()
    r = late.sync()
    assert r.snapshot_reject is None
    assert titles(late) == {f"task {i}" for i in range(N_TASKS)} | {"chidi's task"}
    with Device.open(late.home) as dev:  # and the newcomer's count starts from the snapshot's coverage
        seen = client_snapshots.seen(dev.store)
        assert seen is not None and all(seen.get(d, -1) >= q for d, q in claim.coverage.items())


def _author_pub(member: Member) -> bytes:
    with member.open() as rep:
        return rep.author.public


def _team(member: Member) -> bytes:
    with Device.open(member.home) as dev:
        return dev.store.meta("team_id")


# -- the format, byte by byte (STYLE §7) ------------------------------------------------------------


def _sample() -> tuple[bytes, crypto.DeviceKey, crypto.TeamKey, bytes]:
    author, key, team = crypto.DeviceKey(bytes(range(32))), crypto.TeamKey(1, bytes(range(32, 64))), b"T" * 8
    op = make_op(Kind.TASK, b"\x05" * 8, hlc.pack(1_760_000_000_000, 0), None, title="Scan the paper files")
    coverage = {author.device_id: 3, b"\x01" * 8: 12}
    snap = snapshot.Snapshot(team, author.device_id, 40, key.epoch, (snapshot.SnapOp(author.device_id, 5, op),),
                             coverage)
    return snapshot.encode(snap, author, key), author, key, team


def test_every_prefix_trailing_byte_and_flipped_byte_is_refused_with_a_known_code() -> None:
    data, author, key, team = _sample()
    got = snapshot.decode(data, author.public, {1: key}, team)
    assert got.coverage == {author.device_id: 3, b"\x01" * 8: 12} and got.cursor == 40
    for n in range(len(data)):
        with pytest.raises(HbwError) as info:
            snapshot.verify(data[:n], author.public, team)
        assert info.value.code in {"protocol.magic", "protocol.schema", "protocol.version"}, n
    with pytest.raises(HbwError) as info:
        snapshot.verify(data + b"\x00", author.public, team)
    assert info.value.code == "protocol.schema"
    known = {"protocol.magic", "protocol.version", "protocol.schema", "protocol.limit", "protocol.order",
             "integrity.team", "integrity.device", "integrity.signature"}
    for i in range(len(data)):
        for bit in (0x01, 0x80):
            bad = data[:i] + bytes([data[i] ^ bit]) + data[i + 1:]
            with pytest.raises(HbwError) as info:
                snapshot.verify(bad, author.public, team)
            assert info.value.code in known, (i, bit, info.value.code)


def test_coverage_over_the_cap_is_refused_before_it_is_read() -> None:
    data, author, _, team = _sample()
    huge = data[:34] + (snapshot.MAX_COVERAGE + 1).to_bytes(4, "big") + data[38:]
    with pytest.raises(HbwError) as info:
        snapshot.verify(huge, author.public, team)
    assert info.value.code == "protocol.limit"
    with pytest.raises(HbwError) as info:  # a count of 2**32 - 1 costs nothing either
        snapshot.verify(data[:34] + b"\xff" * 4 + data[38:], author.public, team)
    assert info.value.code == "protocol.limit"


def test_a_relay_that_keeps_serving_a_refused_snapshot_does_not_loop_and_is_told(team: Team) -> None:
    dana, chidi = history(team, n=5)
    top = top_rseq(team)
    bogus = forged(chidi, top, held_coverage(team, top))
    late = team.join("bosco")
    dana.sync()
    with Device.open(late.home) as dev:  # back to the start of the history
        with dev.store.transaction():
            dev.store.set_meta("pull_cursor", 0)
            dev.store.set_meta("seen_seqs", None)
    requests: list[dict[str, Any]] = []

    def always(args: dict[str, Any], res: dict[str, Any]) -> dict[str, Any]:  # ignores no_snapshot
        return res | {"snapshot": [top, device_id(chidi), bogus], "batches": [], "cursor": top, "more": False}

    r = syncing.sync(late.home, late.passphrase, transport=hostile_relay(team, always, requests))
    assert [q.get("no_snapshot", False) for q in requests if q["action"] == "sync"] == [False, True]
    assert not r.ok and any("tell office IT" in n for n in r.notes)
    with Device.open(late.home) as dev:
        st = dev.status()
        assert st["last_sync"]["ok"] is False and "asked it not to" in st["last_sync"]["detail"]
        assert dev.store.meta("pull_cursor") == 0  # never jumped on the bogus snapshot's word
    late.sync()  # the real relay again: the whole history
    assert len(titles(late)) == 6


def test_a_supervisor_whose_snapshot_the_relay_refused_waits_a_day_before_building_another(
        team: Team, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay, "SNAPSHOT_EVERY", 5)
    dana, chidi = history(team, n=3)
    with Device.open(dana.home) as dev:  # a count that does not match the relay's: one of chidi's batches missed
        with dev.store.transaction():
            dev.store.set_meta("seen_seqs", {**client_snapshots.seen(dev.store), device_id(chidi): 0})
    for i in range(6):
        with dana.open() as rep:
            rep.add_task(f"more {i}")
        dana.sync(unlocked=False)
    requests: list[dict[str, Any]] = []
    r = syncing.sync(dana.home, dana.passphrase, transport=hostile_relay(team, lambda a, res: None, requests))
    assert sum("snapshot" in q for q in requests) == 1
    assert any("did not keep this device's summary" in n and "nothing is lost" in n for n in r.notes)
    assert relay_count(team, "SELECT COUNT(*) FROM snapshots") == 0
    requests.clear()
    with dana.open() as rep:
        rep.add_task("one more")
    syncing.sync(dana.home, dana.passphrase, transport=hostile_relay(team, lambda a, res: None, requests))
    assert not any("snapshot" in q for q in requests)  # asked again, but not rebuilt and resent at every sync
    with Device.open(dana.home) as dev:  # a day later it tries again
        with dev.store.transaction():
            dev.store.set_meta("snapshot_mine_refused", {"at_ms": 0, "code": "integrity.coverage"})
    requests.clear()
    syncing.sync(dana.home, dana.passphrase, transport=hostile_relay(team, lambda a, res: None, requests))
    assert sum("snapshot" in q for q in requests) == 1
    assert relay_count(team, "SELECT COUNT(*) FROM snapshots") == 0  # still the wrong count: refused again
