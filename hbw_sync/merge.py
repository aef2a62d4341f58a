"""The merge rule: how replicas that saw the same ops in any order reach the same state.

Each field of an entity is a register holding ``(value, stamp)``. A stamp is the
op's *effective* timestamp (its HLC capped by the relay's receive time, see
``hlc.effective``) followed by its op id; comparing stamps is a total order that
every replica computes the same way, so:

* **LWW** fields keep the value with the greatest stamp (ties between equal
  timestamps fall to the op id, i.e. the device id: arbitrary but the same
  everywhere);
* **APPEND** fields (notes) keep every value, keyed by op id.

* **POLICY** fields (a task's assignee and status) keep every change with the
  revision its author had seen. Two changes are *concurrent* when neither
  author had seen the other's (the later one's base revision is older than the
  earlier one). Of the changes nobody has superseded, the winner is:
  for status, ``done`` if any of them is done (a task marked done stays done);
  otherwise, and for the assignee, the highest author rank (supervisor 2 >
  member 1 > relay rebalancing 0), then the greatest stamp. Every concurrent
  pair is a conflict, recorded with its winner: never silently dropped.

All three are functions of the *set* of ops applied (LWW and APPEND are
commutative, associative and idempotent; POLICY recomputes its winner and its
conflicts from the whole history), so applying a set of ops in any order, or
twice, gives one state and one list of conflicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from . import hlc
from .ops import FIELDS, Kind, Merge, Op, Status

RANK_RELAY = 0
RANK_MEMBER = 1
RANK_SUPERVISOR = 2


@dataclass(frozen=True, order=True)
class Stamp:
    ts: int
    op_id: bytes


def stamp_for(op: Op, device: bytes, received_ms: int | None = None, max_skew_ms: int = hlc.DEFAULT_MAX_SKEW_MS) -> Stamp:
    """The stamp an op carries in the merge, given where the relay placed it in time."""
    return Stamp(hlc.effective(op.hlc, received_ms, max_skew_ms), op.op_id(device))


def lww(current: tuple[Any, Stamp] | None, value: Any, stamp: Stamp) -> tuple[Any, Stamp]:
    """Last-writer-wins for one register."""
    if current is None or stamp > current[1]:
        return (value, stamp)
    return current


@dataclass
class EntityState:
    """The merged state of one entity. ``head`` is the greatest stamp applied (its revision)."""

    kind: Kind
    entity: bytes
    registers: dict[int, tuple[Any, Stamp]] = field(default_factory=dict)
    appends: dict[int, dict[bytes, Any]] = field(default_factory=dict)
    head: Stamp | None = None
    #: POLICY fields: op id -> [value, effective ts, base hlc (0: none), author rank]
    history: dict[int, dict[bytes, list[Any]]] = field(default_factory=dict)

    def conflicts(self) -> list["Conflict"]:
        """Every pair of concurrent changes to a POLICY field, with the one that won."""
        out = []
        for tag, hist in self.history.items():
            out += _conflicts(self.kind, tag, hist)
        return out

    def values(self) -> dict[str, Any]:
        """Field values by name; APPEND fields as lists in op-id order."""
        specs = FIELDS[self.kind]
        out: dict[str, Any] = {specs[t].name: v for t, (v, _) in self.registers.items()}
        for t, items in self.appends.items():
            out[specs[t].name] = [items[k] for k in sorted(items)]
        return out


@dataclass(frozen=True)
class Conflict:
    field: str
    winner: bytes  # op id
    loser: bytes
    winner_value: Any
    loser_value: Any
    rule: str


def _raw(op_id: bytes) -> int:
    return int.from_bytes(op_id[:8], "big")


def _saw(later: list[Any], earlier_id: bytes) -> bool:
    """Had the author of ``later`` seen the op ``earlier_id``? (Its base revision is at least as new.)"""
    return bool(later[2] >= _raw(earlier_id))


def _frontier(hist: dict[bytes, list[Any]]) -> list[bytes]:
    """The changes no other change superseded."""
    return [k for k, v in hist.items() if not any(o != k and _saw(w, k) for o, w in hist.items())]


def _key(tag_name: str, op_id: bytes, entry: list[Any]) -> tuple[Any, ...]:
    if tag_name == "sha256":  # document versions: the later one wins whoever wrote it
        return (0, 0, entry[1], op_id)
    done_first = 1 if tag_name == "status" and entry[0] == int(Status.DONE) else 0
    return (done_first, entry[3], entry[1], op_id)


def policy_winner(kind: Kind, tag: int, hist: dict[bytes, list[Any]]) -> bytes:
    """The op id whose value a POLICY field takes; a pure function of its history."""
    name = FIELDS[kind][tag].name
    return max(_frontier(hist), key=lambda k: _key(name, k, hist[k]))


#: Each rule that settles a conflict: a stable code → its English words (``Conflict.rule``, in the
#: policy vectors). Front ends word the code in the person's language (``hbw_sync/messages.py``).
RULES: dict[str, str] = {
    "rule.versions": "both versions kept: the later is current, the other is a conflict copy",
    "rule.done_stays": "a task marked done stays done",
    "rule.supervisor": "a supervisor's change beats a member's",
    "rule.person": "a person's change beats automatic rebalancing",
    "rule.role": "higher role wins",
    "rule.later": "the later change wins (same role)",
}
RULE_CODES: dict[str, str] = {text: code for code, text in RULES.items()}


def _rule(name: str, w: list[Any], lo: list[Any]) -> str:
    if name == "sha256":
        return RULES["rule.versions"]
    if name == "status" and w[0] == int(Status.DONE) and lo[0] != int(Status.DONE):
        return RULES["rule.done_stays"]
    if w[3] != lo[3]:
        # By the pair of ranks, not the winner's alone: a supervisor over the relay is a person
        # beating rebalancing, not "a supervisor's change beats a member's" (PROTOCOL.md §11).
        if lo[3] == RANK_RELAY:
            return RULES["rule.person"]
        if w[3] == RANK_SUPERVISOR and lo[3] == RANK_MEMBER:
            return RULES["rule.supervisor"]
        return RULES["rule.role"]
    return RULES["rule.later"]


def _conflicts(kind: Kind, tag: int, hist: dict[bytes, list[Any]]) -> list[Conflict]:
    name = FIELDS[kind][tag].name
    ids = sorted(hist)
    out = []
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            ea, eb = hist[a], hist[b]
            if _saw(ea, b) or _saw(eb, a) or ea[0] == eb[0]:
                continue  # ordered, or concurrent but agreeing: nothing was lost
            w, lo = (a, b) if _key(name, a, ea) > _key(name, b, eb) else (b, a)
            out.append(Conflict(name, w, lo, hist[w][0], hist[lo][0], _rule(name, hist[w], hist[lo])))
    return out


def apply_op(state: EntityState | None, op: Op, stamp: Stamp, rank: int = RANK_MEMBER) -> EntityState:
    """Fold one op into an entity's state (in place when given one) and return it.

    ``rank`` is the author's role (RANK_*), used by POLICY fields only.
    """
    if state is None:
        state = EntityState(op.kind, op.entity)
    elif state.kind != op.kind or state.entity != op.entity:
        raise ValueError("op applied to the wrong entity")
    specs = FIELDS[op.kind]
    for section in (op.fields, op.content or {}):
        for tag, value in section.items():
            merge_rule = specs[tag].merge
            if merge_rule is Merge.APPEND:
                state.appends.setdefault(tag, {})[stamp.op_id] = value
            elif merge_rule is Merge.POLICY:
                hist = state.history.setdefault(tag, {})
                hist[stamp.op_id] = [value, stamp.ts, _raw(op.base) if op.base else 0, rank]
                win = policy_winner(op.kind, tag, hist)
                state.registers[tag] = (hist[win][0], Stamp(hist[win][1], win))
            else:
                state.registers[tag] = lww(state.registers.get(tag), value, stamp)
    if state.head is None or stamp > state.head:
        state.head = stamp
    return state


def fold(items: Iterable[tuple[Op, Stamp]] | Iterable[tuple[Op, Stamp, int]]) -> dict[tuple[Kind, bytes], EntityState]:
    """Apply ops (with their stamps, and optionally ranks) in the given order; the result does not depend on it."""
    states: dict[tuple[Kind, bytes], EntityState] = {}
    for item in items:
        op, stamp = item[0], item[1]
        key = (op.kind, op.entity)
        states[key] = apply_op(states.get(key), op, stamp, *item[2:])
    return states


def state_to_wire(st: EntityState, drop: frozenset[int] = frozenset()) -> list[Any]:
    """A msgpack-friendly form of a state (``drop``: register tags whose values are kept elsewhere)."""
    regs = {t: [None if t in drop else v, s.ts, s.op_id] for t, (v, s) in st.registers.items()}
    head = [st.head.ts, st.head.op_id] if st.head else None
    return [int(st.kind), st.entity, regs, st.appends, head, st.history]


def state_from_wire(obj: list[Any]) -> EntityState:
    kind_v, ent, regs, apps, head, hist = obj
    st = EntityState(Kind(kind_v), ent)
    st.registers = {t: (v, Stamp(ts, oid)) for t, (v, ts, oid) in regs.items()}
    st.appends = {t: dict(items) for t, items in apps.items()}
    st.head = Stamp(*head) if head else None
    st.history = {t: {k: list(v) for k, v in h.items()} for t, h in hist.items()}
    return st
