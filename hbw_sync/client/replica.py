"""The unlocked replica: every change an official makes, and every query, as one library call.

A Replica is composed of parts, each given what it needs in its constructor (STYLE.md §3):

* ``ledger`` (``Ledger``): the sealed state at rest: team keys, who is who, entities, the op
  log, blobs, problems;
* ``versions`` (``Versions``): the bytes of document versions held here, the fetch policy;
* ``changes`` (``ChangeLog``): making a change (stamp, merge, log, outbox), the outbox itself;
* ``documents`` (``Documents``): the document commands (add, update, list, get, confidential);
* ``incoming`` (``Incoming``): applying what syncs and bundles brought in; snapshots.

The task commands live here. Imports go one way: the front ends (cli, sync, app, bundles) ->
replica -> documents, incoming -> changes -> versions -> ledger -> store, vault; none of those
imports this module (tests/test_imports.py). The methods below that only forward to a part are
the library's public calls the front ends and tests make; new code may call the part directly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from .. import batch as wire
from .. import crypto, merge
from ..errors import UsageError
from ..ops import FIELDS, NAMES, Kind, Op, Status, is_member_name, split_op_id, validate_op
from . import notices, views
from .changes import OPEN_MAX_OPS, ChangeLog, Edit  # noqa: F401 - OPEN_MAX_OPS re-exported (tests)
from .locked import LockedDevice
from .documents import CHAIN_FULL_EVERY, MAX_DOC_BYTES, Documents  # noqa: F401 - re-exported
from .incoming import RELAY_KEY, Incoming  # noqa: F401 - RELAY_KEY re-exported (tests)
from .ledger import Ledger
from .store import Store
from .vault import Sealer
from .versions import Versions
from ..i18n import _

NAMES_TASK = NAMES[Kind.TASK]
_F = TypeVar("_F", bound=Callable[..., Any])


def _forwards(target: Callable[..., Any]) -> Callable[[_F], _F]:
    """A forwarding method shows its part's docstring (what it does, what it raises): one text, by the code."""
    def mark(method: _F) -> _F:
        method.__doc__ = target.__doc__
        return method
    return mark


