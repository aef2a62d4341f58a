"""The relay and online sync, end to end on loopback: real relay thread, real stores, real HTTP."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from hbw_sync import batch as wire
from hbw_sync import crypto, envelope
from hbw_sync.client import Device
from hbw_sync.client import sync as syncing
from hbw_sync.client import team as teams
from hbw_sync.client.cli import cli as client_cli
from hbw_sync.errors import AccessError, RevokedError, UsageError, WrongKeyError
from hbw_sync.server import admin, relay
from hbw_sync.server.app import RelayConfig
from hbw_sync.server.cli import cli as relay_cli
from hbw_sync.server.runner import RelayThread

from relay_helpers import STRONG, Team


# Every test here runs against each relay storage backend (SQLite, PostgreSQL): conftest.py ``backend``.
pytestmark = pytest.mark.usefixtures("backend")


def relay_rows(team: Team, sql: str, params: tuple = ()) -> list:
    return team.sql(sql, params)


def titles(member) -> dict[str, dict]:
    with member.open() as rep:
        return {t.title: t.to_dict() for t in rep.tasks()}



def test_three_devices_converge(team: Team) -> None:
    dana = team.join("dana", "supervisor")
    amina = team.join("amina")
    chidi = team.join("chidi")
    with dana.open() as rep:
        ids = rep.add_tasks([{"title": f"task {i}", "assignee": "amina"} for i in range(10)])
    dana.sync()
    amina.sync()
    chidi.sync()
    # Offline edits on three devices, then everyone syncs twice (in a different order).
    with amina.open() as rep:
        rep.note(ids[0].hex(), "amina's note")
        rep.edit_task(ids[1].hex(), description="amina's words")
    with chidi.open() as rep:
        rep.note(ids[0].hex(), "chidi's note")
        rep.edit_task(ids[1].hex(), description="chidi's words", priority=3)
        rep.add_task("chidi's own task")
    with dana.open() as rep:
        rep.assign(ids[2].hex(), "chidi")
    for m in (chidi, amina, dana, dana, amina, chidi):
        m.sync()
    a, c, d = titles(amina), titles(chidi), titles(dana)
    strip = lambda v: {k: {**t, "notes": sorted(n["text"] for n in t["notes"])} for k, t in v.items()}  # noqa: E731
    assert strip(a) == strip(c) == strip(d)
    assert len(a) == 11 and a["task 0"]["notes"] and len(a["task 0"]["notes"]) == 2
    assert a["task 1"]["priority"] == "urgent" and a["task 2"]["assignee"] == "chidi"
    # The relay stored every batch once and never saw a title.
    raw = b"".join(r[0] for r in relay_rows(team, "SELECT data FROM batches"))
    assert b"amina's note" not in raw and b"task 0" not in raw
    dup = relay_rows(team, "SELECT device, seq, COUNT(*) FROM batches GROUP BY device, seq HAVING COUNT(*) > 1")
    assert dup == []


def test_unattended_sync_needs_no_passphrase_and_applies_later(team: Team) -> None:
    dana, amina = team.join("dana", "supervisor"), team.join("amina")
    dana.sync()  # grants amina the team key
    with dana.open() as rep:
        rep.add_task("for amina", assignee="amina")
    dana.sync(unlocked=False)
    r = amina.sync(unlocked=False)
    assert r.received_batches >= 1 and r.waiting_to_apply >= 1
    with Device.open(amina.home) as dev:
        assert dev.status()["inbox_batches"] >= 1
    assert "for amina" in titles(amina)  # unlocking applied the inbox
    with Device.open(amina.home) as dev:
        assert dev.status()["inbox_batches"] == 0


def test_revoked_device_is_refused_and_key_rotates(team: Team) -> None:
    dana, amina, lost = team.join("dana", "supervisor"), team.join("amina"), team.join("chidi")
    dana.sync()
    for m in (amina, lost):
        m.sync()
    with Device.open(lost.home) as dev:
        lost_id = dev.identity.device_id.hex()
    admin.revoke(team.data, lost_id[:6])
    with pytest.raises(RevokedError):
        lost.sync()
    # The supervisor's next sync rotates the key and grants it to the remaining devices only.
    r = dana.sync()
    assert any("rotated" in n for n in r.notes)
    with dana.open() as rep:
        assert rep.current_key().epoch == 2
        rep.add_task("after the theft")
    dana.sync()
    amina.sync()
    assert "after the theft" in titles(amina)
    with amina.open() as rep:
        assert set(rep.team_keys()) == {1, 2}
    grants = relay_rows(team, "SELECT device FROM grants WHERE epoch = 2")
    assert lost_id.lower() not in {g[0].hex() for g in grants}
    batch_epochs = relay_rows(team, "SELECT MAX(epoch) FROM batches")
    assert batch_epochs[0][0] == 2
    # The CLI says so with exit code 77.
    res = CliRunner().invoke(client_cli, ["sync"], env={"HBW_SYNC_HOME": str(lost.home), "HBW_PASSPHRASE": None})
    assert res.exit_code == 77 and "revoked" in res.output


def _raw_sync(team: Team, member, args: dict, *, time_ms: int | None = None, nonce: bytes | None = None) -> bytes:
    with Device.open(member.home) as dev:
        body, _ = envelope.make_request(dev.transport_key(), dev.identity.device_id, "sync", args,
                                        time_ms if time_ms is not None else relay.now_ms(), nonce=nonce)
    return body


def test_replayed_and_stale_requests_are_refused(team: Team) -> None:
    amina = team.join("amina", "supervisor")
    body = _raw_sync(team, amina, {"cursor": 0, "batches": []})
    asyncio.run(syncing.post(team.url, body, 10))
    with pytest.raises(AccessError) as e:
        asyncio.run(syncing.post(team.url, body, 10))
    assert e.value.code == "access.replay"
    for skew in (-3_600_000, 3_600_000):
        stale = _raw_sync(team, amina, {"cursor": 0}, time_ms=relay.now_ms() + skew)
        with pytest.raises(AccessError) as e:
            asyncio.run(syncing.post(team.url, stale, 10))
        assert e.value.code == "access.clock" and "clock" in (e.value.hint or "")


def test_other_teams_device_is_refused(tmp_path: Path, team: Team) -> None:
    team.join("amina", "supervisor")
    with Team(tmp_path / "other", "Other Office") as other:
        stranger = other.join("eve", "supervisor")
        with stranger.open() as rep:
            rep.add_task("foreign")
        body = _raw_sync(team, stranger, {"cursor": 0})
        with pytest.raises(AccessError) as e:
            asyncio.run(syncing.post(team.url, body, 10))
        assert e.value.code == "access.unknown_device"
    # An invite of another relay cannot be replayed against this one either.
    with Team(tmp_path / "third", "Third") as third:
        code = third.invite("mallory")
    import hbw_sync.enroll as enroll_mod

    inv = enroll_mod.Invite.decode(code)
    forged = enroll_mod.Invite(team.url, inv.relay_public, inv.team, inv.token, "mallory", "member").encode()
    with pytest.raises(Exception) as e:
        syncing.join(tmp_path / "mallory", forged, STRONG)
    assert "signature" in str(e.value) or "not valid" in str(e.value)


def test_tampered_or_foreign_batch_is_refused_and_nothing_stored(team: Team) -> None:
    amina = team.join("amina", "supervisor")
    with amina.open() as rep:
        rep.add_task("honest")
        data = rep.store.execute("SELECT data FROM outbox").fetchone()[0]
        key = rep.current_key()
        author = rep.author
    tampered = bytearray(data)
    tampered[50] ^= 1
    other_team = wire.encode_batch(
        wire.Batch(b"X" * 8, author.device_id, 99, key.epoch, wire.parse_batch(data).open(key).ops), author, key)
    body = _raw_sync(team, amina, {"cursor": 0, "batches": [bytes(tampered), other_team]})
    res = envelope.parse_response(asyncio.run(syncing.post(team.url, body, 10)), admin_relay_key(team),
                                  envelope.parse_request(body).nonce).result
    assert res["acks"] == [] and len(res["rejects"]) == 2
    assert {r[1]["code"] for r in res["rejects"]} == {"integrity.signature", "integrity.team"}
    assert relay_rows(team, "SELECT COUNT(*) FROM batches") == [(0,)]


def test_a_batch_sent_again_is_acked_again_and_a_reused_seq_is_refused(team: Team) -> None:
    """The same batch twice (its answer was lost): the same ack, stored once. Another batch under the same
    seq: refused with ``protocol.seq_reuse``, nothing stored, while a good batch beside it is kept."""
    amina = team.join("amina", "supervisor")
    with amina.open() as rep:
        rep.add_tasks([{"title": "first"}, {"title": "second"}])
        first = rep.store.execute("SELECT data FROM outbox").fetchone()[0]
        key, author = rep.current_key(), rep.author
    frame = wire.parse_batch(first)
    ops = frame.open(key).ops
    assert len(ops) >= 2
    other = wire.encode_batch(wire.Batch(frame.team, author.device_id, frame.seq, key.epoch, ops[:1]), author, key)
    second = wire.encode_batch(wire.Batch(frame.team, author.device_id, frame.seq + 1, key.epoch, ops[1:]), author, key)
    relay_pub = admin_relay_key(team)

    def send(batches: list[bytes]) -> dict:
        body = _raw_sync(team, amina, {"cursor": 0, "batches": batches})
        return envelope.parse_response(asyncio.run(syncing.post(team.url, body, 10)), relay_pub,
                                       envelope.parse_request(body).nonce).result

    one = send([first])
    assert len(one["acks"]) == 1 and one["rejects"] == []
    again = send([first])
    assert again["acks"] == one["acks"] and again["rejects"] == []
    mixed = send([other, second])
    assert [r[1]["code"] for r in mixed["rejects"]] == ["protocol.seq_reuse"]
    assert mixed["rejects"][0][0] == frame.seq and len(mixed["acks"]) == 1
    rows = relay_rows(team, "SELECT rseq, seq, data FROM batches ORDER BY rseq")
    assert [(r[0], r[1], bytes(r[2])) for r in rows] == [(1, frame.seq, first), (2, frame.seq + 1, second)]


@pytest.mark.sqlite_only("the checker processes are for a SQLite relay; the PostgreSQL path is the same code")
def test_checker_processes_check_requests_beside_the_relay(tmp_path: Path) -> None:
    """With ``check_processes`` the signatures and batches are checked in another process: syncs work,
    a tampered batch and a replayed request are refused there or after, and nothing wrong is stored."""
    with Team(tmp_path, check_processes=1) as team:
        dana, amina = team.join("dana", "supervisor"), team.join("amina")
        with dana.open() as rep:
            rep.add_task("checked elsewhere")
        assert dana.sync().ok and amina.sync().ok
        assert "checked elsewhere" in titles(amina)
        with amina.open() as rep:
            rep.add_task("honest")
            data = rep.store.execute("SELECT data FROM outbox").fetchone()[0]
        tampered = bytearray(data)
        tampered[50] ^= 1
        body = _raw_sync(team, amina, {"cursor": 0, "batches": [bytes(tampered)]})
        res = envelope.parse_response(asyncio.run(syncing.post(team.url, body, 10)), admin_relay_key(team),
                                      envelope.parse_request(body).nonce).result
        assert [r[1]["code"] for r in res["rejects"]] == ["integrity.signature"] and res["acks"] == []
        with pytest.raises(AccessError) as e:  # the same request again: its nonce is spent
            asyncio.run(syncing.post(team.url, body, 10))
        assert e.value.code == "access.replay"
        assert relay_rows(team, "SELECT COUNT(*) FROM batches") == [(1,)]


def admin_relay_key(team: Team) -> bytes:
    return crypto.DeviceKey((team.data / "relay.key").read_bytes()).public


def test_forged_response_is_refused(tmp_path: Path, team: Team) -> None:
    """A device never drops its outbox on an ack that its pinned relay did not sign."""
    amina = team.join("amina", "supervisor")
    with amina.open() as rep:
        rep.add_task("precious")
    impostor_key = crypto.DeviceKey.generate()

    async def impostor(url: str, body: bytes, timeout: float) -> bytes:
        req = envelope.parse_request(body)
        return envelope.make_response(impostor_key, req.nonce, {"acks": [[1, 1, relay.now_ms()]], "cursor": 0}, 0)

    with pytest.raises(Exception) as e:
        syncing.sync(amina.home, amina.passphrase, transport=impostor)
    assert "signature" in str(e.value)
    with Device.open(amina.home) as dev:
        assert dev.status()["outbox"]["changes"] == 1


def test_late_joiner_gets_a_snapshot(team: Team, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(relay, "SNAPSHOT_EVERY", 5)
    dana = team.join("dana", "supervisor")
    for i in range(12):
        with dana.open() as rep:
            t = rep.add_task(f"task {i}")
            rep.note(t.id, f"note {i}")
        dana.sync(unlocked=False)
    dana.sync()  # unlocked: answers the relay's request for a snapshot
    assert relay_rows(team, "SELECT COUNT(*) FROM snapshots")[0][0] >= 1
    late = team.join("bosco")
    dana.sync()  # grants the key to the newcomer
    r = late.sync()
    assert r.received_batches < 12  # the snapshot replaced most of the history
    got = titles(late)
    assert set(got) == {f"task {i}" for i in range(12)}
    assert all(len(t["notes"]) == 1 for t in got.values())
    with late.open() as rep:
        assert rep.check() == []


def test_wrong_team_key_is_told_at_once(team: Team) -> None:
    dana = team.join("dana", "supervisor")
    amina = team.join("amina")
    dana.sync()
    amina.sync()
    with amina.open() as rep:  # replace amina's key with a wrong one for the same epoch
        rep.add_team_key(crypto.TeamKey.generate(epoch=1))
    with pytest.raises(WrongKeyError) as e:
        amina.sync()
    assert "not the team's key" in str(e.value)


def test_invite_is_single_use_and_checked(team: Team, tmp_path: Path) -> None:
    code = team.invite("amina")
    syncing.join(tmp_path / "a1", code, STRONG)
    with pytest.raises(AccessError, match="already used"):
        syncing.join(tmp_path / "a2", code, STRONG)
    with pytest.raises(UsageError):
        syncing.join(tmp_path / "a3", "hbw1-garbage!!", STRONG)


def test_one_invite_raced_by_several_devices_enrolls_exactly_one(team: Team, tmp_path: Path) -> None:
    """Four devices join with one invite at the same moment (the PostgreSQL relay runs their transactions
    on four connections at once): exactly one is enrolled, the others are told it was used, and the
    relay holds one device and one used invite."""
    import threading

    from relay_helpers import FAST_KDF

    code = team.invite("amina")
    start, outcomes = threading.Barrier(4), []

    def join(i: int) -> None:
        start.wait()
        try:
            syncing.join(tmp_path / f"a{i}", code, STRONG, kdf=FAST_KDF)
            outcomes.append("enrolled")
        except AccessError as e:
            outcomes.append(e.code)

    threads = [threading.Thread(target=join, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["access.invite"] * 3 + ["enrolled"]
    assert relay_rows(team, "SELECT COUNT(*) FROM devices")[0][0] == 1
    used = relay_rows(team, "SELECT used_ms, device FROM invites")
    assert len(used) == 1 and used[0][0] is not None
    assert bytes(used[0][1]) == bytes(relay_rows(team, "SELECT device FROM devices")[0][0])


def test_health_metrics_and_request_log(team: Team, caplog: pytest.LogCaptureFixture) -> None:
    amina = team.join("amina", "supervisor")
    with amina.open() as rep:
        rep.add_task("x")
    amina.sync()
    health = json.loads(urllib.request.urlopen(team.url + "/healthz", timeout=5).read())
    assert health["ok"] and health["team"] == "District Finance" and health["relay_key"] == admin_relay_key(team).hex()
    text = urllib.request.urlopen(team.url + "/metrics", timeout=5).read().decode()
    assert 'hbw_requests_total{action="sync",status="200"}' in text
    assert "hbw_batches_in_total 1" in text and "hbw_sync_seconds_count" in text and "hbw_devices_seen 1" in text


@pytest.mark.sqlite_only("copies relay.db; a PostgreSQL relay refuses with words (test_equipment)")
def test_backup_while_running_and_restore(team: Team, tmp_path: Path) -> None:
    dana = team.join("dana", "supervisor")
    with dana.open() as rep:
        rep.add_tasks([{"title": f"t{i}"} for i in range(5)])
    dana.sync()
    admin.backup(team.data, tmp_path / "backup.db")
    admin.restore(tmp_path / "backup.db", tmp_path / "restored", team.data / "relay.key")
    with RelayThread(RelayConfig(data=tmp_path / "restored", port=0, access_log=False)) as url:
        with Device.open(dana.home) as dev:
            with dev.store.transaction():
                dev.store.set_meta("relay_url", url)
        # Dana's team invite works on the restored relay: bosco gets the key when he joins.
        inv = teams.make_invite(dana.home, dana.passphrase, "bosco").encode()
        syncing.join(tmp_path / "bosco", inv, STRONG)
        dana.sync()
        syncing.sync(tmp_path / "bosco", STRONG)
        with Device.open(tmp_path / "bosco") as dev:
            assert len(dev.unlock(STRONG).tasks()) == 5


def test_relay_cli_admin_commands(tmp_path: Path) -> None:
    data = str(tmp_path / "r")
    run = lambda *a: CliRunner().invoke(relay_cli, list(a), catch_exceptions=False)  # noqa: E731
    assert run("init", "--data", data, "--team", "Finance", "--url", "http://127.0.0.1:1").exit_code == 0
    res = run("invite", "--data", data, "amina", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["invite"].startswith("hbw1-")
    with RelayThread(RelayConfig(data=Path(data), port=0, access_log=False)) as url:
        code = json.loads(run("invite", "--data", data, "dana", "--role", "supervisor", "--url", url, "--json").stdout)
        res = CliRunner().invoke(client_cli, ["join", code["invite"], "--json"],
                                 env={"HBW_SYNC_HOME": str(tmp_path / "dana"), "HBW_PASSPHRASE": STRONG})
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["first_device"] is True
    devs = json.loads(run("devices", "--data", data, "--json").stdout)
    assert [d["member"] for d in devs] == ["dana"]
    assert run("devices", "revoke", "--data", data, devs[0]["device"][:6], "--yes").exit_code == 0
    assert json.loads(run("devices", "--data", data, "--json").stdout)[0]["revoked"].endswith("Z")
    members = json.loads(run("members", "--data", data, "--json").stdout)
    assert members[0]["member"] == "dana" and members[0]["role"] == "supervisor" and members[0]["active_devices"] == 0
    actions = [r["action"] for r in json.loads(run("audit", "--data", data, "--json").stdout)]
    assert {"init", "invite", "enroll", "revoke"} <= set(actions)
    assert run("devices", "revoke", "--data", data, "ffff").exit_code == 2
    assert run("init", "--data", data, "--team", "again").exit_code == 78
    assert run("devices", "--data", str(tmp_path / "nope")).exit_code == 78


def test_changes_made_before_the_key_arrives_are_sealed_and_sent_later(team: Team) -> None:
    """Bosco joins at the office desk; the supervisor's laptop is not online yet. He works anyway."""
    bosco = team.join("bosco")
    with bosco.open() as rep:
        rep.set_profile(laptop=False, office_days=0b1001)
        rep.add_task("Stamp permits", assignee="bosco")
    with Device.open(bosco.home) as dev:
        st = dev.status()
    assert st["waiting_for_team_key"] == 2 and st["outbox"]["changes"] == 0
    assert bosco.sync().sent_batches == 0  # nothing can be sealed yet; nothing lost either
    dana = team.join("dana", "supervisor")
    dana.sync()  # creates the key; bosco's device was admitted by IT alone: it gets none without approval
    with Device.open(bosco.home) as dev:
        (wait,) = dev.status()["key_flow"]
    assert wait["waits_for"] == "approval" and bosco.sync().sent_batches == 0
    teams.approve(dana.home, dana.passphrase, wait["code"])  # Dana reads the code on Bosco's screen
    r = bosco.sync()  # receives the welcome, seals, and sends in the same run
    assert r.sent_batches == 1
    with Device.open(bosco.home) as dev:
        assert dev.status()["waiting_for_team_key"] == 0
    dana.sync()
    assert "Stamp permits" in titles(dana)
    with dana.open() as rep:
        assert rep.profile("bosco")["laptop"] is False and rep.profile("bosco")["office_days"] == ["mon", "thu"]


