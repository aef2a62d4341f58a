"""Confidential documents (issue 17 item 3): who may mark, export only with a reason, recorded everywhere.

Real parts throughout: a relay on a loopback port, real stores, the real CLI through CliRunner
(stdin is not a terminal there, so a missing reason must be refused, never asked for).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hbw_sync import evidence
from hbw_sync.client import Device
from hbw_sync.client import audit as auditing
from hbw_sync.client.cli import cli as client_cli
from hbw_sync.errors import AccessError, UsageError
from hbw_sync.ops import Kind
from hbw_sync.server import admin

from relay_helpers import Member, Team


def _env(m: Member) -> dict[str, str]:
    return {"HBW_SYNC_HOME": str(m.home), "HBW_PASSPHRASE": m.passphrase}


def _doc(m: Member, tmp_path: Path, name: str = "case-file.txt", data: bytes = b"Tenant 14: arrears plan.\n") -> str:
    f = tmp_path / name
    f.write_bytes(data)
    with m.open() as rep:
        return rep.add_doc(f).id


def _sync_all(*members: Member) -> None:
    for m in members + members:
        m.sync()


def _exports(m: Member, did: str) -> list[tuple[str, str]]:
    with m.open() as rep:
        return [(e.by, e.reason) for e in rep.doc(did).exports]


def test_author_and_supervisor_may_mark_a_plain_member_may_not(team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair()
    amina = team.join("amina")
    amina.sync()
    did = _doc(chidi, tmp_path)
    _sync_all(chidi, dana, amina)

    with chidi.open() as rep:  # the author
        assert rep.mark_confidential(did).confidential
    with amina.open() as rep:  # a member, not the author: refused, nothing changed
        with pytest.raises(AccessError) as e:
            rep.mark_confidential(did, False)
        assert e.value.code == "access.not_author" and "chidi" in e.value.message
        assert not rep.doc(did).confidential  # chidi's mark has not reached her yet, and hers was not made
        before = rep.store.execute("SELECT COUNT(*) FROM oplog").fetchone()[0]
    res = CliRunner().invoke(client_cli, ["doc", "confidential", did[:8]], env=_env(amina))
    assert res.exit_code == 77 and "author (chidi) or a supervisor" in res.output
    with amina.open() as rep:
        assert rep.store.execute("SELECT COUNT(*) FROM oplog").fetchone()[0] == before
    _sync_all(chidi, dana, amina)

    res = CliRunner().invoke(client_cli, ["doc", "confidential", did[:8], "--off", "--json"], env=_env(dana))
    assert res.exit_code == 0, res.output  # a supervisor, not the author
    assert json.loads(res.output)["confidential"] is False
    res = CliRunner().invoke(client_cli, ["doc", "confidential", did[:8]], env=_env(dana))
    assert res.exit_code == 0 and "is now confidential" in res.output
    _sync_all(dana, chidi, amina)
    for m in (dana, chidi, amina):
        with m.open() as rep:
            d = rep.doc(did)
            assert d.confidential and d.confidential_by and d.confidential_by.startswith("dana at ")
        res = CliRunner().invoke(client_cli, ["doc", "list", "--json"], env=_env(m))
        row = next(r for r in json.loads(res.output) if r["id"] == did)
        assert row["confidential"] is True and row["exports"] == []
        res = CliRunner().invoke(client_cli, ["doc", "list"], env=_env(m))
        assert "[confidential]" in res.output


def test_export_without_a_reason_is_refused_and_writes_nothing(team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair()
    did = _doc(dana, tmp_path)
    with dana.open() as rep:
        rep.mark_confidential(did)
        before = rep.store.execute("SELECT COUNT(*) FROM oplog").fetchone()[0]
    out = tmp_path / "out.txt"
    for extra in ([], ["--reason", "   "], ["--json"]):
        res = CliRunner().invoke(client_cli, ["doc", "get", did[:8], "-o", str(out), *extra], env=_env(dana))
        assert res.exit_code == 2, res.output
        assert not out.exists() and not (tmp_path / "out.txt.hbw-part").exists()
        if "--json" in extra:
            assert json.loads(res.output.splitlines()[0])["code"] == "usage.reason_required"
        else:
            assert "is confidential" in res.output and "--reason" in res.output and "nothing was written" in res.output
    with dana.open() as rep:
        assert rep.store.execute("SELECT COUNT(*) FROM oplog").fetchone()[0] == before
        assert rep.doc(did).exports == []
        with pytest.raises(UsageError) as e:  # the library call the app's download uses
            rep.export_doc(did)
        assert e.value.code == "usage.reason_required"
        with pytest.raises(UsageError) as e:
            rep.export_doc(did, reason="x" * 1001)
        assert e.value.code == "usage.reason_too_long"
        assert rep.doc_bytes(did)[1] == b"Tenant 14: arrears plan.\n"  # reading inside the store is not exporting


def test_an_export_with_a_reason_is_recorded_on_every_device(team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair()
    amina = team.join("amina")
    amina.sync()
    did = _doc(dana, tmp_path)
    plain = _doc(dana, tmp_path, "leaflet.txt", b"Opening hours.\n")
    with dana.open() as rep:
        rep.mark_confidential(did)
    _sync_all(dana, chidi, amina)

    out = tmp_path / "printed.txt"
    reason = "Printing for the tenancy hearing"
    res = CliRunner().invoke(client_cli, ["doc", "get", did[:8], "-o", str(out), "--reason", reason], env=_env(chidi))
    assert res.exit_code == 0, res.output
    assert out.read_bytes() == b"Tenant 14: arrears plan.\n" and "recorded" in res.output
    res = CliRunner().invoke(client_cli, ["doc", "get", plain[:8], "-o", str(tmp_path / "l.txt")], env=_env(chidi))
    assert res.exit_code == 0, res.output  # not confidential: no reason, no record
    with chidi.open() as rep:
        assert rep.doc(plain).exports == []
        chidi_device = rep.author.device_id.hex()
    _sync_all(chidi, dana, amina)

    for m in (dana, chidi, amina):
        assert _exports(m, did) == [("chidi", reason)], m.name
        res = CliRunner().invoke(client_cli, ["doc", "list", "--json"], env=_env(m))
        row = next(r for r in json.loads(res.output) if r["id"] == did)
        (exp,) = row["exports"]
        assert exp["by"] == "chidi" and exp["device"] == chidi_device and exp["reason"] == reason
        assert exp["at"].endswith("Z")
        res = CliRunner().invoke(client_cli, ["doc", "list"], env=_env(m))
        assert "exported 1 time, last by chidi" in res.output
    with Device.open(dana.home) as dev:  # the supervisor is told in 'status'
        notices = dev.status()["notices"]
    assert any("chidi exported confidential document" in n and reason in n for n in notices), notices
    with Device.open(amina.home) as dev:  # a member is not
        assert not any("exported confidential" in n for n in dev.status()["notices"])

    said = [json.dumps(e) for e in admin.audit_log(team.data)]  # office IT's audit: who and when, not why
    assert any("wrote confidential document " + did[:6] in e and "chidi" in e for e in said), said
    assert any("marked document " + did[:6] + " confidential" in e for e in said)
    assert not any(reason in e for e in said)

    ev = tmp_path / "evidence.hbwe"  # and an auditor sees it, even without the team key
    auditing.export(dana.home, dana.passphrase, ev)
    r = evidence.verify(ev.read_bytes())
    assert r.ok, r.problems
    assert any(e.member == "chidi" and any(c.kind == "doc" and c.fields.get("exported") is True for c in e.changes)
               for e in r.entries)


def test_the_mark_survives_a_merge_with_concurrent_edits(team: Team, tmp_path: Path) -> None:
    dana, chidi = team.pair()
    f = tmp_path / "minutes.txt"
    f.write_bytes(b"Minutes, draft 1.\n" * 50)
    with chidi.open() as rep:
        did = rep.add_doc(f).id
    _sync_all(chidi, dana)
    # Offline at the same time: the author marks it, the supervisor saves a new version and re-attaches it.
    with chidi.open() as rep:
        rep.mark_confidential(did)
    f.write_bytes(b"Minutes, draft 2.\n" * 50)
    with dana.open() as rep:
        task = rep.add_task("Council minutes").id
        rep.update_doc(did, f)
        rep.change([(Kind.DOC, bytes.fromhex(did), {"task": bytes.fromhex(task)})])
    _sync_all(dana, chidi)
    states = []
    for m in (dana, chidi):
        with m.open() as rep:
            d = rep.doc(did)
            assert d.confidential and d.versions == 2 and d.task == task
            assert rep.doc_bytes(did)[1] == b"Minutes, draft 2.\n" * 50
            assert rep.check() == []
            states.append((d.confidential, d.confidential_by, d.sha256))
    assert states[0] == states[1]
