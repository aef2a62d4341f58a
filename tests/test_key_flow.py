"""The key flow: a person admits each device to the team key; the relay never can; nothing waits silently.

Real relay on loopback, real stores, the real CLI. The attacker test plays whoever controls the
relay's host: it makes invites, joins devices of its own, writes rows into the relay's database
(approval records, grants of a key of its own, a swapped X25519 key), and must end with no team
key and no content.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from hbw_sync import approval, batch as wire, codec, crypto, enroll, envelope
from hbw_sync.client import Device
from hbw_sync.client import sync as syncing
from hbw_sync.client import team as teams
from hbw_sync.client.cli import cli as client_cli
from hbw_sync.errors import AccessError, HbwError, IntegrityError, ProtocolError, RevokedError, UsageError
from hbw_sync.server import admin
from relay_helpers import FAST_KDF, Member, Team

PASS = "orchid lantern 52 ferry"


def relay_sql(team: Team, sql: str, params: tuple = ()) -> list:
    """The attacker on the relay's host writes its database directly."""
    conn = sqlite3.connect(team.data / "relay.db", timeout=30)
    try:
        rows = conn.execute(sql, params).fetchall()
        conn.commit()
        return rows
    finally:
        conn.close()


def it_join(team: Team, name: str, role: str = "member") -> Member:
    m = Member(name, team.tmp / f"it-{name}", PASS, role)
    syncing.join(m.home, team.it_invite(name, role), m.passphrase, kdf=FAST_KDF)
    return m


def key_flow(m: Member) -> list[dict]:
    with Device.open(m.home) as dev:
        return dev.status()["key_flow"]


def titles(m: Member) -> set[str]:
    with m.open() as rep:
        return {t.title for t in rep.tasks()}


# -- the core formats -------------------------------------------------------------------------------


def test_codes_proofs_and_welcomes() -> None:
    code = approval.new_code()
    assert len(code) == 20 and approval.parse_code(approval.format_code(code)) == code
    for bad in ("1234", "1" * 21, "12345 67890 12345 6789x", "١" * 20):
        with pytest.raises(UsageError):
            approval.parse_code(bad)
    a, t, x = (crypto.DeviceKey.generate().public for _ in range(3))
    proof = approval.make_proof(code.encode(), a, t, x)
    assert approval.check_proof(code.encode(), proof, a, t, x)
    other = approval.new_code().encode()
    assert not approval.check_proof(other, proof, a, t, x)
    assert not approval.check_proof(code.encode(), proof, a, t, crypto.DeviceKey.generate().public)  # swapped key
    assert not approval.check_proof(code.encode(), 5, a, t, x) and not approval.check_proof(code.encode(), b"", a, t, x)

    sup = crypto.DeviceKey.generate()
    keys = [crypto.TeamKey.generate(1), crypto.TeamKey.generate(2)]
    team = b"TEAM0001"
    x_priv = enroll.new_x25519()
    x = enroll.x25519_public(x_priv)
    w = approval.seal_code_welcome(code, a, x, sup, keys, team)
    got = approval.open_code_welcome(code, a, x_priv, w, team)
    assert got.granter == sup.device_id and [k.secret for k in got.keys] == [k.secret for k in keys]
    with pytest.raises(IntegrityError):  # another code, device key, X25519 key or team: it does not open
        approval.open_code_welcome(approval.new_code(), a, x_priv, w, team)
    with pytest.raises(IntegrityError):
        approval.open_code_welcome(code, t, x_priv, w, team)
    with pytest.raises(IntegrityError):  # the code overheard, plus all the relay holds: still nothing
        approval.open_code_welcome(code, a, enroll.new_x25519(), w, team)
    with pytest.raises(IntegrityError):
        approval.open_code_welcome(code, a, x_priv, w, b"TEAM0002")
    for i in range(len(w)):  # every flipped byte is refused
        bad = bytearray(w)
        bad[i] ^= 1
        with pytest.raises((IntegrityError, ProtocolError)):
            approval.open_code_welcome(code, a, x_priv, bytes(bad), team)
    with pytest.raises(ProtocolError):
        approval.open_welcome(b"k" * 32, b"x" * (approval.MAX_WELCOME + 1), team)


