"""Rebalancing: which tasks cannot progress where they sit, who could do them, and an even spread (sans-IO).

Why: some officials have a laptop and internet at home, some only an office day
or two a week, some fall ill. Work that needs a laptop must not wait on someone
without one; office-only work should go to someone who will be in the office
before it is due; and nobody should end up with twice the work of a colleague
of the same capacity because the robot picked them by name. The relay runs this
over the routing metadata it holds (it never needs content) and proposes moves,
each with a reason a supervisor can read. Normative rules: PROTOCOL.md §18a.

Rules (all deterministic: the same inputs give the same plan):

* **Load** is a member's open tasks (not done) relative to their *capacity*
  (``profile --capacity``; the team default when not said). Priority decides
  the order tasks are placed in, not how much they weigh.
* A member **receives** work when they have an active device, are not away,
  are reachable (seen recently, or an office day soon), are not excluded for
  this run, and are not a supervisor, unless that supervisor opted in
  (``profile --takes-work``). ``to`` narrows the receivers to one member, who
  receives even as a supervisor: naming them is the opt-in.
* A task is **stuck** when it is open or in progress, not pinned, and its
  holder cannot progress it: away with the task due before they are back (or
  urgent with no due date), unreachable, revoked, or lacking what it needs
  (laptop, internet, an office day before the due date; no laptop and no
  internet means office days only). Unknown profile answers count as yes: work
  is not moved on a guess.
* Stuck tasks are placed first, most urgent first (priority, then due date);
  each goes to the receiver who can do it and whose load after taking it is
  lowest (ties: lower load now, then name). A task nobody can take stays, and
  is reported with why.
* Then the spread is evened: while a receiver holds more than one task above
  another's share (``n_a / c_a > (n_b + 1) / c_b``), one *open* (not started),
  unpinned task that the lighter one can do moves, least urgent first. Each
  such move lowers the sorted list of loads, so this ends; when it ends no
  receiver is more than one task above another, unless the heavier one's
  remaining tasks are ones the lighter one cannot do (in progress, pinned, or
  needing what they lack).
* ``max_moves`` bounds the moves of one run (stuck tasks first); the plan says
  how many were left for the next run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from fractions import Fraction

from .errors import UsageError
from .ops import Need, Priority, Status, WEEKDAYS, day_to_date
from .i18n import _

DAY_MS = 86_400_000
#: Open tasks a member holds at full load when they have not said (``hbw-relay rebalance --default-capacity``).
DEFAULT_CAPACITY = 10
DEFAULT_STALE_MS = 72 * 3_600_000


@dataclass(frozen=True)
class MemberInfo:
    name: str
    active: bool = True  # has a device that is not revoked
    laptop: bool | None = None
    internet: bool | None = None
    office_days: int = 0  # bit 0 = Monday
    away_until: int | None = None  # day number (days since 1970)
    last_seen_ms: int | None = None
    role: str = "member"
    capacity: int | None = None  # None: the team default
    takes_work: bool | None = None  # supervisors only: opted in to receiving work


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
class Options:
    """One run's choices: who may receive, how many moves, the defaults."""

    to: str | None = None
    exclude: frozenset[str] = frozenset()
    max_moves: int | None = None
    default_capacity: int = DEFAULT_CAPACITY
    stale_ms: int = DEFAULT_STALE_MS


@dataclass(frozen=True)
class Move:
    task: bytes
    from_member: str | None
    to_member: str
    reason: str  # in words: why it moves and why to this member
    kind: str = "stuck"  # "stuck": it could not progress where it sat; "balance": evens the load


@dataclass
class Plan:
    moves: list[Move] = field(default_factory=list)
    stuck: list[tuple[bytes, str]] = field(default_factory=list)  # nobody can take these: (task, why)
    left_out: dict[str, str] = field(default_factory=dict)  # member -> why they receive nothing this run
    loads: dict[str, tuple[int, int]] = field(default_factory=dict)  # receiver -> (open tasks after, capacity)
    moves_left: int = 0  # moves that would have followed past max_moves (at least this many)


def _office_day_between(m: MemberInfo, first: int, last: int) -> bool:
    for day in range(first, min(last, first + 6) + 1):
        if m.office_days & (1 << day_to_date(day).weekday()):
            return True
    return False


def _horizon(t: TaskInfo, today: int) -> int:
    return t.due if t.due is not None and t.due >= today else today + 6


def _can_wait_for_return(m: MemberInfo, t: TaskInfo) -> bool:
    """An absent holder keeps a task due after they are back (with a day to spare), unless it is urgent and undated."""
    assert m.away_until is not None
    if t.due is None:
        return t.priority < int(Priority.URGENT)
    return t.due > m.away_until + 1


