"""The team at a glance on a supervisor's device: workload per member, and rebalancing suggestions.

Why here and not only at the relay: Dana plans offline too. Her device holds every task and
every profile (decrypted), so it can count open, late and urgent work per member and run the
same deterministic planner the relay runs (``hbw_sync.allocation``, PROTOCOL.md §18a) to
*suggest* moves, each with its reason; she applies one with ``Replica.assign``, an ordinary
signed change. What the device cannot know is when each member's devices last reached the
relay, so it counts everyone as reachable (as the planner counts unknown answers: work is not
moved on a guess); the relay's own rebalancing adds that rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import allocation
from ..ops import Priority, Status
from . import views
from .replica import Replica


@dataclass(frozen=True)
class MemberLoad:
    member: str
    open: int
    late: int
    urgent: int
    capacity: int
    away_until: str | None

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass(frozen=True)
class Suggestion:
    task: str  # full id
    title: str
    from_member: str | None
    to_member: str
    reason: str
    kind: str  # "stuck" or "balance"

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _task_info(t: views.TaskView) -> allocation.TaskInfo:
    return allocation.TaskInfo(bytes.fromhex(t.id), t.assignee, views.parse_status(t.status),
                               views.parse_date(t.due) if t.due else None, views.parse_priority(t.priority),
                               views.parse_needs(",".join(t.needs)) if t.needs else 0, t.pinned)


def _member_info(p: dict[str, Any], now_ms: int) -> allocation.MemberInfo:
    return allocation.MemberInfo(
        p["member"], True, p["laptop"], p["internet"],
        views.parse_days(",".join(p["office_days"]) or "none"),
        views.parse_date(p["away_until"]) if p["away_until"] else None,
        last_seen_ms=now_ms, role=p["role"], capacity=p["capacity"], takes_work=p["takes_work"])


def workload(rep: Replica, today: str, default_capacity: int = allocation.DEFAULT_CAPACITY) -> list[MemberLoad]:
    """Per member: open tasks (not done), late ones (due before ``today``, YYYY-MM-DD), urgent ones."""
    tasks = rep.tasks()
    out = []
    for p in rep.members():
        mine = [t for t in tasks if t.assignee == p["member"] and t.status != views.STATUS_NAMES[Status.DONE]]
        out.append(MemberLoad(
            p["member"], len(mine), sum(1 for t in mine if t.due and t.due < today),
            sum(1 for t in mine if t.priority == views.PRIORITY_NAMES[Priority.URGENT]),
            p["capacity"] or default_capacity, p["away_until"]))
    return out


def suggestions(rep: Replica, now_ms: int, max_moves: int | None = 20) -> tuple[list[Suggestion], list[tuple[str, str]]]:
    """Moves the planner proposes (stuck work first, then evening the load), and tasks nobody can take (why)."""
    tasks = rep.tasks()
    titles = {t.id: t.title for t in tasks}
    plan = allocation.plan([_task_info(t) for t in tasks], [_member_info(p, now_ms) for p in rep.members()],
                           now_ms, allocation.Options(max_moves=max_moves))
    moves = [Suggestion(m.task.hex(), titles.get(m.task.hex(), ""), m.from_member, m.to_member, m.reason, m.kind)
             for m in plan.moves]
    stuck = [(titles.get(t.hex(), t.hex()[:6]), why) for t, why in plan.stuck]
    return moves, stuck


def apply_suggestion(rep: Replica, task: str, from_member: str | None, to_member: str) -> views.TaskView | None:
    """Give ``task`` to ``to_member`` if it is still held by ``from_member``; None if someone moved it since."""
    t = rep.task(task)
    if t.assignee != from_member:
        return None
    return rep.assign(t.id, to_member)


def conflicts(rep: Replica) -> list[tuple[views.TaskView, dict[str, Any]]]:
    """Every settled conflict on the team's listed tasks, with its task (the words are the store's)."""
    out = []
    for t in rep.tasks():
        out += [(t, c) for c in rep.task(t.id).conflicts]
    return out