class Replica(LockedDevice):
    """A device unlocked with its passphrase: reads and writes content.

    The front ends (CLI, app, tray) code against the ``Raises:`` sections below. Besides them,
    every method that writes may raise ``StoreError`` when this computer's disk fails
    (``store.disk_full``, ``store.io``, ``store.read_only``, ``store.busy``: nothing was changed),
    and ``ConfigError`` when the device is in no team yet. Any other exception is a bug.
    """

    def __init__(self, store: Store, store_key: bytes):
        super().__init__(store)
        self.sealer = Sealer(store_key)
        self.author = crypto.DeviceKey(self.sealer.open(store.meta("author_key"), b"meta:author_key"))
        self.ledger = Ledger(store, self.sealer, self.author)
        self.versions = Versions(self.ledger)
        self.changes = ChangeLog(self.ledger, self.versions)
        self.documents = Documents(self.ledger, self.versions, self.changes)
        self.incoming = Incoming(self.ledger, self.changes)

    # -- team and keys ---------------------------------------------------------------------------

    def create_team(self, name: str) -> None:
        """Start a team on this device alone, so the first official can work before any relay exists.

        Raises:
            UsageError: already in a team, or an empty name.
        """
        if self.store.meta("team_id") is not None:
            raise UsageError(_("this device is already in team {meta!r}").format(meta=self.store.meta('team_name')))
        if not name.strip():
            raise UsageError(_("the team name must not be empty"))
        key = crypto.TeamKey.generate(epoch=1)
        with self.store.transaction():
            self.store.set_meta("team_id", os.urandom(wire.TEAM_ID_LEN))
            self.store.set_meta("team_name", name.strip())
            self.store.set_meta("role", "supervisor")
            self.ledger.add_team_key(key)

    # -- forwarded to the parts: the library's public calls that the CLI, the app, sync, the tests
    # and the benchmarks make on a Replica. New code may call the part itself.

    @_forwards(Ledger.resolve)
    def resolve(self, kind: Kind, prefix: str) -> bytes:
        return self.ledger.resolve(kind, prefix)

    @_forwards(Ledger.add_team_key)
    def add_team_key(self, key: crypto.TeamKey) -> None:
        self.ledger.add_team_key(key)

    @_forwards(Ledger.team_keys)
    def team_keys(self) -> dict[int, crypto.TeamKey]:
        return self.ledger.team_keys()

    @_forwards(Ledger.current_key)
    def current_key(self) -> crypto.TeamKey:
        return self.ledger.current_key()

    @_forwards(ChangeLog.change)
    def change(self, edits: Sequence[Edit]) -> list[Op]:
        return self.changes.change(edits)

    @_forwards(ChangeLog.close_outbox)
    def close_outbox(self) -> None:
        self.changes.close_outbox()

    @_forwards(Incoming.apply_batch)
    def apply_batch(self, data: bytes, public_key: bytes, received_ms: int | None = None) -> int:
        return self.incoming.apply_batch(data, public_key, received_ms=received_ms)

    @_forwards(Incoming.apply_incoming)
    def apply_incoming(self) -> int:
        return self.incoming.apply_incoming()

    @_forwards(Documents.add_doc)
    def add_doc(self, path: Path, task: str | None = None, name: str | None = None) -> views.DocView:
        return self.documents.add_doc(path, task, name)

    @_forwards(Documents.update_doc)
    def update_doc(self, prefix: str, path: Path) -> views.DocView:
        return self.documents.update_doc(prefix, path)

    @_forwards(Documents.doc)
    def doc(self, prefix: str) -> views.DocView:
        return self.documents.doc(prefix)

    @_forwards(Documents.docs)
    def docs(self) -> list[views.DocView]:
        return self.documents.docs()

    @_forwards(Documents.doc_info)
    def doc_info(self, prefix: str, version: int | None = None) -> views.DocView:
        return self.documents.doc_info(prefix, version)

    @_forwards(Documents.doc_bytes)
    def doc_bytes(self, prefix: str, version: int | None = None) -> tuple[views.DocView, bytes]:
        return self.documents.doc_bytes(prefix, version)

    @_forwards(Documents.save_doc)
    def save_doc(self, prefix: str, out: Path, version: int | None = None,
                 reason: str | None = None) -> tuple[views.DocView, int]:
        return self.documents.save_doc(prefix, out, version, reason)

    @_forwards(Documents.export_doc)
    def export_doc(self, prefix: str, version: int | None = None,
                   reason: str | None = None) -> tuple[views.DocView, bytes]:
        return self.documents.export_doc(prefix, version, reason)

    @_forwards(Documents.export_stream)
    def export_stream(self, prefix: str, version: int | None = None,
                      reason: str | None = None) -> tuple[views.DocView, int, Iterator[bytes]]:
        return self.documents.export_stream(prefix, version, reason)

    @_forwards(Documents.mark_confidential)
    def mark_confidential(self, prefix: str, confidential: bool = True) -> views.DocView:
        return self.documents.mark_confidential(prefix, confidential)

    @_forwards(Documents.check_export_reason)
    def check_export_reason(self, view: views.DocView, reason: str | None) -> str:
        return self.documents.check_export_reason(view, reason)

    @_forwards(Documents.doc_missing)
    def doc_missing(self, prefix: str, version: int | None = None) -> list[bytes]:
        return self.documents.doc_missing(prefix, version)

    @_forwards(Versions.doc_policy)
    def doc_policy(self) -> str:
        return self.versions.doc_policy()

    @_forwards(Versions.set_doc_policy)
    def set_doc_policy(self, policy: str) -> str:
        return self.versions.set_doc_policy(policy)

    # -- tasks ----------------------------------------------------------------------------------

    def add_task(
        self,
        title: str,
        description: str = "",
        assignee: str | None = None,
        due: int | None = None,
        priority: int = 1,
        needs: int = 0,
    ) -> views.TaskView:
        """Create one task (its own transaction) and return it as listed.

        Raises:
            UsageError: an empty title, an invalid member name, or a value out of range.
        """
        tid = self.add_tasks([dict(title=title, description=description, assignee=assignee, due=due, priority=priority, needs=needs)])[0]
        return self.task(tid.hex())

    def add_tasks(self, rows: Iterable[dict[str, Any]]) -> list[bytes]:
        """Create many tasks in one transaction (import). Each row: title and optional fields by name."""
        edits = []
        ids = []
        for r in rows:
            title = (r.get("title") or "").strip()
            if not title:
                raise UsageError(_("a task needs a title"))
            self._check_member(r.get("assignee"))
            tid = os.urandom(8)
            values = {"title": title, "status": int(Status.OPEN), "priority": r.get("priority", 1), "needs": r.get("needs", 0)}
            if r.get("description"):
                values["description"] = r["description"]
            for f in ("assignee", "due"):
                if r.get(f) is not None:
                    values[f] = r[f]
            edits.append((Kind.TASK, tid, values))
            ids.append(tid)
        self.changes.change(edits)
        return ids

    def _check_member(self, name: str | None) -> None:
        if name is not None and not is_member_name(name):
            raise UsageError(_("{name!r} is not a valid member name").format(name=name), hint=_("use 1-32 lowercase letters, digits, '.', '_' or '-'"))

    def edit_task(self, prefix: str, **values: Any) -> views.TaskView:
        """Change any task fields by name (title, description, assignee, status, due, priority, needs, pinned).

        Raises:
            UsageError: no such task (see ``resolve``), nothing to change, an empty title, an invalid
                member name or value, or a deleted task (``usage.deleted``). Nothing was changed.
        """
        tid = self.ledger.resolve(Kind.TASK, prefix)
        values = {k: v for k, v in values.items()}
        if "assignee" in values:
            self._check_member(values["assignee"])
        if not values:
            raise UsageError(_("nothing to change"), code="usage.nothing_to_change")
        if "title" in values and not (values["title"] or "").strip():
            raise UsageError(_("a task's title must not be empty"))
        st = self.ledger.load(Kind.TASK, tid)
        if st is not None and st.values().get("deleted"):
            who = self._who_when(st, "deleted", self.ledger.device_names())
            raise UsageError(_("task {v} was deleted (by {who}); nothing changed").format(v=tid.hex()[:6], who=who),
                             code="usage.deleted", hint=_("a deleted task cannot be changed; add a new one"))
        self.changes.change([(Kind.TASK, tid, values)])
        return self.task(tid.hex())

    def assign(self, prefix: str, member: str | None) -> views.TaskView:
        """Give the task to ``member`` (None: nobody). Raises as ``edit_task``."""
        return self.edit_task(prefix, assignee=member)

    def set_status(self, prefix: str, status: Status) -> views.TaskView:
        """Move the task to ``status``. Raises as ``edit_task``."""
        return self.edit_task(prefix, status=int(status))

    def note(self, prefix: str, text: str) -> views.TaskView:
        """Add a note to the task's history.

        Raises:
            UsageError: an empty note; otherwise as ``edit_task``.
        """
        if not text.strip():
            raise UsageError(_("a note must not be empty"))
        return self.edit_task(prefix, note=text)

    def task(self, prefix: str) -> views.TaskView:
        """One task with its documents and conflicts.

        Raises:
            UsageError: no such task, or an ambiguous prefix (see ``resolve``).
        """
        tid = self.ledger.resolve(Kind.TASK, prefix)
        st = self.ledger.load(Kind.TASK, tid)
        assert st is not None
        view = self._task_view(st)
        rows = self.store.execute("SELECT id, state FROM entities WHERE kind = ?", (int(Kind.DOC),)).fetchall()
        for did, _updated in rows:
            doc = self.ledger.load(Kind.DOC, did)
            if doc and doc.values().get("task") == tid:
                view.docs.append(did.hex())
        view.conflicts = [
            {"field": f, "detail": notices.shown(code, params, d), "at": views.iso_ms(t)}
            for f, d, t, code, params in self.store.execute(
                "SELECT field, detail, created_ms, code, params FROM conflicts WHERE kind = ? AND entity = ?",
                (int(Kind.TASK), tid)
            ).fetchall()
        ]
        return view

    def task_history(self, prefix: str) -> list[dict[str, Any]]:
        """Every change to a task, oldest first: when (ISO UTC), who (member), and each field set with its
        raw value (the app's task page shows them in words). Notes appear as the ``note`` field.

        Raises:
            UsageError: no such task.
        """
        tid = self.ledger.resolve(Kind.TASK, prefix)
        names, specs = self.ledger.device_names(), FIELDS[Kind.TASK]
        out = []
        for oid, body in self.store.execute(
            "SELECT op_id, body FROM oplog WHERE kind = ? AND entity = ? ORDER BY op_id", (int(Kind.TASK), tid)
        ).fetchall():
            op = self.ledger.op_from_log(oid, body)
            ts, dev = split_op_id(oid)
            values = {**op.fields, **(op.content or {})}
            out.append({"at": views.hlc_iso(ts), "by": names.get(dev, dev.hex()[:8]),
                        "changes": {specs[t].name: v for t, v in values.items() if t in specs}})
        return out

    def _task_view(self, st: merge.EntityState, names: dict[bytes, str] | None = None) -> views.TaskView:
        v = st.values()
        names = names if names is not None else self.ledger.device_names()
        notes = []
        for op_id, text in sorted(st.appends.get(FIELDS[Kind.TASK][34].tag, {}).items()):
            ts, dev = split_op_id(op_id)
            notes.append(views.NoteView(text, views.hlc_iso(ts), names.get(dev, dev.hex())))
        return views.TaskView(
            id=st.entity.hex(),
            title=v.get("title", ""),
            description=v.get("description", ""),
            assignee=v.get("assignee"),
            status=views.STATUS_NAMES[Status(v.get("status", 0))],
            due=views.format_day(v.get("due")),
            priority=views.PRIORITY_NAMES[v.get("priority", 1)],
            needs=views.needs_to_names(v.get("needs", 0)),
            pinned=bool(v.get("pinned", False)),
            updated=views.hlc_iso(st.head.ts if st.head else None),
            notes=notes,
            ref=v.get("ref"),
            archived=bool(v.get("archived", False)),
            deleted=bool(v.get("deleted", False)),
            deleted_by=self._who_when(st, "deleted", names),
        )

    @staticmethod
    def _who_when(st: merge.EntityState, name: str, names: dict[bytes, str]) -> str | None:
        """Who set a register, and when, in words ("dana at 2026-12-02T09:00:00Z")."""
        tag = NAMES_TASK[name].tag
        if tag not in st.registers:
            return None
        ts, dev = split_op_id(st.registers[tag][1].op_id)
        return f"{names.get(dev, dev.hex()[:8])} at {views.hlc_iso(ts)}"

    def tasks(self, mine: bool = False, status: int | None = None, assignee: str | None = None,
              archived: bool = False, every: bool = False) -> list[views.TaskView]:
        """Tasks filtered on routing columns (no decryption needed to filter), open work first.

        Deleted tasks are never listed and archived ones only with ``archived`` (then only
        them): put away is put away. ``every`` lists all of them (import matching, export).
        """
        sql = "SELECT id FROM entities WHERE kind = ?"
        params: list[Any] = [int(Kind.TASK)]
        if mine:
            assignee = self.store.meta("member")
        if assignee is not None:
            sql += " AND assignee = ?"
            params.append(assignee)
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        sql += " ORDER BY status = 2, priority DESC, due IS NULL, due, id"
        names = self.ledger.device_names()
        out = []
        for (tid,) in self.store.execute(sql, params).fetchall():
            st = self.ledger.load(Kind.TASK, tid)
            if st is None:
                continue
            v = st.values()
            if not every and (v.get("deleted") or bool(v.get("archived")) != archived):
                continue
            out.append(self._task_view(st, names))
        return out

    # -- archive and delete -------------------------------------------------------------------------

    def archive_task(self, prefix: str, undo: bool = False) -> views.TaskView:
        """Put a task away (or, with ``undo``, bring it back): it leaves lists, rebalancing and workload.

        Raises:
            UsageError: no such task, or it was deleted (``usage.deleted``).
        """
        return self.edit_task(prefix, archived=not undo)

    def delete_task(self, prefix: str) -> views.TaskView:
        """Delete a task for the whole team: a tombstone that wins over concurrent edits and is never undone.

        Its history stays in the op log and in the relay's audit, and ``task show`` still finds it.
        Only a supervisor may delete (a member archives instead), as only one may pin.

        Raises:
            UsageError: no such task, already deleted, or this device is not a supervisor's.
        """
        if self.store.meta("role") != "supervisor":
            raise UsageError(_("only a supervisor can delete a task; nothing changed"),
                             code="usage.not_supervisor", hint=_("archive it instead, or ask your supervisor"))
        return self.edit_task(prefix, deleted=True)

    def member_names(self) -> set[str]:
        """Members this device knows: the roster's devices, members' profiles, and its own member."""
        names = set((self.store.meta("roster") or {}).values())
        names |= {r[0].decode() for r in self.store.execute("SELECT id FROM entities WHERE kind = ?", (int(Kind.MEMBER),))}
        names.add(self.store.meta("member"))
        return {n for n in names if n}

    def import_tasks(self, creates: Sequence[dict[str, Any]], updates: Sequence[tuple[bytes, dict[str, Any]]]) -> list[bytes]:
        """Create and update tasks (a spreadsheet import) as one atomic command; returns the new ids.

        ``updates`` hold full task ids and only the fields that change.
        """
        edits: list[tuple[Kind, bytes, dict[str, Any]]] = []
        ids = []
        for r in creates:
            tid = os.urandom(8)
            values: dict[str, Any] = {"status": int(Status.OPEN), "priority": 1, "needs": 0}
            values.update({k: v for k, v in r.items() if v is not None and v != ""})
            if not (values.get("title") or "").strip():
                raise UsageError(_("a task needs a title"))
            self._check_member(values.get("assignee"))
            edits.append((Kind.TASK, tid, values))
            ids.append(tid)
        for tid, values in updates:
            if values:
                self._check_member(values.get("assignee"))
                edits.append((Kind.TASK, tid, dict(values)))
        if edits:
            self.changes.change(edits)
        return ids

    # -- profile ----------------------------------------------------------------------------------

    def set_profile(self, **values: Any) -> dict[str, Any]:
        """The member's working conditions (laptop, internet, office_days, away_until, capacity, takes_work),
        synced for rebalancing.

        Raises:
            UsageError: a value out of range ("invalid change: ..."); nothing was changed.
        """
        values = {k: v for k, v in values.items()}
        if not values:
            return self.profile()
        me = self.store.meta("member")
        self.changes.change([(Kind.MEMBER, me.encode(), values)])
        return self.profile()

    def profile(self, member: str | None = None) -> dict[str, Any]:
        """A member's working conditions and role (this device's member by default); raises nothing."""
        name = member or self.store.meta("member")
        st = self.ledger.load(Kind.MEMBER, name.encode())
        v = st.values() if st else {}
        return {
            "member": name,
            "laptop": v.get("laptop"),
            "internet": v.get("internet"),
            "office_days": views.days_to_names(v.get("office_days", 0)),
            "away_until": views.format_day(v.get("away_until")),
            "capacity": v.get("capacity"),
            "takes_work": v.get("takes_work"),
            "role": self.ledger.member_role(name),
        }

    def members(self) -> list[dict[str, Any]]:
        """The profile of every member this device has heard of; raises nothing."""
        names = {r[0].decode() for r in self.store.execute("SELECT id FROM entities WHERE kind = ?", (int(Kind.MEMBER),))}
        names |= {r[0] for r in self.store.execute("SELECT DISTINCT assignee FROM entities WHERE assignee IS NOT NULL")}
        names.add(self.store.meta("member"))
        return [self.profile(n) for n in sorted(names)]

    # -- verification ------------------------------------------------------------------------------

    def check(self) -> list[str]:
        """Recompute every entity from the op log and compare; returns the problems found (none: [])."""
        problems = []
        for kind, eid in self.store.execute("SELECT kind, id FROM entities").fetchall():
            stored = self.ledger.load(Kind(kind), eid)
            rows = self.store.execute(
                "SELECT op_id, body, device, received_ms FROM oplog WHERE kind = ? AND entity = ?", (kind, eid)
            ).fetchall()
            st = None
            for oid, body, device, rcv in rows:
                op = self.ledger.op_from_log(oid, body)
                shown = {k: v for k, v in (op.content or {}).items() if not (k == 33 and v is None)}
                validate_op(Op(op.kind, op.entity, op.hlc, op.base, op.fields, shown))
                st = merge.apply_op(st, op, merge.stamp_for(op, device, rcv), self.ledger.rank(device))
            if st is None or stored is None or st.values().keys() != stored.values().keys() or st.head != stored.head:
                problems.append(f"{Kind(kind).name.lower()} {eid.hex()} does not match its op log")
        unbatched = self.store.execute(
            "SELECT COUNT(*) FROM oplog WHERE device = ? AND batch_seq IS NULL", (self.author.device_id,)
        ).fetchone()[0]
        if unbatched and self.ledger.current_key_or_none() is not None:
            problems.append(f"local changes not in any outbox batch: {unbatched}")
        return problems
