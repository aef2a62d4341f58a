"""Archiving and deleting tasks: hidden from lists, rebalancing and workload; a delete wins and is kept.

Real stores, a real relay on a loopback port, and the real CLI through CliRunner.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hbw_sync.client import Device
from hbw_sync.client.cli import cli as client_cli
from hbw_sync.errors import ProtocolError, UsageError
from hbw_sync.ops import Kind, make_op
from hbw_sync.server import admin
from relay_helpers import FAST_KDF, Team

PASS = "orchid lantern 52 ferry"


@pytest.fixture
def team(tmp_path: Path):
    with Team(tmp_path) as t:
        yield t


def test_deleted_is_true_only_on_the_wire() -> None:
    make_op(Kind.TASK, b"t" * 8, 1, deleted=True)
    for bad in (False, None, 1):
        with pytest.raises(ProtocolError) as e:
            make_op(Kind.TASK, b"t" * 8, 1, deleted=bad)
        assert e.value.code == "protocol.schema"


def test_archive_hides_and_undo_brings_back(tmp_path: Path) -> None:
    with Device.init(tmp_path / "h", "dana", PASS, kdf=FAST_KDF) as dev:
        rep = dev.unlock(PASS)
        rep.create_team("District Finance")
        a = rep.add_task("Permits", assignee="dana")
        rep.add_task("Budget", assignee="dana")
        rep.archive_task(a.id)
        assert [t.title for t in rep.tasks()] == ["Budget"]
        assert [t.title for t in rep.tasks(archived=True)] == ["Permits"]
        assert rep.task(a.id).archived
        rep.archive_task(a.id, undo=True)
        assert sorted(t.title for t in rep.tasks()) == ["Budget", "Permits"]
        assert rep.check() == []


def test_delete_wins_over_a_concurrent_edit_and_leaves_workload(team: Team) -> None:
    dana, chidi = team.pair()
    with dana.open() as rep:
        tid = rep.add_task("Stamp permits", assignee="chidi").id
        keep = rep.add_task("File returns", assignee="chidi").id
    dana.sync()
    chidi.sync()
    work = {w["member"]: w for w in admin.workload(team.data)}
    assert work["chidi"]["open"] == 2
    # Offline at the same time: Dana deletes, Chidi edits and notes the same task.
    with dana.open() as rep:
        rep.delete_task(tid[:6])
    with chidi.open() as rep:
        rep.edit_task(tid, title="Stamp permits (ward 2)")
        rep.note(tid, "Half of them stamped already")
    for m in (chidi, dana, chidi, dana):
        m.sync()
    for m in (dana, chidi):
        with m.open() as rep:
            assert [t.id for t in rep.tasks()] == [keep]
            t = rep.task(tid)
            assert t.deleted and t.deleted_by.startswith("dana at ")
            # nothing is lost: the concurrent edit and note are kept in the history
            assert t.title == "Stamp permits (ward 2)" and t.notes[0].text == "Half of them stamped already"
            with pytest.raises(UsageError) as e:
                rep.edit_task(tid, priority=3)
            assert e.value.code == "usage.deleted"
            assert rep.check() == []
    # It stays in the relay's audit: who deleted which task, from which device, when it arrived.
    deletes = [a for a in admin.audit_log(team.data) if a["action"] == "task_delete"]
    assert len(deletes) == 1 and deletes[0]["actor"] == "dana" and deletes[0]["detail"]["task"] == tid
    assert deletes[0]["what"].startswith(f"deleted task {tid[:6]} from device ")
    work = {w["member"]: w for w in admin.workload(team.data)}
    assert work["chidi"]["open"] == 1
    assert all(m["task"] != tid for m in admin.rebalance(team.data)["moves"])


def test_only_a_supervisor_deletes(team: Team) -> None:
    dana, chidi = team.pair()
    with dana.open() as rep:
        tid = rep.add_task("Permits", assignee="chidi").id
    dana.sync()
    chidi.sync()
    with chidi.open() as rep:
        with pytest.raises(UsageError) as e:
            rep.delete_task(tid)
        assert e.value.code == "usage.not_supervisor"
        assert not rep.task(tid).deleted


def _run(home: Path, *args: str, ok: bool = True):
    env = {"HBW_SYNC_HOME": str(home), "HBW_PASSPHRASE": PASS}
    res = CliRunner().invoke(client_cli, list(args), env=env, catch_exceptions=False)
    assert (res.exit_code == 0) == ok, res.output
    return res


def test_cli_archive_delete_and_list(tmp_path: Path) -> None:
    home = tmp_path / "h"
    with Device.init(home, "dana", PASS, kdf=FAST_KDF) as dev:
        dev.unlock(PASS).create_team("District Finance")
    a = json.loads(_run(home, "task", "add", "Permits", "--json").stdout)["id"]
    b = json.loads(_run(home, "task", "add", "Budget", "--json").stdout)["id"]
    assert "archived" in _run(home, "task", "archive", a[:6]).stdout
    assert "Permits" not in _run(home, "task", "list").stdout
    assert "Permits" in _run(home, "task", "list", "--archived").stdout
    # no terminal to confirm on: refused, nothing deleted
    res = _run(home, "task", "delete", b[:6], ok=False)
    assert res.exit_code == 2 and "--yes" in res.output
    assert "Budget" in _run(home, "task", "list").stdout
    # one bad id: nothing is deleted
    assert _run(home, "task", "delete", b[:6], "ffff", "--yes", ok=False).exit_code == 2
    assert "Budget" in _run(home, "task", "list").stdout
    assert "deleted" in _run(home, "task", "delete", b[:6], "--yes").stdout
    assert "No tasks." in _run(home, "task", "list").stdout
    shown = _run(home, "task", "show", b[:6]).stdout
    assert "Deleted:     yes, by dana" in shown
    assert _run(home, "task", "edit", b[:6], "--priority", "high", ok=False).exit_code == 2
    assert _run(home, "check").exit_code == 0