def blocker(m: MemberInfo | None, t: TaskInfo, today: int, now_ms: int, stale_ms: int) -> str | None:
    """Why member ``m`` cannot progress task ``t`` (None: they can)."""
    if m is None:
        return "holder is not a team member"
    if not m.active:
        return f"{m.name} has no active device"
    if m.away_until is not None and m.away_until >= today and not _can_wait_for_return(m, t):
        back = day_to_date(m.away_until).isoformat()
        if t.due is None:
            return f"{m.name} is away until {back} and it is urgent"
        return f"{m.name} is away until {back} and it is due {day_to_date(t.due).isoformat()}"
    if t.needs & Need.LAPTOP and m.laptop is False:
        return f"needs a laptop; {m.name} has none"
    if t.needs & Need.INTERNET and m.internet is False:
        return f"needs internet; {m.name} has none at home"
    horizon = _horizon(t, today)
    office_soon = _office_day_between(m, today, horizon)
    if t.needs & Need.OFFICE and not office_soon:
        return f"needs the office; {m.name} has no office day before {day_to_date(horizon).isoformat()}"
    if m.laptop is False and m.internet is False and not office_soon:
        return f"{m.name} works only at the office and has no office day before {day_to_date(horizon).isoformat()}"
    if m.last_seen_ms is None or now_ms - m.last_seen_ms > stale_ms:
        if not office_soon:
            seen = "never synced" if m.last_seen_ms is None else \
                f"not seen for {(now_ms - m.last_seen_ms) // 3_600_000} h"
            return f"{m.name} is unreachable ({seen})"
    return None


def left_out(m: MemberInfo, today: int, now_ms: int, opts: Options) -> str | None:
    """Why ``m`` receives no work in this run (None: they may receive)."""
    if opts.to is not None and m.name != opts.to:
        return f"this run gives work only to {opts.to}"
    if m.name in opts.exclude:
        return "excluded for this run"
    if not m.active:
        return "has no active device"
    if m.away_until is not None and m.away_until >= today:
        return f"away until {day_to_date(m.away_until).isoformat()}"
    if m.role == "supervisor" and m.takes_work is not True and opts.to != m.name:
        return "a supervisor who has not opted in to receiving work (hbw-sync profile --takes-work)"
    office_this_week = _office_day_between(m, today, today + 6)
    if m.laptop is False and m.internet is False and not office_this_week:
        return "works only at the office and has no office day this week"
    if (m.last_seen_ms is None or now_ms - m.last_seen_ms > opts.stale_ms) and not office_this_week:
        seen = "never synced" if m.last_seen_ms is None else f"not seen for {(now_ms - m.last_seen_ms) // 3_600_000} h"
        return f"unreachable: {seen} and no office day this week"
    return None


def capacity(m: MemberInfo, opts: Options) -> int:
    return m.capacity if m.capacity else opts.default_capacity


def open_counts(tasks: list[TaskInfo]) -> dict[str, int]:
    """Open (not done) tasks per holder: the load rebalancing evens out."""
    load: dict[str, int] = {}
    for t in tasks:
        if t.assignee and t.status != int(Status.DONE):
            load[t.assignee] = load.get(t.assignee, 0) + 1
    return load


class _Run:
    """One planning run's mutable state: who holds what now, and the moves so far."""

    def __init__(self, tasks: list[TaskInfo], members: list[MemberInfo], now_ms: int, today: int, opts: Options):
        self.now_ms, self.today, self.opts = now_ms, today, opts
        self.by_name = {m.name: m for m in members}
        self.cap = {m.name: capacity(m, opts) for m in members}
        self.load = open_counts(tasks)
        self.holder = {t.id: t.assignee for t in tasks}
        self.tasks = tasks
        self.out = Plan()

    def n(self, name: str) -> int:
        return self.load.get(name, 0)

    def ratio(self, name: str, extra: int = 0) -> Fraction:
        return Fraction(self.n(name) + extra, self.cap[name])

    def can(self, m: MemberInfo | None, t: TaskInfo) -> str | None:
        return blocker(m, t, self.today, self.now_ms, self.opts.stale_ms)

    def full(self) -> bool:
        return self.opts.max_moves is not None and len(self.out.moves) >= self.opts.max_moves

    def move(self, t: TaskInfo, to: str, reason: str, kind: str) -> None:
        src = self.holder[t.id]
        if src is not None:
            self.load[src] = self.n(src) - 1
        self.load[to] = self.n(to) + 1
        self.holder[t.id] = to
        self.out.moves.append(Move(t.id, src, to, reason, kind))


