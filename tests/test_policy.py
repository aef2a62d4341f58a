"""Task reallocation: concurrent reassignments settle the same way everywhere; rebalancing moves stuck work.

All through a real relay on loopback and real device stores (tests/relay_helpers.py).
"""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hbw_sync import batch as wire
from hbw_sync import crypto
from hbw_sync.client import Device
from hbw_sync.client.cli import cli as client_cli
from hbw_sync.errors import IntegrityError
from hbw_sync.ops import Kind, Need, Status, date_to_day, make_op
from hbw_sync.server import admin
from hbw_sync.server.board import RELAY_KEY
from hbw_sync.server.cli import cli as relay_cli

from relay_helpers import Member, Team



def enrolled(team: Team, *names: str, supervisor: str = "dana") -> dict[str, Member]:
    ms = {n: team.join(n, "supervisor" if n == supervisor else "member") for n in names}
    ms[supervisor].sync()  # shares the key
    for n in names:
        ms[n].sync()
    return ms


def task_view(m: Member, tid: str) -> dict:
    with m.open() as rep:
        return rep.task(tid).to_dict()


def sync_all(ms: dict[str, Member], rounds: int = 2) -> None:
    for _ in range(rounds):
        for m in ms.values():
            m.sync()


def test_wednesday_concurrent_reassignment(team: Team) -> None:
    """Dana (supervisor, offline) gives Amina's task to Chidi; Chidi (offline) gives it to Bosco."""
    ms = enrolled(team, "dana", "amina", "bosco", "chidi")
    with ms["dana"].open() as rep:
        tid = rep.add_task("Reconcile invoices", assignee="amina", needs=int(Need.LAPTOP)).id
    sync_all(ms, 1)
    with ms["dana"].open() as rep:
        rep.assign(tid, "chidi")
    with ms["chidi"].open() as rep:
        rep.assign(tid, "bosco")
    order = list(ms.values())
    random.Random(3).shuffle(order)
    sync_all({m.name: m for m in order}, 2)
    views = {n: task_view(m, tid) for n, m in ms.items()}
    assert {v["assignee"] for v in views.values()} == {"chidi"}  # a supervisor's change beats a member's
    for v in views.values():
        assert len(v["conflicts"]) == 1 and "supervisor" in v["conflicts"][0]["detail"]
    rows = admin.conflicts(team.data)
    assert len(rows) == 1 and rows[0]["winner"] == {"value": "chidi", "by": "dana"}
    assert rows[0]["loser"] == {"value": "bosco", "by": "chidi"}
    # Chidi learns it in plain words at his next status.
    res = CliRunner().invoke(client_cli, ["status"], env={"HBW_SYNC_HOME": str(ms["chidi"].home), "HBW_PASSPHRASE": None})
    assert "lost to 'chidi' by dana" in res.output and "supervisor" in res.output


def test_done_stays_done_and_same_role_later_wins(team: Team) -> None:
    ms = enrolled(team, "dana", "amina", "chidi")
    with ms["dana"].open() as rep:
        t1 = rep.add_task("one", assignee="amina").id
        t2 = rep.add_task("two", assignee="amina").id
    sync_all(ms, 1)
    with ms["amina"].open() as rep:
        rep.set_status(t1, Status.DONE)
    with ms["chidi"].open() as rep:
        rep.set_status(t1, Status.IN_PROGRESS)  # later, but concurrent: done still wins
        rep.assign(t2, "chidi")
    with ms["amina"].open() as rep:
        rep.assign(t2, "amina")  # even later, same role: the later change wins
    sync_all(ms, 2)
    for m in ms.values():
        v1, v2 = task_view(m, t1), task_view(m, t2)
        assert v1["status"] == "done" and "stays done" in v1["conflicts"][0]["detail"]
        assert v2["assignee"] == "amina" and "later change wins" in v2["conflicts"][0]["detail"]


def test_a_change_made_after_seeing_another_is_no_conflict(team: Team) -> None:
    ms = enrolled(team, "dana", "amina")
    with ms["dana"].open() as rep:
        tid = rep.add_task("x", assignee="amina").id
    sync_all(ms, 1)
    with ms["amina"].open() as rep:
        rep.assign(tid, "dana")  # a member hands it back after seeing the supervisor's assignment
    sync_all(ms, 2)
    for m in ms.values():
        v = task_view(m, tid)
        assert v["assignee"] == "dana" and v["conflicts"] == []
    assert admin.conflicts(team.data) == []


