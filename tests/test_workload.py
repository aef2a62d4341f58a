"""client/workload.py: the Team page's numbers and suggestions, on a real store (no browser)."""

from __future__ import annotations

from hbw_sync.client import Device, views, workload
from hbw_sync.client.device import now_ms
from hbw_sync.ops import Status
from relay_helpers import FAST_KDF, STRONG


def supervisor(tmp_path):
    home, pp = tmp_path / "dana", f"dana {STRONG}"
    Device.init(home, "dana", pp, kdf=FAST_KDF).close()
    dev = Device.open(home)
    rep = dev.unlock(pp)
    rep.create_team("District Finance")
    return dev, rep


def test_counts_open_late_and_urgent_per_member(tmp_path):
    dev, rep = supervisor(tmp_path)
    with dev:
        rep.add_task("overdue", assignee="amina", due=views.parse_date("2026-11-30"))
        rep.add_task("urgent", assignee="amina", priority=3)
        done = rep.add_task("finished and late", assignee="amina", due=views.parse_date("2026-11-01"), priority=3)
        rep.set_status(done.id, Status.DONE)
        rep.add_task("plain", assignee="chidi")
        loads = {m.member: m for m in workload.workload(rep, today="2026-12-02")}
    assert (loads["amina"].open, loads["amina"].late, loads["amina"].urgent) == (2, 1, 1)  # done work counts nowhere
    assert (loads["chidi"].open, loads["chidi"].late, loads["chidi"].urgent) == (1, 0, 0)
    assert loads["dana"].open == 0 and loads["amina"].capacity == 10


def test_suggestions_say_why_and_a_stale_one_is_not_applied(tmp_path):
    dev, rep = supervisor(tmp_path)
    with dev:
        for i in range(5):
            rep.add_task(f"case {i}", assignee="amina")
        rep.add_task("register", assignee="chidi")
        moves, stuck = workload.suggestions(rep, now_ms())
        assert moves and all(m.from_member == "amina" and m.to_member == "chidi" for m in moves)
        assert "evens the load" in moves[0].reason and moves[0].title.startswith("case") and stuck == []
        first, second = moves[0], moves[1]
        assert workload.apply_suggestion(rep, first.task, "amina", "chidi").assignee == "chidi"
        rep.assign(second.task, "bosco")  # someone moved it since the page was drawn
        assert workload.apply_suggestion(rep, second.task, "amina", "chidi") is None
        assert rep.task(second.task).assignee == "bosco"
