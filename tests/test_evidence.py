"""Evidence files (issue 17 items 1 and 5): exported from a real relay, checked offline by hbw-audit.

The auditor's side holds nothing but the file: every test here builds a real
file (a supervisor's export from a relay on a loopback port), then alters it the
way a dishonest holder would, and asserts the precise code ``hbw-audit`` gives.
A compromised relay is played with the relay's own key file (``relay.key``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hbw_sync import codec, crypto, evidence
from hbw_sync import batch as wire
from hbw_sync.audit_cli import cli as audit_cli
from hbw_sync.client import audit as auditing
from hbw_sync.client.cli import cli as client_cli
from hbw_sync.errors import AccessError, IntegrityError, ProtocolError
from hbw_sync.server import admin

from hostile_helpers import post, signed
from relay_helpers import Member, Team


def _export(m: Member, out: Path, **kw) -> dict:
    return auditing.export(m.home, m.passphrase, out, **kw)


@pytest.fixture
def worked(team: Team, tmp_path: Path) -> tuple[Team, Member, Member, Path]:
    """dana (supervisor) and chidi each made changes that reached the relay; dana exported all of it."""
    dana, chidi = team.pair()
    with dana.open() as rep:
        t = rep.add_task("Inspect the market stalls", assignee="chidi").id
    dana.sync()
    chidi.sync()
    with chidi.open() as rep:
        rep.edit_task(t, status=1)
        rep.note(t, "North side done")
    chidi.sync()
    dana.sync()
    with dana.open() as rep:
        rep.edit_task(t, priority=2)
    dana.sync()
    out = tmp_path / "evidence.hbwe"
    _export(dana, out, key_file=tmp_path / "team.key")
    return team, dana, chidi, out


def _relay_key(team: Team) -> str:
    return crypto.DeviceKey((team.data / "relay.key").read_bytes()).public.hex()


def _rebuild(ev: evidence.Evidence, exporter: crypto.DeviceKey, **changes) -> bytes:
    fields = {"receipts": ev.receipts, "relay_pub": ev.relay_pub, "batches": list(ev.batches),
              "approvals": list(ev.approvals), "exported_ms": ev.exported_ms, **changes}
    return evidence.make_evidence(exporter, fields["receipts"], fields["relay_pub"], fields["batches"],
                                  fields["approvals"], fields["exported_ms"])


def test_an_honest_export_verifies_and_says_who_did_what(worked, tmp_path: Path) -> None:
    team, dana, chidi, out = worked
    r = evidence.verify(out.read_bytes(), bytes.fromhex(_relay_key(team)))
    assert r.ok, r.problems
    assert r.exporter == "dana" and {e.member for e in r.entries} == {"dana", "chidi"}
    assert [e.rseq for e in r.entries] == sorted(e.rseq for e in r.entries)
    assert all(not e.content_shown for e in r.entries)  # no team key given: routing only
    devices = {d["member"]: d for d in r.devices}
    assert devices["chidi"]["approved_by"] and devices["chidi"]["approved_by"][0]["member"] == "dana"

    res = CliRunner().invoke(audit_cli, ["verify", str(out), "--relay-key", _relay_key(team),
                                         "--key-file", str(tmp_path / "team.key")])
    assert res.exit_code == 0, res.output
    assert "chidi, device" in res.output and "'Inspect the market stalls'" in res.output
    assert "'North side done'" in res.output and "status = in_progress" in res.output
    assert "every signature, certificate and receipt holds" in res.output
    js = CliRunner().invoke(audit_cli, ["verify", str(out), "--json"])
    assert js.exit_code == 0 and json.loads(js.stdout)["ok"] is True and not json.loads(js.stdout)["relay_key_checked"]


def test_a_flipped_byte_in_a_batch_is_refused_as_altered(worked) -> None:
    team, dana, chidi, out = worked
    data = bytearray(out.read_bytes())
    ev = evidence.parse_evidence(bytes(data))
    target = ev.batches[-1]
    at = bytes(data).index(target) + len(target) // 2
    data[at] ^= 0x01
    r = evidence.verify(bytes(data))
    assert r.codes()[0] == "integrity.receipt", r.problems
    assert "integrity.signature" in r.codes()  # and the exporter's signature over the file no longer holds
    res = CliRunner().invoke(audit_cli, ["verify", "-"], input=b"")  # not a file: plain usage error
    assert res.exit_code != 0


def test_every_truncation_and_trailing_bytes_are_refused_with_a_code(worked) -> None:
    team, dana, chidi, out = worked
    data = out.read_bytes()
    for n in (0, 3, 5, 13, len(data) // 2, len(data) - 64, len(data) - 1):
        with pytest.raises(ProtocolError) as e:
            evidence.verify(data[:n])
        assert e.value.code == "protocol.truncated", (n, e.value.code)
    with pytest.raises(ProtocolError) as e:
        evidence.verify(data + b"\x00")
    assert e.value.code == "protocol.trailing"
    with pytest.raises(ProtocolError) as e:
        evidence.verify(b"HBWB" + data[4:])
    assert e.value.code == "protocol.magic"
    (out.parent / "short.hbwe").write_bytes(data[:-1])
    res = CliRunner().invoke(audit_cli, ["verify", str(out.parent / "short.hbwe"), "--json"])
    assert res.exit_code == 65 and json.loads(res.stdout)["code"] == "protocol.truncated"


def test_reordered_and_incomplete_files_are_refused(worked) -> None:
    team, dana, chidi, out = worked
    ev = evidence.parse_evidence(out.read_bytes())
    assert len(ev.batches) >= 3
    with dana.open() as rep:
        key = rep.author  # even the exporter itself cannot reorder or drop changes unnoticed
    swapped = list(ev.batches)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    r = evidence.verify(_rebuild(ev, key, batches=swapped))
    assert r.codes() == ["integrity.order"], r.problems
    dropped = list(ev.batches)
    gone = wire.parse_batch(dropped.pop(1))
    r = evidence.verify(_rebuild(ev, key, batches=dropped))
    assert r.codes() == ["integrity.missing"], r.problems
    assert f"batch {gone.seq} of device {gone.device.hex()[:8]}" in r.problems[0].message
    # a batch's receipt removed too: the relay's signature over the receipts breaks
    rc = bytearray(ev.receipts)
    rc[len(rc) // 2] ^= 0x40
    with pytest.raises(IntegrityError) as e:
        evidence.verify(_rebuild(ev, key, receipts=bytes(rc)))
    assert e.value.code == "integrity.receipts"
    with pytest.raises(IntegrityError) as e:
        evidence.verify(out.read_bytes(), bytes(32))
    assert e.value.code == "integrity.relay_key"
    # an approval record altered: the supervisor's certificate no longer holds
    appr = [bytes(a[:-1]) + bytes([a[-1] ^ 1]) for a in ev.approvals]
    assert "integrity.approval" in evidence.verify(_rebuild(ev, key, approvals=appr)).codes()


def test_a_batch_signed_by_a_revoked_device_after_its_revocation_is_flagged(worked, tmp_path: Path) -> None:
    """A compromised relay (it holds relay.key) passes on a batch chidi's lost laptop signed after IT revoked it."""
    team, dana, chidi, out = worked
    ev = evidence.parse_evidence(out.read_bytes())
    relay_key = crypto.DeviceKey((team.data / "relay.key").read_bytes())
    rc = evidence.open_receipts(ev.receipts, ev.relay_pub)
    with chidi.open() as rep:
        chidi_id = rep.author.device_id
    revoked_at = max(r.received_ms for r in rc.receipts) - 1
    admin.revoke(team.data, chidi_id.hex())
    with chidi.open() as rep:  # the laptop goes on working offline after its revocation
        rep.add_task("Signed after revocation")
        late = rep.store.execute("SELECT data FROM outbox ORDER BY seq DESC LIMIT 1").fetchone()[0]
    frame = wire.parse_batch(late)
    roster = [evidence.Enrollment(e.device, e.member, e.role, e.author_pub, e.enrolled_ms,
                                  revoked_at if e.device == chidi_id else e.revoked_ms) for e in rc.roster]
    receipts = list(rc.receipts) + [evidence.Receipt(rc.last_rseq + 1, chidi_id, frame.seq, revoked_at + 10,
                                                     hashlib.sha256(late).digest(), True)]
    forged = evidence.make_receipts(relay_key, rc.team, rc.made_ms, rc.scope, rc.first_rseq, rc.last_rseq + 1,
                                    receipts, roster)
    with dana.open() as rep:
        data = _rebuild(ev, rep.author, receipts=forged, batches=list(ev.batches) + [late])
    r = evidence.verify(data)
    assert r.codes() == ["integrity.revoked"], r.problems
    assert "chidi's device" in r.problems[0].message
    (tmp_path / "late.hbwe").write_bytes(data)
    res = CliRunner().invoke(audit_cli, ["verify", str(tmp_path / "late.hbwe")])
    assert res.exit_code == 65 and "[integrity.revoked]" in res.output and "REVOKED" in res.output