def test_trust_follows_supervisor_approvals_only() -> None:
    sup, mem, new, rogue = (crypto.DeviceKey.generate() for _ in range(4))
    xs = {k.device_id: crypto.DeviceKey.generate().public for k in (sup, mem, new, rogue)}
    anchors = {sup.device_id: (sup.public, "supervisor", None)}
    r_mem = approval.make_approval(sup, mem.public, xs[mem.device_id], "amina", "member", 1)
    r_new_by_member = approval.make_approval(mem, new.public, xs[new.device_id], "bosco", "member", 2)
    r_rogue_self = approval.make_approval(rogue, rogue.public, xs[rogue.device_id], "mallory", "supervisor", 3)
    forged = bytearray(approval.make_approval(sup, rogue.public, xs[rogue.device_id], "x", "supervisor", 4))
    forged[-1] ^= 1
    t = approval.trusted(anchors, [r_new_by_member, r_rogue_self, bytes(forged), b"junk", r_mem])
    assert set(t) == {sup.device_id, mem.device_id}  # a member vouches for nobody; self-vouching, forgery: ignored
    assert t[mem.device_id] == (mem.public, "member", xs[mem.device_id])
    after = approval.trusted(anchors, [r_mem], revoked=[sup.device_id])
    assert set(after) == {mem.device_id}  # a revoked device grants nothing; whom it approved stays trusted
    for bad in (b"", b"\x00" * 600, 7):
        with pytest.raises(ProtocolError):
            approval.parse_approval(bad)


def test_invite_secret_round_trips_and_old_invites_still_decode() -> None:
    inv = enroll.Invite("http://r", b"k" * 32, b"T" * 8, b"t" * 16, "amina", "member", None, b"s" * 16)
    assert enroll.Invite.decode(inv.encode()) == inv
    plain = enroll.Invite("http://r", b"k" * 32, b"T" * 8, b"t" * 16, "amina", "member")
    assert enroll.Invite.decode(plain.encode()).secret is None
    raw = codec.pack(["http://r", b"k" * 32, b"T" * 8, b"t" * 16, "amina", "member", None, b"short"])
    import base64
    with pytest.raises(UsageError):
        enroll.Invite.decode("hbw1-" + base64.b32encode(raw).decode().rstrip("=").lower())


# -- end to end ---------------------------------------------------------------------------------------------


def test_team_invite_gives_the_key_at_join_while_the_supervisor_is_offline(team: Team) -> None:
    dana = team.join("dana", "supervisor")
    with dana.open() as rep:
        rep.add_task("Budget review")
    dana.sync()
    code = teams.make_invite(dana.home, dana.passphrase, "amina")
    assert code.secret is not None
    # The relay holds the token's hash and a sealed welcome, never the secret.
    blob = b"".join(r[0] for r in relay_sql(team, "SELECT data FROM invite_welcomes"))
    assert code.secret not in blob and code.token not in blob
    amina = Member("amina", team.tmp / "amina", PASS)
    syncing.join(amina.home, code.encode(), PASS, kdf=FAST_KDF)  # Dana's device does not sync meanwhile
    assert titles(amina) == {"Budget review"} and key_flow(amina) == []
    with pytest.raises(Exception):  # an invite is used once
        syncing.join(team.tmp / "amina2", code.encode(), PASS, kdf=FAST_KDF)
    # Dana's next unlocked sync checks the proof against her invite's secret and signs the approval.
    r = dana.sync()
    assert any("admitted amina's device" in n for n in r.notes)
    assert relay_sql(team, "SELECT COUNT(*) FROM approvals")[0][0] == 1


