"""What came in, told to the person: notices on the settled state, and what a locked device can know.

Two jobs, one rule: a notice follows where a task *ended*, never a step on the way. (Seen: a
moved-away notice said a task went "to bosco by chidi" because it was written for the first of
two batches; the second gave it to chidi.) So

* unlocked, ``Settler`` notes each task's assignee before the first op of an apply run touches
  it, and writes notices once, from the merged state at the end of the run;
* locked (after a scheduled sync), ``locked_preview`` reads only the routing section of each
  batch waiting in the inbox (assignee, status, due date: what the relay may read too), checks its
  signature with the sender's key from the roster, folds those ops with the same merge rules, and
  compares the result with the plain routing columns this device holds.

What a locked device cannot know, and says: titles, notes and documents (content is sealed with
the team key, which the passphrase opens), and how what came in merges with this device's own
history: the entity state it merges into is sealed too. The preview folds only the received ops
over the plain columns, so a received change that loses to one of this device's own (a conflict
the merge settles on unlock) shows as the received side.
"""

from __future__ import annotations

from typing import Any

from .. import batch as wire
from .. import merge
from ..errors import HbwError
from ..i18n import _, ngettext
from ..ops import NAMES, Kind, Status, day_to_date
from .notices import WORDS
from .store import Store

_ASSIGNEE = NAMES[Kind.TASK]["assignee"].tag
MAX_EACH = 5  # tasks given to me in one run told one by one; more are counted in one notice


def assignee_setter(st: merge.EntityState) -> bytes | None:
    """The device whose change gave the task its current assignee (the POLICY winner)."""
    reg = st.registers.get(_ASSIGNEE)
    return None if reg is None else reg[1].op_id[8:]


def who_key(device: bytes | None, names: dict[bytes, str], relay_device: bytes | None) -> str:
    """Who set a value, as a notice param: a member's name, or a word (``notices.WORDS``) said when shown."""
    if device is not None and device == relay_device:
        return "@relay"
    return names.get(device, "@colleague") if device is not None else "@colleague"


def who(device: bytes | None, names: dict[bytes, str], relay_device: bytes | None) -> str:
    if device is not None and device == relay_device:
        return _("rebalancing at the office")
    return names.get(device, _("a colleague")) if device is not None else _("a colleague")


class Settler:
    """Assignees of tasks before an apply run; notices from where they settled after it."""

    def __init__(self, store: Store, me: str | None) -> None:
        self.store = store
        self.me = me
        self.before: dict[bytes, str | None] = {}
        self.new: set[bytes] = set()

    def saw(self, entity: bytes, before: merge.EntityState | None) -> None:
        """Called before the first op of the run touches a task (later calls change nothing)."""
        if entity in self.before:
            return
        self.before[entity] = before.values().get("assignee") if before is not None else None
        if before is None:
            self.new.add(entity)

    def notices(self, states: dict[bytes, merge.EntityState], names: dict[bytes, str],
                relay_device: bytes | None) -> list[tuple[str, str, dict[str, Any]]]:
        """(English sentence, code, params) of each notice: stored so, worded when shown (notices.py)."""
        out, mine = [], []
        for entity, was in self.before.items():
            st = states.get(entity)
            if st is None:
                continue
            now = st.values().get("assignee")
            if now == was:
                continue
            by = who_key(assignee_setter(st), names, relay_device)
            task, by_en = entity.hex()[:6], WORDS.get(by, by)
            if was == self.me:
                params: dict[str, Any] = {"task": task, "to": now or "@nobody", "by": by}
                out.append((f"task {task} was reassigned to {now or 'nobody'} by {by_en}; what you wrote on it is kept",
                            "notice.reassigned", params))
            elif now == self.me:
                title = st.values().get("title") or ""
                code = "notice.new_task" if entity in self.new else "notice.given"
                english = (f'new task {task} "{title}" for you, from {by_en}' if entity in self.new
                           else f'task {task} "{title}" was given to you by {by_en}')
                mine.append((english, code, {"task": task, "title": title, "by": by}))
        if len(mine) > MAX_EACH:  # a first sync may bring a whole list of work: one line, not fifty
            mine = [(f"{len(mine)} tasks were given to you", "notice.many_given", {"n": len(mine)})]
        return out + mine