def test_scope_by_member_and_task_and_the_cli(worked, tmp_path: Path) -> None:
    team, dana, chidi, out = worked
    only = _export(dana, tmp_path / "chidi.hbwe", member="chidi")
    r = evidence.verify((tmp_path / "chidi.hbwe").read_bytes())
    assert r.ok and {e.member for e in r.entries} == {"chidi"} and only["receipts"] > only["batches"]
    with dana.open() as rep:
        t = bytes.fromhex(rep.add_task("Unrelated").id)
    dana.sync()
    with dana.open() as rep:
        first = [v for v in rep.tasks() if v.title == "Inspect the market stalls"][0]
    env = {"HBW_SYNC_HOME": str(dana.home), "HBW_PASSPHRASE": dana.passphrase}
    res = CliRunner().invoke(client_cli, ["audit", "export", str(tmp_path / "task.hbwe"), "--task", first.id[:8],
                                          "--json"], env=env)
    assert res.exit_code == 0, res.output
    r = evidence.verify((tmp_path / "task.hbwe").read_bytes())
    assert r.ok and all(c.entity.hex() == first.id for e in r.entries for c in e.changes)
    assert not any(c.entity == t for e in r.entries for c in e.changes)


def test_only_a_supervisor_exports_and_the_action_is_bounded(worked, tmp_path: Path) -> None:
    team, dana, chidi, out = worked
    with pytest.raises(AccessError):
        _export(chidi, tmp_path / "no.hbwe")
    assert not (tmp_path / "no.hbwe").exists()
    status, err = post(team.url, signed(chidi, "evidence", {}))
    assert status == 403 and err["code"] == "access.role"
    for args in ({"member": 3}, {"task": b""}, {"task": bytes(33)}, {"since_ms": -1}, {"until_ms": "today"}):
        status, err = post(team.url, signed(dana, "evidence", args))
        assert status in (400, 413) and err["code"] in ("protocol.schema", "protocol.limit"), (args, err)
    status, err = post(team.url, signed(dana, "evidence", {"since_ms": 10, "until_ms": 5}))
    assert status == 400 and err["code"] == "usage.period"


def test_a_hostile_file_is_bounded_before_it_is_built() -> None:
    """Declared lengths are checked from the msgpack headers: a 4 GB bin claimed in 40 bytes costs nothing."""
    body = b"\x96" + b"\xc6\xff\xff\xff\xff"
    frame = evidence.FRAME.pack(b"HBW", b"E", 1, len(body)) + body + bytes(64)
    with pytest.raises(ProtocolError) as e:
        evidence.parse_evidence(frame)
    assert e.value.code in ("protocol.limit", "protocol.msgpack")
    nested = codec.pack([[[]] * 10] * 10)
    frame = evidence.FRAME.pack(b"HBW", b"E", 1, len(nested)) + nested + bytes(64)
    with pytest.raises(ProtocolError) as e:
        evidence.parse_evidence(frame)
    assert e.value.code == "protocol.schema"