def test_it_invited_device_waits_visibly_until_a_supervisor_approves_its_code(team: Team) -> None:
    run = CliRunner()
    dana = team.join("dana", "supervisor")
    with dana.open() as rep:
        rep.add_task("Inspect permits")
    dana.sync()
    bosco = it_join(team, "bosco")
    env = {"HBW_PASSPHRASE": PASS}

    st = json.loads(run.invoke(client_cli, ["--home", str(bosco.home), "status", "--json"]).output)
    (wait,) = st["key_flow"]
    assert wait["waits_for"] == "approval" and wait["since"].endswith("Z") and len(wait["code"].replace(" ", "")) == 20
    out = run.invoke(client_cli, ["--home", str(bosco.home), "sync"], env=env)
    assert out.exit_code == 0 and "waits for a supervisor's approval" in out.output and wait["code"] in out.output
    out = run.invoke(client_cli, ["--home", str(bosco.home), "sync", "--json"], env={"HBW_PASSPHRASE": None})
    assert [w["waits_for"] for w in json.loads(out.output)["waiting"]] == ["approval"]
    assert titles(bosco) == set()

    # Dana's plain (locked) sync says exactly what to do.
    out = run.invoke(client_cli, ["--home", str(dana.home), "sync"], env={"HBW_PASSPHRASE": None})
    assert "bosco's device" in out.output and "team approve CODE" in out.output
    denv = {"HBW_PASSPHRASE": dana.passphrase}
    out = run.invoke(client_cli, ["--home", str(dana.home), "team", "pending", "--json"], env=denv)
    assert [p["member"] for p in json.loads(out.output)["pending"]] == ["bosco"]

    wrong = approval.format_code(approval.new_code())
    out = run.invoke(client_cli, ["--home", str(dana.home), "team", "approve", *wrong.split()], env=denv)
    assert out.exit_code == 2 and "no device waiting for approval shows this code" in out.output
    assert relay_sql(team, "SELECT COUNT(*) FROM approvals")[0][0] == 0  # nothing changed

    out = run.invoke(client_cli, ["--home", str(dana.home), "team", "approve", *wait["code"].split()], env=denv)
    assert out.exit_code == 0, out.output
    assert "Approved bosco's device" in out.output
    bosco.sync(unlocked=False)  # the scheduler fetches the welcome; it opens at the next unlock
    assert [w["waits_for"] for w in key_flow(bosco)] == ["unlock"]
    assert titles(bosco) == {"Inspect permits"} and key_flow(bosco) == []

    # Another supervisor's device trusts the shared approval record: it does not ask again.
    eve = team.join("eve", "supervisor")
    eve.sync()
    assert [w for w in key_flow(eve) if w["waits_for"] == "your approval"] == []


def test_join_with_an_it_invite_shows_the_code_at_once(team: Team, tmp_path: Path) -> None:
    team.join("dana", "supervisor")
    out = CliRunner().invoke(client_cli, ["--home", str(tmp_path / "b"), "join", team.it_invite("bosco")],
                             env={"HBW_PASSPHRASE": PASS})
    assert out.exit_code == 0, out.output
    assert "waits for a supervisor's approval" in out.output and "Code to show your supervisor:" in out.output


def test_reject_revokes_the_device_and_it_never_gets_a_key(team: Team) -> None:
    dana = team.join("dana", "supervisor")
    dana.sync()
    stranger = it_join(team, "amina")
    (wait,) = key_flow(stranger)
    r = teams.reject(dana.home, dana.passphrase, wait["code"])
    assert r["member"] == "amina" and r["note"] is None
    with pytest.raises(RevokedError):
        stranger.sync()
    with stranger.open() as rep:
        assert rep.team_keys() == {}