def plan(tasks: list[TaskInfo], members: list[MemberInfo], now_ms: int, opts: Options | None = None,
         today: int | None = None) -> Plan:
    """Moves that unblock stuck tasks, then even the load; see the module docstring for the rules.

    Raises:
        UsageError (``usage.rebalance_target``): ``opts.to`` names nobody in the team, or someone
            who cannot receive work now (no active device, away, unreachable).
    """
    opts = opts or Options()
    today = today if today is not None else now_ms // DAY_MS
    run = _Run(tasks, members, now_ms, today, opts)
    out = run.out
    ordered = sorted(members, key=lambda m: m.name)
    for m in ordered:
        why = left_out(m, today, now_ms, opts)
        if why is not None:
            out.left_out[m.name] = why
    if opts.to is not None:
        if opts.to not in run.by_name:
            raise UsageError(_("{to!r} is not a member of this team").format(to=opts.to), code="usage.rebalance_target",
                             hint=_("see 'hbw-relay members'"))
        if opts.to in out.left_out:
            raise UsageError(_("{to} cannot receive work now: {v}").format(to=opts.to, v=out.left_out[opts.to]),
                             code="usage.rebalance_target")
    receivers = [m for m in ordered if m.name not in out.left_out]
    # Donors for evening out: whoever would receive in an ordinary run (under ``to``, they give to that one).
    plain = Options(None, opts.exclude, None, opts.default_capacity, opts.stale_ms)
    donors = [m for m in ordered if left_out(m, today, now_ms, plain) is None]

    movable = [t for t in tasks if t.status != int(Status.DONE) and not t.pinned and t.assignee is not None]
    movable.sort(key=lambda t: (-t.priority, t.due if t.due is not None else 1 << 40, t.id))
    stuck_why: dict[bytes, str] = {}
    for t in movable:
        why = run.can(run.by_name.get(t.assignee or ""), t)
        if why is None:
            continue
        candidates = [m for m in receivers if m.name != t.assignee and run.can(m, t) is None]
        if not candidates:
            out.stuck.append((t.id, why + "; nobody who receives work in this run can take it"))
            continue
        if run.full():
            out.moves_left += 1
            continue
        best = min(candidates, key=lambda m: (run.ratio(m.name, 1), run.ratio(m.name), m.name))
        who = "is the only one who can do it" if len(candidates) == 1 else \
            "has the lightest load of those who can do it"
        run.move(t, best.name, f"{why}; {best.name} {who} ({run.n(best.name)} open of {run.cap[best.name]} before)",
                 "stuck")
        stuck_why[t.id] = why

    # Evening out considers the stuck tasks just placed too: a later stuck task that only one member
    # can do may land on the one who took an earlier, unconstrained one, and a second run must then
    # find nothing left to do (seen: "gone"'s task placed on bosco, then two internet-only tasks).
    by_id = {t.id: t for t in tasks}
    for _attempt in range(len(tasks) * max(1, len(members)) + 1):  # a bound the ordering argument never reaches
        step = _balance_step(run, donors, receivers, by_id)
        if step is None:
            break
        if run.full():
            out.moves_left += 1
            break
        t, d, r = step
        run.move(t, r, f"evens the load: {d} holds {run.n(d)} open tasks for a capacity of {run.cap[d]}, "
                       f"{r} {run.n(r)} of {run.cap[r]}", "balance")
    out.moves = _collapse(out.moves, stuck_why)
    out.loads = {m.name: (run.n(m.name), run.cap[m.name]) for m in receivers}
    return out


def _balance_step(run: _Run, donors: list[MemberInfo], receivers: list[MemberInfo],
                  tasks: dict[bytes, TaskInfo]) -> tuple[TaskInfo, str, str] | None:
    """The next evening move (task, from, to), or None when no receiver is more than one task above another."""
    for d in sorted(donors, key=lambda m: (-run.ratio(m.name), m.name)):
        theirs = None
        for r in sorted(receivers, key=lambda m: (run.ratio(m.name, 1), m.name)):
            if r.name == d.name:
                continue
            if not run.ratio(d.name) > run.ratio(r.name, 1):
                break  # receivers are in order: no later one is lighter
            if theirs is None:
                theirs = [t for t in tasks.values() if run.holder[t.id] == d.name and t.status == int(Status.OPEN)
                          and not t.pinned]
                theirs.sort(key=lambda t: (t.priority, -(t.due if t.due is not None else 1 << 40), t.id))
            for t in theirs:
                if run.can(r, t) is None:
                    return t, d.name, r.name
    return None


def _collapse(moves: list[Move], stuck_why: dict[bytes, str]) -> list[Move]:
    """One move per task: a task evened twice in a run goes from its first holder to its last (none if back home).

    A stuck task that evening out moved on stays a "stuck" move, told by why it could not stay."""
    first: dict[bytes, Move] = {}
    last: dict[bytes, Move] = {}
    for m in moves:
        first.setdefault(m.task, m)
        last[m.task] = m
    out = []
    for task, m in first.items():
        end = last[task]
        if end is m:
            out.append(m)
        elif task in stuck_why:
            out.append(Move(task, m.from_member, end.to_member,
                            f"{stuck_why[task]}; {end.to_member} has the lightest load of those who can do it",
                            "stuck"))
        elif end.to_member != m.from_member:
            out.append(Move(task, m.from_member, end.to_member, end.reason, end.kind))
    return out


def weekday_names(bits: int) -> list[str]:
    return [d for i, d in enumerate(WEEKDAYS) if bits & (1 << i)]


def today_day(now_ms: int) -> int:
    return (dt.datetime.fromtimestamp(now_ms / 1000, dt.timezone.utc).date() - dt.date(1970, 1, 1)).days
