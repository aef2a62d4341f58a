"""What changed, without unlocking (issue 11 item 4): a scheduled sync runs locked, and `status` tells
what the routing metadata can (tasks moved to or from me and by whom, new tasks, due dates, settled
conflicts); notices follow the settled state, never a step on the way.

A real relay on loopback, real device stores, the real CLI (CliRunner, no mocks).
"""

from __future__ import annotations

import datetime as dt
import json

from click.testing import CliRunner

from hbw_sync.client import Device
from hbw_sync.client.cli import cli as client_cli
from hbw_sync.ops import date_to_day

from relay_helpers import Member, Team


def enrolled(team: Team, *names: str) -> dict[str, Member]:
    ms = {n: team.join(n, "supervisor" if n == "dana" else "member") for n in names}
    ms["dana"].sync()  # shares the key
    for n in names:
        ms[n].sync()
    for n in names:  # everyone knows everyone's device
        ms[n].sync()
    return ms


def status(m: Member, *args: str) -> str:
    res = CliRunner().invoke(client_cli, ["status", *args],
                             env={"HBW_SYNC_HOME": str(m.home), "HBW_PASSPHRASE": None})
    assert res.exit_code == 0, res.output
    return res.output


def test_moved_away_twice_tells_where_it_ended_locked_and_unlocked(team: Team) -> None:
    """Seen: chidi gave amina's task to bosco, bosco gave it to chidi; the notice said "to bosco by chidi"."""
    ms = enrolled(team, "dana", "amina", "bosco", "chidi")
    with ms["dana"].open() as rep:
        tid = rep.add_task("Inspect ward 4", assignee="amina").id
    for n in ("dana", "amina", "bosco", "chidi"):
        ms[n].sync()
    with ms["chidi"].open() as rep:
        rep.assign(tid, "bosco")
    ms["chidi"].sync()
    ms["bosco"].sync()
    with ms["bosco"].open() as rep:
        rep.assign(tid, "chidi")
    ms["bosco"].sync()

    ms["amina"].sync(unlocked=False)  # the scheduled sync: no passphrase
    out = status(ms["amina"])
    assert "2 changes received; unlock to read them" in out
    assert f"Task {tid[:6]} moved from you to chidi by bosco" in out
    assert "bosco by chidi" not in out
    assert "No new conflicts" not in out  # what waits is not yet merged with this device's history
    as_json = json.loads(status(ms["amina"], "--json"))
    assert as_json["received"]["from_me"] == [{"task": tid[:6], "to": "chidi", "by": "bosco"}]
    assert as_json["received"]["changes"] == 2 and as_json["received"]["unread_batches"] == 0

    with ms["amina"].open():  # unlocking applies what came in
        pass
    with Device.open(ms["amina"].home) as dev:
        s = dev.status()
    assert s["received"] is None
    moved = [n for n in s["notices"] if tid[:6] in n]
    assert moved == [f"task {tid[:6]} was reassigned to chidi by bosco; what you wrote on it is kept"]
    out = status(ms["amina"])
    assert "reassigned to chidi by bosco" in out and "No new conflicts." in out


def test_new_task_and_due_date_for_me_while_locked(team: Team) -> None:
    ms = enrolled(team, "dana", "amina")
    today = date_to_day(dt.date.today())
    with ms["dana"].open() as rep:
        old = rep.add_task("Old one", assignee="amina").id
    ms["dana"].sync()
    ms["amina"].sync()
    with ms["dana"].open() as rep:
        new = rep.add_task("Budget letter", assignee="amina", due=today + 2).id
        rep.edit_task(old, due=today + 5)
        rep.add_task("Not mine", assignee="dana")
    ms["dana"].sync()
    ms["amina"].sync(unlocked=False)
    out = status(ms["amina"])
    due_new = (dt.date.today() + dt.timedelta(days=2)).isoformat()
    due_old = (dt.date.today() + dt.timedelta(days=5)).isoformat()
    assert f"New task {new[:6]} for you, from dana, due {due_new}." in out
    assert f"Task {old[:6]}: due date now {due_old}." in out
    assert "Not mine" not in out and "Budget letter" not in out  # titles are sealed content
    assert "show once you unlock" in out
    with ms["amina"].open():
        pass
    with Device.open(ms["amina"].home) as dev:
        notices = dev.status()["notices"]
    assert notices == [f'new task {new[:6]} "Budget letter" for you, from dana']


def test_a_settled_conflict_shows_locked(team: Team) -> None:
    """Dana (supervisor) gives amina's task to chidi while chidi, offline, gives it to bosco."""
    ms = enrolled(team, "dana", "amina", "bosco", "chidi")
    with ms["dana"].open() as rep:
        tid = rep.add_task("Reconcile invoices", assignee="amina").id
    for n in ("dana", "amina", "bosco", "chidi"):
        ms[n].sync()
    with ms["dana"].open() as rep:
        rep.assign(tid, "chidi")
    with ms["chidi"].open() as rep:
        rep.assign(tid, "bosco")
    ms["dana"].sync()
    ms["chidi"].sync()
    ms["amina"].sync(unlocked=False)
    out = status(ms["amina"])
    assert f"Task {tid[:6]} moved from you to chidi by dana" in out
    assert (f"Conflict settled on task {tid[:6]}: assignee is chidi (by dana); bosco (by chidi) lost: "
            "a supervisor's change beats a member's.") in out
    assert "No new conflicts" not in out
    with ms["amina"].open():
        pass
    out = status(ms["amina"])
    assert "changes received" not in out and "lost to 'chidi' by dana" in out