def test_after_a_revocation_nothing_is_sealed_under_the_old_key_until_rotation(team: Team) -> None:
    dana, amina, chidi = team.join("dana", "supervisor"), team.join("amina"), team.join("chidi")
    for m in (dana, amina, chidi):
        m.sync()
    with Device.open(chidi.home) as dev:
        lost = dev.identity.device_id.hex()
    admin.revoke(team.data, lost)
    amina.sync(unlocked=False)  # the scheduler: learns that the key must rotate
    (wait,) = key_flow(amina)
    assert wait["waits_for"] == "key rotation" and wait["since_ms"] and "a supervisor" in wait["who"]
    with amina.open() as rep:
        rep.add_task("Written after the laptop was lost")
    with Device.open(amina.home) as dev:
        st = dev.status()
    assert st["waiting_for_team_key"] == 1 and st["outbox"]["changes"] == 0  # kept, not sealed under epoch 1
    amina.sync()
    assert relay_sql(team, "SELECT COUNT(*) FROM batches")[0][0] == 0  # nothing went out under the old epoch

    # Dana's scheduled sync is told what to do; her 'team rotate' makes epoch 2 at once.
    r = dana.sync(unlocked=False)
    assert any(w["waits_for"] == "key rotation" and "team rotate" in w["todo"] for w in r.waiting)
    out = CliRunner().invoke(client_cli, ["--home", str(dana.home), "team", "rotate"],
                             env={"HBW_PASSPHRASE": dana.passphrase})
    assert out.exit_code == 0 and "epoch 2" in out.output, out.output
    amina.sync()
    assert key_flow(amina) == []
    assert relay_sql(team, "SELECT epoch FROM batches ORDER BY rseq DESC LIMIT 1")[0][0] == 2
    dana.sync()
    assert "Written after the laptop was lost" in titles(dana)
    assert relay_sql(team, "SELECT COUNT(*) FROM grants WHERE hex(device) = ? AND epoch = 2", (lost.upper(),))[0][0] == 0


def test_relay_host_attacker_gets_no_key_and_reads_nothing(team: Team) -> None:
    """Whoever controls the relay's host: invites, own devices, rewritten rows. No epoch, no content."""
    dana, amina = team.join("dana", "supervisor"), team.join("amina")
    with dana.open() as rep:
        rep.add_task("Salaries of March", description="confidential figures")
    dana.sync()
    amina.sync()
    real_ids = {r[0] for r in relay_sql(team, "SELECT key_id FROM keys")}

    # 1. An invite for an existing member's name, made on the host, and the attacker's own device.
    mallory = it_join(team, "amina")
    # 2. A 'supervisor' device of its own, and rows written straight into the database.
    boss = it_join(team, "it-admin", "supervisor")
    with boss.open() as rep:
        boss_key = rep.author
    mal_dev = Device.open(mallory.home)
    with mal_dev:
        m_author_pub, m_x = mal_dev.store.meta("author_public"), mal_dev.store.meta("x25519_public")
    forged = [approval.make_approval(boss_key, m_author_pub, m_x, "amina", "member", 1),
              approval.make_approval(boss_key, boss_key.public, crypto.DeviceKey.generate().public, "it-admin",
                                     "supervisor", 1)]
    for rec in forged:  # approval records signed by its own 'supervisor'
        relay_sql(team, "INSERT INTO approvals (device, approver, data, created_ms) VALUES (?, ?, ?, 0)",
                  (approval.parse_approval(rec).device, boss_key.device_id, rec))
    # Its own key as epoch 2, granted to every real device (a rogue granter in the roster).
    rogue = crypto.TeamKey.generate(2)
    relay_sql(team, "INSERT INTO keys (epoch, key_id, created_ms, created_by) VALUES (2, ?, 0, ?)",
              (rogue.key_id, boss_key.device_id))
    for dev, x in relay_sql(team, "SELECT device, x25519_pub FROM devices"):
        relay_sql(team, "INSERT OR REPLACE INTO grants (device, epoch, data, created_ms) VALUES (?, 2, ?, 0)",
                  (dev, enroll.make_grant(rogue, dev, x, boss_key)))
    # The proof of its device replaced by the real amina's, and amina's X25519 key swapped for its own.
    relay_sql(team, "UPDATE enrollments SET proof = (SELECT proof FROM enrollments e JOIN devices d ON"
                    " d.device = e.device WHERE d.member = 'amina' ORDER BY d.enrolled_ms LIMIT 1)"
                    " WHERE device = (SELECT device FROM devices WHERE x25519_pub = ?)", (m_x,))
    relay_sql(team, "UPDATE devices SET x25519_pub = ? WHERE member = 'amina' AND x25519_pub != ?", (m_x, m_x))
    relay_sql(team, "DELETE FROM grants WHERE epoch = 1 AND device != (SELECT created_by FROM keys WHERE epoch = 1)")
    relay_sql(team, "UPDATE members SET role = 'supervisor' WHERE name = 'amina'")
    # Its device claims the token of a team invite Dana has out (the relay knows the hash, not the secret).
    outstanding = teams.make_invite(dana.home, dana.passphrase, "chidi")
    relay_sql(team, "UPDATE enrollments SET token_hash = ? WHERE device = ?",
              (enroll.token_hash(outstanding.token), crypto.device_id_for(m_author_pub)))

    # The honest devices sync as usual, unlocked, several times.
    for _ in range(2):
        dana.sync()
        amina.sync()
        with dana.open() as rep:
            rep.add_task(f"More confidential work {_}")
        mallory.sync()
        boss.sync()

    with dana.open() as rep:
        # The rogue epoch 2 was never accepted: Dana's device rotated past it, to an epoch of its own.
        dana_keys = rep.team_keys()
        assert 2 not in dana_keys and rep.store.meta("key_epoch") == 3
        real_ids = {k.key_id for k in dana_keys.values()}
        # The claimed invite was checked once, failed, and is not checked again; the invite still stands.
        assert rep.store.meta("proof_failed") and len(rep.store.meta("invite_secrets")) == 1
    with amina.open() as rep:
        assert 2 not in rep.team_keys() and "Salaries of March" in {t.title for t in rep.tasks()}
        assert {k.key_id for k in rep.team_keys().values()} <= real_ids
    for m in (mallory, boss):
        with m.open() as rep:
            held = rep.team_keys()
            assert 1 not in held and rep.tasks() == []
            assert all(k.key_id not in real_ids for k in held.values())
    # The attacker does not need our client: it opens every grant addressed to its devices itself.
    for m in (mallory, boss):
        with m.open() as rep:
            me, x_priv = rep.author.device_id, rep.sealer.open(rep.store.meta("x25519_key"), b"meta:x25519_key")
        for (data,) in relay_sql(team, "SELECT data FROM grants WHERE device = ? AND data != x''", (me,)):
            granter = enroll.grant_sender(data)
            (gpub,) = relay_sql(team, "SELECT author_pub FROM devices WHERE device = ?", (granter,))[0]
            assert enroll.open_grant(data, me, x_priv, gpub).key_id not in real_ids
    # Nothing the honest devices sent is sealed under a key the attacker made.
    assert {r[0] for r in relay_sql(team, "SELECT epoch FROM batches")} <= set(dana_keys)
    # And with every key the attacker's devices hold, not one stored batch opens.
    with mallory.open() as rep:
        m_keys = list(rep.team_keys().values()) + [rogue]
    for (data,) in relay_sql(team, "SELECT data FROM batches"):
        frame = wire.parse_batch(data)
        for k in m_keys:
            if k.epoch == frame.epoch:
                with pytest.raises(IntegrityError):
                    wire.decode_batch(data, relay_sql(team, "SELECT author_pub FROM devices WHERE device = ?",
                                                      (frame.device,))[0][0], {k.epoch: k}, frame.team)