def _author_public(store: Store, device: bytes) -> bytes | None:
    if device == store.meta("device_id"):
        return None  # our own batches come back only as acknowledgements
    if device == _relay_device(store):
        return store.meta("relay_public")
    entry = (store.meta("roster_keys") or {}).get(device.hex())
    return entry[1] if entry else None


def _relay_device(store: Store) -> bytes | None:
    from .. import crypto

    pub = store.meta("relay_public")
    return crypto.device_id_for(pub) if pub else None


def _rank(store: Store, device: bytes, relay: bytes | None) -> int:
    if device == relay:
        return merge.RANK_RELAY
    entry = (store.meta("roster_keys") or {}).get(device.hex())
    return merge.RANK_SUPERVISOR if entry and len(entry) > 4 and entry[4] == "supervisor" else merge.RANK_MEMBER


def _day(day: int | None) -> str | None:
    return None if day is None else day_to_date(day).isoformat()


def locked_preview(store: Store) -> dict[str, Any]:
    """What the inbox holds, from routing metadata alone; no passphrase needed.

    Returns ``changes`` (ops received, to apply at the next unlock), ``batches``, ``unread``
    (batches whose routing could not be checked locked: a sender not in the roster yet, or a
    batch that fails its checks; unlocking reports those), and for tasks whose settled routing
    differs from what this device holds: ``to_me``, ``from_me``, ``due`` and ``conflicts``, each a
    list of dicts with the task's short id and the people involved.
    """
    me = store.meta("member")
    relay = _relay_device(store)
    names = {bytes.fromhex(k): v for k, v in (store.meta("roster") or {}).items()}
    names[store.meta("device_id")] = me
    items: list[tuple[Any, merge.Stamp, int]] = []
    batches = unread = changes = 0
    for rseq, device, rcv in store.execute("SELECT rseq, device, received_ms FROM inbox ORDER BY rseq").fetchall():
        batches += 1
        data = store.execute("SELECT data FROM inbox WHERE rseq = ?", (rseq,)).fetchone()[0]
        pub = _author_public(store, device)
        try:
            if pub is None:
                raise HbwError(_("sender unknown while locked"))
            frame = wire.parse_batch(data)
            frame.verify(pub)
            ops = frame.routing_ops()
        except HbwError:
            unread += 1
            continue
        finally:
            del data
        changes += len(ops)
        rank = _rank(store, device, relay)
        items += [(op, merge.stamp_for(op, device, rcv), rank) for op in ops if op.kind is Kind.TASK]
    states = merge.fold(items)
    to_me, from_me, due, conflicts = [], [], [], []
    for (_kind, entity), st in sorted(states.items(), key=lambda kv: kv[0][1]):
        row = store.execute("SELECT assignee, due FROM entities WHERE kind = ? AND id = ?",
                            (int(Kind.TASK), entity)).fetchone()
        was, was_due = (row[0], row[1]) if row else (None, None)
        vals = st.values()
        short = entity.hex()[:6]
        now = vals.get("assignee", was)
        by = who(assignee_setter(st), names, relay) if "assignee" in vals else None
        if "assignee" in vals and now != was:
            if now == me:
                to_me.append({"task": short, "by": by, "new": row is None, "due": _day(vals.get("due", was_due))})
            elif was == me:
                from_me.append({"task": short, "to": now, "by": by})
        if "due" in vals and vals["due"] != was_due and now == me and not (row is None and "assignee" in vals):
            due.append({"task": short, "due": _day(vals["due"])})
        for c in st.conflicts():
            conflicts.append({"task": short, "field": c.field, "kept": _show(c.field, c.winner_value),
                              "kept_by": names.get(c.winner[8:], c.winner[8:].hex()[:8]),
                              "lost": _show(c.field, c.loser_value),
                              "lost_by": names.get(c.loser[8:], c.loser[8:].hex()[:8]), "rule": c.rule})
    return {"batches": batches, "changes": changes, "unread_batches": unread, "to_me": to_me,
            "from_me": from_me, "due": due, "conflicts": conflicts}


def _show(field: str, value: Any) -> Any:
    if field == "due":
        return _day(value)
    if field == "status" and isinstance(value, int):
        return Status(value).name.lower()
    return value


__all__ = ["Settler", "locked_preview", "assignee_setter", "who"]