def test_roster_changes_travel_as_deltas(team: Team) -> None:
    """After a revocation, other devices receive that one entry, not the whole roster again."""
    dana, amina, chidi = team.join("dana", "supervisor"), team.join("amina"), team.join("chidi")
    for m in (dana, amina, chidi, amina):
        m.sync()
    seen: list[dict] = []

    async def watching(url: str, body: bytes, timeout: float) -> bytes:
        raw = await syncing.post(url, body, timeout)
        seen.append(envelope.parse_response(raw, admin_relay_key(team), envelope.parse_request(body).nonce).result)
        return raw

    syncing.sync(amina.home, amina.passphrase, transport=watching)
    assert "roster" not in seen[-1]  # nothing changed: nothing sent
    with Device.open(chidi.home) as dev:
        chidi_id = dev.identity.device_id
    admin.revoke(team.data, chidi_id.hex())
    before = len(seen)
    syncing.sync(amina.home, amina.passphrase, transport=watching)
    changed = [r for r in seen[before:] if "roster" in r]
    assert len(changed) == 1
    assert changed[0]["roster_full"] is False and list(changed[0]["roster"]) == [chidi_id]
    with Device.open(amina.home) as dev:
        kept = dev.store.meta("roster_keys")
    assert len(kept) == 3 and kept[chidi_id.hex()][3] is not None  # all three known, chidi's revoked


def test_relay_refuses_data_of_another_schema(tmp_path: Path) -> None:
    admin.init(tmp_path / "r", "Team")
    conn = sqlite3.connect(tmp_path / "r" / "relay.db")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (b"99",))
    conn.commit()
    conn.close()
    res = CliRunner().invoke(relay_cli, ["devices", "--data", str(tmp_path / "r")])
    assert res.exit_code == 78 and "schema 99" in res.output
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "relay.db").write_bytes(b"not a database at all" * 100)
    res = CliRunner().invoke(relay_cli, ["members", "--data", str(tmp_path / "junk")])
    assert res.exit_code == 78 and "not a relay database" in res.output