# -- vectors ---------------------------------------------------------------------------------------------

VECTORS = json.loads((Path(__file__).resolve().parent.parent / "protocol" / "vectors" / "approval.json").read_text())


def test_approval_vectors_recompute_byte_for_byte() -> None:
    v = VECTORS
    dev = v["device"]
    a_pub, t_pub, x_pub = (bytes.fromhex(dev[k]) for k in ("author_public", "transport_public", "x25519_public"))
    sup = crypto.DeviceKey(bytes.fromhex(v["supervisor"]["seed"]))
    team = bytes.fromhex(v["team"])
    keys = [crypto.TeamKey(k["epoch"], bytes.fromhex(k["secret"])) for k in v["team_keys"]]
    c = v["code"]
    assert approval.parse_code(c["shown"]) == c["digits"]
    assert approval.stretch(c["digits"].encode(), a_pub).hex() == c["stretched"]
    assert approval.make_proof(c["digits"].encode(), a_pub, t_pub, x_pub).hex() == c["proof"]
    eph_pub, shared = bytes.fromhex(c["ephemeral_public"]), bytes.fromhex(c["shared"])
    assert approval.code_welcome_key(c["digits"], a_pub, shared, eph_pub, x_pub).hex() == c["welcome_key"]
    sealed = approval.seal_code_welcome(c["digits"], a_pub, x_pub, sup, keys, team,
                                        bytes.fromhex(c["ephemeral_private"]), bytes.fromhex(c["welcome_nonce"]))
    assert sealed.hex() == c["welcome"] and sealed[:32] == eph_pub
    opened = approval.open_code_welcome(c["digits"], a_pub, bytes.fromhex(c["device_x25519_private"]), sealed, team)
    assert opened.granter_pub == sup.public and [k.secret for k in opened.keys] == [k.secret for k in keys]
    w = v["invite"]
    key, nonce = bytes.fromhex(w["welcome_key"]), bytes.fromhex(w["welcome_nonce"])
    assert approval.make_welcome(key, sup, keys, team, nonce).hex() == w["welcome"]
    opened = approval.open_welcome(key, bytes.fromhex(w["welcome"]), team)
    assert opened.granter_pub == sup.public and [k.secret for k in opened.keys] == [k.secret for k in keys]
    inv = enroll.Invite.decode(v["invite"]["text"])
    assert inv.secret.hex() == v["invite"]["secret"]
    assert approval.invite_welcome_key(inv.secret).hex() == v["invite"]["welcome_key"]
    assert approval.make_proof(inv.secret, a_pub, t_pub, x_pub).hex() == v["invite"]["proof"]
    ap = v["approval"]
    rec = approval.make_approval(sup, a_pub, x_pub, ap["member"], ap["role"], ap["time_ms"])
    assert rec.hex() == ap["record"] and approval.verify_approval(rec, sup.public).device.hex() == dev["device_id"]