def test_task_moved_away_while_offline_keeps_what_its_holder_wrote(team: Team, tmp_path: Path) -> None:
    ms = enrolled(team, "dana", "amina", "chidi")
    with ms["dana"].open() as rep:
        tid = rep.add_task("Inspect ward 4", assignee="amina").id
    sync_all(ms, 1)
    with ms["dana"].open() as rep:
        rep.assign(tid, "chidi")
    ms["dana"].sync()
    with ms["amina"].open() as rep:  # offline, unaware
        rep.note(tid, "visited two stalls already")
        rep.edit_task(tid, description="Stalls 1-2 done, 3-9 to go")
        (tmp_path / "notes.txt").write_text("stall 1 ok\n")
        rep.add_doc(tmp_path / "notes.txt", task=tid)
    ms["amina"].sync()
    with Device.open(ms["amina"].home) as dev:
        notices = dev.status()["notices"]
    assert any("reassigned to chidi by dana" in n for n in notices)  # after "new task ... for you"
    ms["chidi"].sync()
    v = task_view(ms["chidi"], tid)
    assert v["assignee"] == "chidi" and v["description"] == "Stalls 1-2 done, 3-9 to go"
    assert [n["text"] for n in v["notes"]] == ["visited two stalls already"] and len(v["docs"]) == 1


def _set_profile(m: Member, **values) -> None:
    with m.open() as rep:
        rep.set_profile(**values)


def test_rebalancing_moves_stuck_work_to_who_can_do_it(team: Team) -> None:
    ms = enrolled(team, "dana", "amina", "bosco", "chidi")
    today = date_to_day(__import__("datetime").date.today())
    _set_profile(ms["bosco"], laptop=False, internet=False, office_days=0b0001001)  # mon, thu
    _set_profile(ms["amina"], laptop=True, internet=True, away_until=today + 3)      # ill
    _set_profile(ms["chidi"], laptop=True, internet=True)
    _set_profile(ms["dana"], laptop=True, internet=True, takes_work=True)
    with ms["dana"].open() as rep:
        laptop_work = rep.add_task("Spreadsheet", assignee="bosco", needs=int(Need.LAPTOP), priority=2).id
        urgent = rep.add_task("Urgent letter", assignee="amina", needs=int(Need.INTERNET), priority=3).id
        pinned = rep.add_task("Pinned", assignee="amina").id
        rep.edit_task(pinned, pinned=True)
        done = rep.add_task("Done already", assignee="amina").id
        rep.set_status(done, Status.DONE)
        paper = rep.add_task("Paper files", assignee="bosco", needs=int(Need.OFFICE), due=today + 7).id
    sync_all(ms, 1)
    plan = admin.rebalance(team.data)
    moves = {m["task"][:16]: m for m in plan["moves"]}
    assert plan["applied"] is False and set(moves) == {laptop_work, urgent}
    assert moves[laptop_work]["to"] in ("chidi", "dana") and "laptop" in moves[laptop_work]["reason"]
    assert moves[urgent]["to"] in ("chidi", "dana") and "away" in moves[urgent]["reason"]
    assert all(m["to"] not in ("amina", "bosco") for m in plan["moves"])  # away, or lacks a laptop
    assert moves[laptop_work]["to"] != moves[urgent]["to"]  # load is balanced
    # Revoked members never receive work.
    devs = {d["member"]: d["device"] for d in admin.devices(team.data)}
    admin.revoke(team.data, devs["chidi"])
    plan = admin.rebalance(team.data, apply=True)
    assert plan["applied"] and {m["to"] for m in plan["moves"]} == {"dana"}
    assert admin.rebalance(team.data)["moves"] == []  # a second run proposes nothing
    for name in ("dana", "amina", "bosco"):
        ms[name].sync()
        with ms[name].open() as rep:
            assert rep.task(laptop_work).assignee == "dana" and rep.task(urgent).assignee == "dana"
            assert rep.task(pinned).assignee == "amina" and rep.task(done).assignee == "amina"
            assert rep.task(paper).assignee == "bosco"
    with Device.open(ms["amina"].home) as dev:
        assert any("rebalancing" in n for n in dev.status()["notices"])
    work = {w["member"]: w for w in admin.workload(team.data)}
    assert work["dana"]["open"] == 2 and work["bosco"]["laptop"] is False and work["bosco"]["office_days"] == ["mon", "thu"]


def test_a_person_beats_concurrent_rebalancing(team: Team) -> None:
    ms = enrolled(team, "dana", "amina", "chidi")
    _set_profile(ms["amina"], laptop=False)
    with ms["dana"].open() as rep:
        tid = rep.add_task("laptop work", assignee="amina", needs=int(Need.LAPTOP)).id
    sync_all(ms, 1)
    with ms["chidi"].open() as rep:
        rep.assign(tid, "dana")  # offline: chidi hands it to dana himself
    assert admin.rebalance(team.data, apply=True)["moves"][0]["to"] == "chidi"  # least loaded, then by name
    sync_all(ms, 2)
    for m in ms.values():
        assert task_view(m, tid)["assignee"] == "dana"
    assert "automatic rebalancing" in admin.conflicts(team.data)[0]["rule"]


