"""The merge rule: how replicas that saw the same ops in any order reach the same state.

Each field of an entity is a register holding ``(value, stamp)``. A stamp is the
op's *effective* timestamp (its HLC capped by the relay's receive time, see
``hlc.effective``) followed by its op id; comparing stamps is a total order that
every replica computes the same way, so:

* **LWW** fields keep the value with the greatest stamp (ties between equal
  timestamps fall to the op id, i.e. the device id: arbitrary but the same
  everywhere);
* **APPEND** fields (notes) keep every value, keyed by op id.

Both are commutative, associative and idempotent, so applying a set of ops in
any order, or twice, gives one state. Assignment has a richer policy on top of
this (a later module); this is the base rule every field falls back to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from . import hlc
from .ops import FIELDS, Kind, Merge, Op


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

    def values(self) -> dict[str, Any]:
        """Field values by name; APPEND fields as lists in op-id order."""
        specs = FIELDS[self.kind]
        out: dict[str, Any] = {specs[t].name: v for t, (v, _) in self.registers.items()}
        for t, items in self.appends.items():
            out[specs[t].name] = [items[k] for k in sorted(items)]
        return out


def apply_op(state: EntityState | None, op: Op, stamp: Stamp) -> EntityState:
    """Fold one op into an entity's state (in place when given one) and return it."""
    if state is None:
        state = EntityState(op.kind, op.entity)
    elif state.kind != op.kind or state.entity != op.entity:
        raise ValueError("op applied to the wrong entity")
    specs = FIELDS[op.kind]
    for section in (op.fields, op.content or {}):
        for tag, value in section.items():
            if specs[tag].merge is Merge.APPEND:
                state.appends.setdefault(tag, {})[stamp.op_id] = value
            else:
                state.registers[tag] = lww(state.registers.get(tag), value, stamp)
    if state.head is None or stamp > state.head:
        state.head = stamp
    return state


def fold(items: Iterable[tuple[Op, Stamp]]) -> dict[tuple[Kind, bytes], EntityState]:
    """Apply ops (with their stamps) in the given order; the result does not depend on it."""
    states: dict[tuple[Kind, bytes], EntityState] = {}
    for op, stamp in items:
        key = (op.kind, op.entity)
        states[key] = apply_op(states.get(key), op, stamp)
    return states