@pytest.mark.parametrize("case", VECTORS["invalid"], ids=lambda c: c["name"])
def test_approval_invalid_vectors_fail_with_their_code(case: dict) -> None:
    v = VECTORS
    data = bytes.fromhex(case["data"])
    a_pub = bytes.fromhex(v["device"]["author_public"])
    team = bytes.fromhex(v["team"]) if case["name"] != "welcome-other-team" else bytes.fromhex("f0f1f2f3f4f5f6f7")
    code = v["code"]["digits"] if case["name"] != "welcome-other-code" else "27182818284590452353"
    x_priv = bytes.fromhex(v["code"]["device_x25519_private"]) if case["name"] != "welcome-other-device-key" \
        else b"\x53" * 32
    sup_pub = bytes.fromhex(v["supervisor"]["author_public"])
    if case["name"] == "approval-other-approver":
        sup_pub = crypto.DeviceKey(b"\x21" * 32).public
    with pytest.raises((IntegrityError, ProtocolError)) as e:
        if case["kind"] == "welcome":
            approval.open_code_welcome(code, a_pub, x_priv, data, team)
        else:
            approval.verify_approval(data, sup_pub)
    assert (type(e.value).__name__, e.value.code) == (case["expected_error"], case["expected_code"])


# -- hostile input at the relay ------------------------------------------------------------------------------


def _request(team: Team, m: Member, action: str, args: dict) -> dict:
    with Device.open(m.home) as dev:
        body, nonce = envelope.make_request(dev.transport_key(), dev.identity.device_id, action, args,
                                            syncing.now_ms())
        relay_pub = dev.store.meta("relay_public")
    return envelope.parse_response(asyncio.run(syncing.post(team.url, body, 10)), relay_pub, nonce).result