def test_relay_signed_batch_may_only_move_tasks(team: Team) -> None:
    ms = enrolled(team, "dana", "amina")
    with ms["dana"].open() as rep:
        tid = bytes.fromhex(rep.add_task("x", assignee="amina").id)
    sync_all(ms, 1)
    key = crypto.DeviceKey((team.data / "relay.key").read_bytes())
    with ms["amina"].open() as rep:
        team_id = rep.require_team()
        bad = make_op(Kind.TASK, tid, 1 << 60, None, assignee="amina", priority=0)
        data = wire.encode_batch(wire.Batch(team_id, key.device_id, 9, 0, (bad,)), key, RELAY_KEY)
        with pytest.raises(IntegrityError, match="more than a task's assignee"):
            rep.apply_batch(data, key.public)
        # and no member may send an unsealed (epoch 0) batch as if it were the relay
        fake = wire.encode_batch(wire.Batch(team_id, rep.author.device_id, 99, 0, (bad,)), rep.author, RELAY_KEY)
        with pytest.raises(IntegrityError, match="only the relay"):
            rep.apply_batch(fake, rep.author.public)


def test_relay_cli_rebalance_workload_conflicts(team: Team) -> None:
    ms = enrolled(team, "dana", "bosco")
    _set_profile(ms["bosco"], laptop=False)
    _set_profile(ms["dana"], takes_work=True)
    ms["bosco"].sync()
    with ms["dana"].open() as rep:
        rep.add_task("needs laptop", assignee="bosco", needs=int(Need.LAPTOP))
    ms["dana"].sync()
    run = lambda *a: CliRunner().invoke(relay_cli, [*a, "--data", str(team.data)], catch_exceptions=False)  # noqa
    res = run("rebalance")
    assert res.exit_code == 0 and "Dry run" in res.output and "needs a laptop; bosco has none" in res.output
    res = run("rebalance", "--apply", "--json")
    assert json.loads(res.stdout)["applied"] is True
    assert "Nothing to move" in run("rebalance").output
    work = json.loads(run("workload", "--json").stdout)
    assert {w["member"]: w["open"] for w in work} == {"bosco": 0, "dana": 1}
    assert run("conflicts").output.strip() == "No conflicts."
    assert run("rebalance", "--stale-after", "soon").exit_code == 2


# -- the property: any offline changes, any sync order, one state everywhere ------------------------------

MEMBERS = ("dana", "amina", "chidi")
action = st.tuples(
    st.sampled_from(MEMBERS),
    st.sampled_from(["assign", "status", "priority", "note", "sync"]),
    st.integers(0, 2),  # which task
    st.sampled_from(MEMBERS + ("bosco",)),
    st.integers(0, 3),
)


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(actions=st.lists(action, min_size=5, max_size=20), final_order=st.permutations(MEMBERS))
def test_random_offline_changes_converge_everywhere(tmp_path_factory, actions, final_order) -> None:
    tmp = tmp_path_factory.mktemp("prop")
    with Team(tmp) as team:
        ms = enrolled(team, *MEMBERS)
        with ms["dana"].open() as rep:
            tids = [rep.add_task(f"task {i}", assignee="amina").id for i in range(3)]
        sync_all(ms, 1)
        for who, kind, ti, member, n in actions:
            m = ms[who]
            if kind == "sync":
                m.sync()
                continue
            with m.open() as rep:
                if kind == "assign":
                    rep.assign(tids[ti], member)
                elif kind == "status":
                    rep.set_status(tids[ti], Status(n))
                elif kind == "priority":
                    rep.edit_task(tids[ti], priority=n)
                else:
                    rep.note(tids[ti], f"{who} {n}")
        for _ in range(2):
            for name in final_order:
                ms[name].sync()
        states, conflict_sets = [], []
        for m in ms.values():
            with m.open() as rep:
                states.append([(t.id, t.assignee, t.status, t.priority, sorted(n.text for n in t.notes))
                               for t in rep.tasks()])
                conflict_sets.append(sorted((e.hex(), f, lo.hex()) for e, f, lo in rep.store.execute(
                    "SELECT entity, field, loser FROM conflicts")))
        assert states[0] == states[1] == states[2]
        assert conflict_sets[0] == conflict_sets[1] == conflict_sets[2]
        # The relay's board agrees on every assignee and status, and recorded the same conflicts.
        conn = sqlite3.connect(team.data / "relay.db")
        admin.workload(team.data)  # brings the board up to date
        board = {e.hex(): (a, s) for e, a, s in conn.execute("SELECT entity, assignee, status FROM board WHERE kind = 1")}
        relay_conflicts = sorted((e.hex(), f, lo.hex()) for e, f, lo in conn.execute(
            "SELECT entity, field, loser FROM conflicts"))
        conn.close()
        names = {int(s): s.name.lower() for s in Status}
        assert {tid: (a, s) for tid, a, s, *_ in states[0]} == {k: (a, names[s]) for k, (a, s) in board.items()}
        assert relay_conflicts == conflict_sets[0]
