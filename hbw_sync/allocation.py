"""Rebalancing: which tasks cannot progress where they sit, and who could do them (sans-IO).

Why: some officials have a laptop and internet at home, some only an office day
or two a week, some fall ill. Work that needs a laptop must not wait on someone
without one; office-only work should go to someone who will be in the office
before it is due. The relay runs this over the routing metadata it holds (it
never needs content) and proposes moves, each with a reason a supervisor can
read.

Rules (all deterministic: the same inputs give the same plan):

* A task is *stuck* when it is open or in progress, not pinned, and its holder
  is away, unreachable (not seen for longer than the threshold and no office
  day before the due date), revoked, or lacks what it needs (laptop, internet,
  an office day before the due date).
* A member can take a task when they have an active device, are not away, are
  reachable, and have what it needs. Unknown profile answers count as yes: work
  is not moved on a guess.
* Stuck tasks are placed most urgent first (priority, then due date); each goes
  to the capable member with the least open work (weighted by priority), ties
  by name. A task nobody can take stays, and is reported.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from .ops import Need, Status, WEEKDAYS, day_to_date

DAY_MS = 86_400_000
PRIORITY_WEIGHT = {0: 1, 1: 2, 2: 3, 3: 5}


@dataclass(frozen=True)
class MemberInfo:
    name: str
    active: bool = True  # has a device that is not revoked
    laptop: bool | None = None
    internet: bool | None = None
    office_days: int = 0  # bit 0 = Monday
    away_until: int | None = None  # day number (days since 1970)
    last_seen_ms: int | None = None


@dataclass(frozen=True)
class TaskInfo:
    id: bytes
    assignee: str | None
    status: int = int(Status.OPEN)
    due: int | None = None
    priority: int = 1
    needs: int = 0
    pinned: bool = False


@dataclass(frozen=True)
class Move:
    task: bytes
    from_member: str | None
    to_member: str
    reason: str


@dataclass
class Plan:
    moves: list[Move] = field(default_factory=list)
    stuck: list[tuple[bytes, str]] = field(default_factory=list)  # nobody can take these: (task, why)


def _office_day_between(m: MemberInfo, first: int, last: int) -> bool:
    for day in range(first, min(last, first + 6) + 1):
        if m.office_days & (1 << day_to_date(day).weekday()):
            return True
    return False


def _horizon(t: TaskInfo, today: int) -> int:
    return t.due if t.due is not None and t.due >= today else today + 6


def blocker(m: MemberInfo | None, t: TaskInfo, today: int, now_ms: int, stale_ms: int) -> str | None:
    """Why member ``m`` cannot progress task ``t`` (None: they can)."""
    if m is None:
        return "holder is not a team member"
    if not m.active:
        return f"{m.name} has no active device"
    if m.away_until is not None and m.away_until >= today:
        return f"{m.name} is away until {day_to_date(m.away_until).isoformat()}"
    if t.needs & Need.LAPTOP and m.laptop is False:
        return f"needs a laptop; {m.name} has none"
    if t.needs & Need.INTERNET and m.internet is False:
        return f"needs internet; {m.name} has none at home"
    horizon = _horizon(t, today)
    office_soon = _office_day_between(m, today, horizon)
    if t.needs & Need.OFFICE and not office_soon:
        return f"needs the office; {m.name} has no office day before {day_to_date(horizon).isoformat()}"
    if m.last_seen_ms is None or now_ms - m.last_seen_ms > stale_ms:
        if not office_soon:
            seen = "never synced" if m.last_seen_ms is None else \
                f"not seen for {(now_ms - m.last_seen_ms) // 3_600_000} h"
            return f"{m.name} is unreachable ({seen})"
    return None


def _load(tasks: list[TaskInfo]) -> dict[str, int]:
    load: dict[str, int] = {}
    for t in tasks:
        if t.assignee and t.status != int(Status.DONE):
            load[t.assignee] = load.get(t.assignee, 0) + PRIORITY_WEIGHT.get(t.priority, 2)
    return load


def plan(tasks: list[TaskInfo], members: list[MemberInfo], now_ms: int, stale_ms: int = 72 * 3_600_000,
         today: int | None = None) -> Plan:
    """Moves that unblock stuck tasks, balancing open work; see the module docstring for the rules."""
    today = today if today is not None else now_ms // DAY_MS
    by_name = {m.name: m for m in members}
    load = _load(tasks)
    out = Plan()
    movable = [t for t in tasks if t.status != int(Status.DONE) and not t.pinned and t.assignee is not None]
    movable.sort(key=lambda t: (-t.priority, t.due if t.due is not None else 1 << 40, t.id))
    for t in movable:
        why = blocker(by_name.get(t.assignee or ""), t, today, now_ms, stale_ms)
        if why is None:
            continue
        candidates = [m for m in members if m.name != t.assignee and blocker(m, t, today, now_ms, stale_ms) is None]
        if not candidates:
            out.stuck.append((t.id, why + "; nobody else can take it"))
            continue
        best = min(candidates, key=lambda m: (load.get(m.name, 0), m.name))
        weight = PRIORITY_WEIGHT.get(t.priority, 2)
        load[best.name] = load.get(best.name, 0) + weight
        if t.assignee in load:
            load[t.assignee] -= weight
        out.moves.append(Move(t.id, t.assignee, best.name, why))
    return out


def weekday_names(bits: int) -> list[str]:
    return [d for i, d in enumerate(WEEKDAYS) if bits & (1 << i)]


def today_day(now_ms: int) -> int:
    return (dt.datetime.fromtimestamp(now_ms / 1000, dt.timezone.utc).date() - dt.date(1970, 1, 1)).days