def test_admission_arguments_are_checked_and_bad_ones_change_nothing(team: Team) -> None:
    dana, amina = team.join("dana", "supervisor"), team.join("amina")
    dana.sync()
    good_inv = {"token_hash": b"h" * 32, "member": "bosco", "role": "member", "ttl_days": 14, "welcome": b"w" * 60,
                "epochs": [1]}
    with pytest.raises(AccessError) as e:  # a member's device makes no team invite
        _request(team, amina, "invite", good_inv)
    assert e.value.code == "access.role"
    with pytest.raises(AccessError) as e:
        _request(team, amina, "sync", {"approvals": [b"x" * 100]})
    assert e.value.code == "access.role"
    bad_invites = [
        {"token_hash": b"h" * 31}, {"token_hash": 12}, {"member": "Not A Name!"}, {"member": 5}, {"role": "root"},
        {"ttl_days": 0}, {"ttl_days": 10**12}, {"ttl_days": True}, {"welcome": "text"},
        {"welcome": b"w" * (approval.MAX_WELCOME + 1)}, {"epochs": [0]}, {"epochs": "1"},
        {"epochs": list(range(1, 5000))}, {"epochs": [2**40]},
    ]
    for bad in bad_invites:
        with pytest.raises((ProtocolError, UsageError)):
            _request(team, dana, "invite", {**good_inv, **bad})
    bad_syncs = [
        {"approvals": "x"}, {"approvals": [5]}, {"approvals": [b"x" * 600]}, {"approvals": [b"\x00" * 100] * 300},
        {"approvals_after": "0"}, {"welcomes": [[b"d" * 8, [1]]]}, {"welcomes": [[b"d" * 7, [1], b"w"]]},
        {"welcomes": [[b"d" * 8, [1], b"w" * (approval.MAX_WELCOME + 1)]]}, {"reject": [b"short"]},
    ]
    for bad in bad_syncs:
        with pytest.raises(HbwError):
            _request(team, dana, "sync", bad)
    # An approval record signed by another device than the sender is refused.
    with amina.open() as rep:
        other = approval.make_approval(rep.author, rep.author.public, b"x" * 32, "x", "member", 1)
    with pytest.raises(IntegrityError):
        _request(team, dana, "sync", {"approvals": [other]})
    # A rejection cannot revoke an approved device (that is office IT's).
    with Device.open(amina.home) as dev:
        amina_id = dev.identity.device_id
    with pytest.raises(AccessError):
        _request(team, dana, "sync", {"reject": [amina_id]})
    # None of it changed anything.
    assert relay_sql(team, "SELECT COUNT(*) FROM invites WHERE member = 'bosco'")[0][0] == 0
    assert relay_sql(team, "SELECT COUNT(*) FROM approvals")[0][0] == 1  # amina's, from dana's first sync
    assert relay_sql(team, "SELECT COUNT(*) FROM welcomes WHERE device = ?", (b"d" * 8,))[0][0] == 0
    assert relay_sql(team, "SELECT COUNT(*) FROM devices WHERE revoked_ms IS NOT NULL")[0][0] == 0
    # enroll: a proof of the wrong type or size is refused before anything is stored
    for proof in (b"p" * 31, b"p" * 10_000, 7, "proof"):
        fresh = team.tmp / f"fresh-{len(str(proof))}"
        with pytest.raises(ProtocolError):
            dev = Device.init(fresh, "bosco", PASS, kdf=FAST_KDF)
            dev.close()
            inv = enroll.Invite.decode(team.it_invite("bosco"))
            with Device.open(fresh) as d:
                rep = d.unlock(PASS)
                args = {"token": inv.token, "author_pub": rep.author.public, "transport_pub": d.transport_key().public,
                        "x25519_pub": d.store.meta("x25519_public"), "proof": proof}
                body, nonce = envelope.make_request(d.transport_key(), rep.author.device_id, "enroll", args,
                                                    syncing.now_ms())
            asyncio.run(syncing.post(team.url, body, 10))
    assert relay_sql(team, "SELECT COUNT(*) FROM devices WHERE member = 'bosco'")[0][0] == 0


def test_every_flipped_byte_of_an_approval_record_is_refused() -> None:
    sup = crypto.DeviceKey(b"\x01" * 32)
    rec = approval.make_approval(sup, crypto.DeviceKey(b"\x02" * 32).public, b"x" * 32, "amina", "member", 5)
    for i in range(len(rec)):
        bad = bytearray(rec)
        bad[i] ^= 1
        with pytest.raises((IntegrityError, ProtocolError)):
            approval.verify_approval(bytes(bad), sup.public)
    for n in range(len(rec)):
        with pytest.raises((IntegrityError, ProtocolError)):
            approval.verify_approval(rec[:n], sup.public)


@pytest.mark.parametrize("sara_role", ["supervisor", "member"])
def test_only_devices_approved_as_supervisor_vouch_for_others(team: Team, sara_role: str) -> None:
    """Whether a device may vouch is a person's decision (--role), not what office IT's invite said."""
    from hbw_sync.client import keyflow

    dana, amina = team.join("dana", "supervisor"), team.join("amina")
    dana.sync()
    sara = it_join(team, "sara", "supervisor")
    r = teams.approve(dana.home, dana.passphrase, key_flow(sara)[0]["code"], sara_role)
    assert r["enrolled_as"] == "supervisor" and r["role"] == sara_role
    sara.sync()
    bosco = it_join(team, "bosco")
    teams.approve(sara.home, sara.passphrase, key_flow(bosco)[0]["code"])
    for m in (bosco, amina, dana, amina):
        m.sync()
    with Device.open(bosco.home) as dev:
        bosco_id = dev.identity.device_id
    with Device.open(amina.home) as dev:
        trusted_by_amina = keyflow.trust(dev.store)
    assert (bosco_id in trusted_by_amina) == (sara_role == "supervisor")
    with bosco.open() as rep:  # sara's welcome reached bosco either way: she holds the key
        assert 1 in rep.team_keys()


def test_a_supervisors_unlock_after_a_revocation_makes_the_new_epoch(team: Team) -> None:
    dana, amina, chidi = team.join("dana", "supervisor"), team.join("amina"), team.join("chidi")
    for m in (dana, amina, chidi, dana):
        m.sync()
    with Device.open(chidi.home) as dev:
        admin.revoke(team.data, dev.identity.device_id.hex())
    dana.sync(unlocked=False)  # learns of the revocation
    with dana.open() as rep:  # any command with her passphrase
        rep.add_task("After the loss")
        assert rep.store.meta("key_epoch") == 2
    dana.sync(unlocked=False)  # publishes epoch 2 and sends the task sealed under it, no passphrase needed
    assert relay_sql(team, "SELECT epoch FROM batches ORDER BY rseq DESC LIMIT 1")[0][0] == 2
    amina.sync(unlocked=False)
    (wait,) = key_flow(amina)  # told precisely: the key exists, and who shares it
    assert wait["waits_for"] == "key grant" and wait["epoch"] == 2 and wait["since_ms"]
    r = dana.sync(unlocked=False)  # her scheduler: told that amina's device waits on her unlocked sync
    assert [w["devices"] for w in r.waiting if w["waits_for"] == "your unlocked sync"] == [1]
    dana.sync()  # grants epoch 2 to amina, not to chidi
    amina.sync()
    assert "After the loss" in titles(amina)


def test_approval_vectors_messages_verify_and_carry_what_they_claim() -> None:
    v = VECTORS
    msgs = v["messages"]
    enr = envelope.parse_request(bytes.fromhex(msgs["enroll_request"]["envelope"]))
    enr.verify(crypto.DeviceKey(bytes.fromhex(msgs["enroll_request"]["transport_seed"])).public)
    assert enr.action == "enroll" and enr.time_ms == msgs["enroll_request"]["time_ms"]
    a = enr.args
    assert a["proof"].hex() == v["code"]["proof"]
    assert approval.check_proof(v["code"]["digits"].encode(), a["proof"], a["author_pub"], a["transport_pub"],
                                a["x25519_pub"])
    inv = envelope.parse_request(bytes.fromhex(msgs["invite_request"]["envelope"]))
    inv.verify(crypto.DeviceKey(bytes.fromhex(msgs["invite_request"]["transport_seed"])).public)
    secret = bytes.fromhex(v["invite"]["secret"])
    assert inv.action == "invite" and inv.args["welcome"].hex() == v["invite"]["welcome"]
    assert inv.args["token_hash"] == enroll.token_hash(enroll.Invite.decode(v["invite"]["text"]).token)
    assert secret not in bytes.fromhex(msgs["invite_request"]["envelope"])  # the relay never sees the secret
    opened = approval.open_welcome(approval.invite_welcome_key(secret), inv.args["welcome"], bytes.fromhex(v["team"]))
    assert [k.epoch for k in opened.keys] == inv.args["epochs"]
