"""The unlocked replica: every change an official makes, and every query, as one library call.

A change is one transaction that (1) stamps ops with the device's HLC, (2)
folds them into the merged state with the same rule every replica uses
(``hbw_sync.merge``), (3) logs them sealed at rest, and (4) puts them into the
outbox as a signed, sealed batch, all or nothing. Nothing waits for a network.

The outbox keeps one *open* batch that later changes join until it holds
``OPEN_MAX_OPS`` ops or a sync or bundle export closes it; closed batches never
change again, so the relay can de-duplicate them by (device, seq). The open
batch is kept as pieces, one signed, sealed batch per change, and built into
full batches once when it closes (``Replica._queue``): small edits do not each
pay a whole batch's framing on the wire, every change is signed and sealed the
moment the command returns, and a change costs the same however many wait.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Sequence

from .. import batch as wire
from .. import codec, crypto, hlc, merge
from ..errors import ConfigError, IntegrityError, UsageError
from ..ops import FIELDS, NAMES, Kind, Op, Status, is_member_name, make_op, make_op_id, routing_row, split_op_id, validate_op
from . import docdelta, keyflow, notices, received, views
from .documents import CHAIN_FULL_EVERY, MAX_DOC_BYTES, DocumentsMixin  # noqa: F401 - re-exported
from .incoming import IncomingMixin
from .device import Device, now_ms
from .store import Store, _pack, _unpack
from .vault import Sealer
from ..i18n import _

OPEN_MAX_OPS = 200
BATCH_MAX_OPS = 1000
BATCH_MAX_PLAIN = 768 * 1024  # keeps a sealed batch under the 1 MB many proxies refuse
BATCH_LEVEL = codec.BATCH_LEVEL  # one knob, in the core (STYLE.md §8)
OPEN_MAX_BYTES = 256 * 1024

NAMES_TASK = NAMES[Kind.TASK]
_TASK_LIST = ("assignee", "status", "due", "priority", "needs", "pinned")
#: Relay-signed batches (rebalancing) carry no content; epoch 0 is this public, all-zero key.
RELAY_KEY = crypto.TeamKey(0, bytes(32))


def _approx_size(op: Op) -> int:
    """An op's plaintext size on the wire, near enough to cut batches, without encoding it."""
    n = 48 + len(op.entity)
    for section in (op.fields, op.content or {}):
        for v in section.values():
            n += 2 + (len(v) if isinstance(v, (bytes, str)) else 9)
    return n


def check_relay_ops(ops: Iterable[Op]) -> None:
    """The relay may only move tasks: an assignee change, nothing else, no content."""
    for op in ops:
        if op.kind is not Kind.TASK or set(op.fields) != {1} or op.content:
            raise IntegrityError(_("a relay-signed change touches more than a task's assignee; refused"),
                                 code="integrity.relay_scope")


def _short_hex(b: bytes) -> str:
    return b.hex()


class Replica(DocumentsMixin, IncomingMixin, Device):
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

    # -- team and keys ---------------------------------------------------------------------------

    def create_team(self, name: str) -> None:
        """Start a team on this device alone, so the first official can work before any relay exists."""
        if self.store.meta("team_id") is not None:
            raise UsageError(_("this device is already in team {meta!r}").format(meta=self.store.meta('team_name')))
        if not name.strip():
            raise UsageError(_("the team name must not be empty"))
        key = crypto.TeamKey.generate(epoch=1)
        with self.store.transaction():
            self.store.set_meta("team_id", os.urandom(wire.TEAM_ID_LEN))
            self.store.set_meta("team_name", name.strip())
            self.store.set_meta("role", "supervisor")
            self.add_team_key(key)

    def add_team_key(self, key: crypto.TeamKey) -> None:
        with self.store.transaction():
            self.store.execute(
                "INSERT OR REPLACE INTO team_keys (epoch, key_id, sealed) VALUES (?, ?, ?)",
                (key.epoch, key.key_id, self.sealer.seal(key.secret, b"team_key:%d" % key.epoch)),
            )
            if key.epoch >= (self.store.meta("key_epoch") or 0):
                self.store.set_meta("key_epoch", key.epoch)
            keyflow.key_added(self.store, key.epoch)

    def team_keys(self) -> dict[int, crypto.TeamKey]:
        rows = self.store.execute("SELECT epoch, sealed FROM team_keys").fetchall()
        return {e: crypto.TeamKey(e, self.sealer.open(s, b"team_key:%d" % e)) for e, s in rows}

    def current_key_or_none(self) -> crypto.TeamKey | None:
        """The key to seal new changes with; None while there is none, or while a revoked device holds it
        (the changes then wait, logged, for the rotated key: ``keyflow.waiting`` says so)."""
        epoch = self.store.meta("key_epoch")
        hold = keyflow.hold_epoch(self.store)
        if epoch is None or (hold is not None and epoch <= hold):
            return None
        return self.team_keys().get(epoch)

    def current_key(self) -> crypto.TeamKey:
        epoch = self.store.meta("key_epoch")
        keys = self.team_keys()
        if epoch not in keys:
            raise ConfigError(_("this device holds no team key"), hint=_("create a team or join one"))
        return keys[epoch]

    # -- state at rest ----------------------------------------------------------------------------

    def _where(self, kind: Kind, entity: bytes) -> bytes:
        return b"entity:%d:" % kind + entity

    def _load(self, kind: Kind, entity: bytes) -> merge.EntityState | None:
        row = self.store.execute("SELECT state FROM entities WHERE kind = ? AND id = ?", (int(kind), entity)).fetchone()
        if row is None:
            return None
        return merge.state_from_wire(_unpack(self.sealer.open(row[0], self._where(kind, entity))))

    def _save(self, st: merge.EntityState) -> None:
        # Document bytes live once, in the op log, found by the data register's op id.
        drop = frozenset({33}) if st.kind is Kind.DOC else frozenset()
        blob = self.sealer.seal(_pack(merge.state_to_wire(st, drop)), self._where(st.kind, st.entity))
        vals = st.values()
        clear: list[Any] = [vals.get(f) for f in _TASK_LIST] if st.kind is Kind.TASK else [None] * len(_TASK_LIST)
        if clear[5] is not None:
            clear[5] = int(clear[5])
        self.store.execute(
            "INSERT OR REPLACE INTO entities (kind, id, assignee, status, due, priority, needs, pinned, head, state)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (int(st.kind), st.entity, *clear, st.head.op_id if st.head else None, blob),
        )
        if st.history:
            names = self._device_names()
            for c in st.conflicts():
                who_w = names.get(c.winner[8:], c.winner[8:].hex()[:8])
                who_l = names.get(c.loser[8:], c.loser[8:].hex()[:8])
                # English for logs and --json; (code, params) for the words shown later (notices.py).
                if st.kind is Kind.DOC:
                    detail = (f"document {st.entity.hex()[:6]}: {who_l} and {who_w} saved versions at the same "
                              f"time; {who_w}'s is current, {who_l}'s is kept as a conflict copy (see 'doc list')")
                    code, params = "conflict.doc", {"doc": st.entity.hex()[:6], "loser": who_l, "winner": who_w}
                else:
                    detail = f"{c.field} {c.loser_value!r} by {who_l} lost to {c.winner_value!r} by {who_w}: {c.rule}"
                    code, params = "conflict.field", {
                        "case": merge.RULE_CODES.get(c.rule, "rule.later").split(".")[1], "field": c.field,
                        "lost": repr(c.loser_value), "loser": who_l, "won": repr(c.winner_value), "winner": who_w}
                self.store.execute(
                    "INSERT OR IGNORE INTO conflicts (kind, entity, field, winner, loser, detail, created_ms, seen,"
                    " code, params) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                    (int(st.kind), st.entity, c.field, c.winner, c.loser, detail, now_ms(), code, notices.pack(params)),
                )

    def _log(self, op: Op, device: bytes, received_ms: int | None, batch_seq: int | None) -> bool:
        """Record an op in the log; False if it was already there (a duplicate delivery).

        A document's full bytes are not logged again: they live once in `blobs` (by hash), and
        the logged op keeps the key with None, to be filled back by ``_op_from_log(with_data=True)``.
        """
        op_id = op.op_id(device)
        if self.store.execute("SELECT 1 FROM oplog WHERE op_id = ?", (op_id,)).fetchone():
            return False
        content = dict(op.content or {})
        if op.kind is Kind.DOC:
            content = docdelta.expand(self, op.entity, content)  # a manifest sent as a delta (§18e)
            if content.get(38) is not None and (op.content or {}).get(38) is None:
                op = Op(op.kind, op.entity, op.hlc, op.base, op.fields, content)
            self._materialize_version(op)
            if content.get(33) is not None:
                content[33] = None
        body = self.sealer.seal(_pack([routing_row(op), content]), b"op:" + op_id)
        self.store.execute(
            "INSERT INTO oplog (op_id, kind, entity, device, hlc, received_ms, batch_seq, body)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (op_id, int(op.kind), op.entity, device, op.hlc, received_ms, batch_seq, body),
        )
        return True

    def _op_from_log(self, op_id: bytes, body: bytes, with_data: bool = False) -> Op:
        """An op from the log; ``with_data`` restores a document version's bytes (to seal it again)."""
        row, content = _unpack(self.sealer.open(body, b"op:" + op_id))
        kind, entity, ts, base, fields = row
        if with_data and kind == Kind.DOC and 33 in content and content[33] is None:
            data = self._blob(content[34])
            if data is None:
                raise IntegrityError(_("a document version's bytes are missing from the store"), code="integrity.store")
            content[33] = data
        if with_data and kind == Kind.DOC:
            content = docdelta.wire_content(content)  # sealed again as sent: the manifest as its delta
        return Op(Kind(kind), entity, ts, base, fields, content)

    # -- making changes ----------------------------------------------------------------------------

    def change(self, edits: Sequence[tuple[Kind, bytes, dict[str, Any]]]) -> list[Op]:
        """Apply a list of (kind, entity, {field name: value}) edits as one atomic command.

        Raises:
            UsageError: a value the op format refuses ("invalid change: ..."); nothing was changed.
            ConfigError: this device is in no team yet.
        """
        team = self.require_team()
        key = self.current_key_or_none()
        me = self.author.device_id
        made: list[Op] = []
        heads: dict[tuple[Kind, bytes], bytes | None] = {}
        with self.store.transaction():
            clock = self.store.meta("hlc", 0)
            for kind, entity, values in edits:
                clock = hlc.tick(clock, now_ms())
                st = self._load(kind, entity)
                base = heads.get((kind, entity), st.head.op_id if st and st.head else None)
                try:
                    op = make_op(kind, entity, clock, base, **values)
                except (ValueError, Exception) as e:  # ProtocolError from validation: a bad value
                    raise UsageError(_("invalid change: {e}").format(e=getattr(e, 'message', e))) from None
                stamp = merge.Stamp(op.hlc, op.op_id(me))
                self._save(merge.apply_op(st, op, stamp, self._rank(me)))
                self._log(op, me, None, None)
                heads[(kind, entity)] = stamp.op_id
                made.append(op)
            self.store.set_meta("hlc", clock)
            if made and key is not None:
                self._queue(team, key, made)
            # Without a team key yet (joined, waiting for a supervisor's device to share it), the
            # changes are logged and sealed into the outbox as soon as the key arrives.
        return made

    def queue_unsealed(self) -> int:
        """Seal changes made before this device held a team key; returns how many."""
        key = self.current_key_or_none()
        if key is None:
            return 0
        me = self.author.device_id
        with self.store.transaction():
            rows = self.store.execute(
                "SELECT op_id, body FROM oplog WHERE device = ? AND batch_seq IS NULL ORDER BY hlc", (me,)
            ).fetchall()
            if rows:
                self._queue(self.require_team(), key, [self._op_from_log(oid, body, True) for oid, body in rows])
        return len(rows)

    def _queue(self, team: bytes, key: crypto.TeamKey, new_ops: list[Op]) -> None:
        """Put ops into the outbox at a cost that does not grow with what already waits there.

        The open batch is a run of *pieces*: each change's ops, signed and sealed on their own as
        a complete batch (so a locked sync or export can send them as they are, and a kill -9
        loses nothing). Only when the run would pass ``OPEN_MAX_OPS`` or ``OPEN_MAX_BYTES``, or
        when a sync closes it (``close_outbox``), are the pieces read back and built into full
        batches once. Re-building the whole open batch per change cost 6.9 ms with 200 waiting.
        """
        s = self.store
        n_open, size_open = s.execute(
            "SELECT COALESCE(SUM(n_ops), 0), COALESCE(SUM(size), 0) FROM outbox WHERE state = 'open'"
        ).fetchone()
        plain = sum(_approx_size(op) for op in new_ops)
        if n_open + len(new_ops) < OPEN_MAX_OPS and size_open + plain < OPEN_MAX_BYTES:
            seq = s.meta("next_seq")
            self._write_batches(team, key, [new_ops], seq, close_last=False)
            self._fold_pieces(team, key)
            return
        self._rebuild_open(team, key, new_ops, close_last=False)

    def _fold_pieces(self, team: bytes, key: crypto.TeamKey) -> None:
        """Fold the last pieces together like a binary counter: a new piece joins the ones before it
        while it holds at least as many ops as they do.

        So at most about log2(OPEN_MAX_OPS) pieces wait (a locked sync sends ~8 batches, not one
        per change: each piece pays ~220 bytes of framing), and each op is rebuilt about as
        often, not once per later change: the cost per change stays flat.
        """
        sizes = self.store.execute("SELECT seq, n_ops FROM outbox WHERE state = 'open' ORDER BY seq").fetchall()
        k, acc = 1, sizes[-1][1]
        while k < len(sizes) and acc >= sizes[-k - 1][1]:
            acc += sizes[-k - 1][1]
            k += 1
        if k > 1:
            self._rebuild_open(team, key, [], close_last=False, from_seq=sizes[-k][0])

    def close_outbox(self) -> None:
        """Close the open batch before it travels: its pieces become full batches, built once.

        One piece is already a full batch and only changes state. Locked, a sync or export can
        only close the pieces as they are (each a valid batch; a little more framing).
        """
        s = self.store
        with s.transaction():
            n = s.execute("SELECT COUNT(*) FROM outbox WHERE state = 'open'").fetchone()[0]
            if n > 1 and self.current_key_or_none() is not None:
                self._rebuild_open(self.require_team(), self.current_key(), [], close_last=True)
            s.execute("UPDATE outbox SET state = 'closed', closed_ms = ? WHERE state = 'open'", (now_ms(),))

    def _rebuild_open(self, team: bytes, key: crypto.TeamKey, new_ops: list[Op], close_last: bool,
                      from_seq: int = 0) -> None:
        """Read the open pieces (from ``from_seq`` on) back, add ``new_ops``, and cut the lot into full batches.

        The pieces were never sent (a sync or export closes them first), so their seqs are
        taken back and numbered again from the first: the relay sees each seq once.
        """
        s = self.store
        open_seqs = [r[0] for r in s.execute(
            "SELECT seq FROM outbox WHERE state = 'open' AND seq >= ? ORDER BY seq", (from_seq,))]
        pending: list[Op] = []
        first = s.meta("next_seq")
        if open_seqs:
            marks = ",".join("?" * len(open_seqs))
            rows = s.execute(
                f"SELECT op_id, body FROM oplog WHERE batch_seq IN ({marks}) ORDER BY hlc", open_seqs
            ).fetchall()
            pending = [self._op_from_log(oid, body, True) for oid, body in rows]
            later = s.execute("SELECT 1 FROM outbox WHERE state != 'open' AND seq > ?", (open_seqs[0],)).fetchone()
            s.execute(f"DELETE FROM outbox WHERE seq IN ({marks})", open_seqs)
            if later is None:  # the pieces are the outbox's tail (always, unless a store predates them)
                first = open_seqs[0]
        chunks: list[list[Op]] = [[]]
        size = 0
        for op in pending + new_ops:
            op_size = _approx_size(op)
            if chunks[-1] and (len(chunks[-1]) >= BATCH_MAX_OPS or size + op_size > BATCH_MAX_PLAIN):
                chunks.append([])
                size = 0
            chunks[-1].append(op)
            size += op_size
        if chunks[-1]:
            self._write_batches(team, key, chunks, first, close_last=close_last)
        else:
            s.set_meta("next_seq", first)

    def _write_batches(self, team: bytes, key: crypto.TeamKey, chunks: list[list[Op]], first: int,
                       close_last: bool) -> None:
        """Encode, sign and seal each chunk as batch ``first``, ``first + 1``...; all closed but a small last."""
        me = self.author.device_id
        s = self.store
        t = now_ms()
        for i, chunk in enumerate(chunks):
            seq = first + i
            plain = sum(_approx_size(op) for op in chunk)
            level = BATCH_LEVEL if plain < 1 << 20 else 3  # big = a document: fast, and mostly deltas
            # or already-compressed formats, where level 19 buys little
            data = wire.encode_batch(wire.Batch(team, me, seq, key.epoch, tuple(chunk)), self.author, key, level=level)
            last = i == len(chunks) - 1
            # A batch holding a large document is closed at once: rebuilding it when the open
            # batch closes would cost a full compression of the document again.
            small = len(chunk) < OPEN_MAX_OPS and plain < OPEN_MAX_BYTES
            state = "open" if last and small and not close_last else "closed"
            s.execute(
                "INSERT OR REPLACE INTO outbox (seq, state, n_ops, size, data, created_ms, closed_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (seq, state, len(chunk), len(data), data, t, None if state == "open" else t),
            )
            s.conn.executemany(
                "UPDATE oplog SET batch_seq = ? WHERE op_id = ?", [(seq, make_op_id(op.hlc, me)) for op in chunk]
            )
        s.set_meta("next_seq", first + len(chunks))

    # -- applying others' changes --------------------------------------------------------------------

    def relay_device(self) -> bytes | None:
        pub = self.store.meta("relay_public")
        return crypto.device_id_for(pub) if pub else None

    def member_role(self, member: str) -> str:
        """A member's role as this device knows it (its own, or from the roster): 'supervisor' or 'member'."""
        if member == self.store.meta("member"):
            return self.store.meta("role") or "member"
        for entry in (self.store.meta("roster_keys") or {}).values():
            if entry and entry[0] == member and len(entry) > 4 and entry[4] == "supervisor":
                return "supervisor"
        return "member"

    def _rank(self, device: bytes) -> int:
        """The author's role for the assignment policy: relay 0, member 1, supervisor 2."""
        if device == self.relay_device():
            return merge.RANK_RELAY
        if device == self.author.device_id:
            role = self.store.meta("role")
        else:
            entry = (self.store.meta("roster_keys") or {}).get(device.hex())
            role = entry[4] if entry and len(entry) > 4 else "member"
        return merge.RANK_SUPERVISOR if role == "supervisor" else merge.RANK_MEMBER

    def apply_batch(self, data: bytes, public_key: bytes, received_ms: int | None = None,
                    settler: received.Settler | None = None) -> int:
        """Verify, open and merge a batch from another device; returns how many ops were new.

        Applying the same batch twice, or batches in any order, gives the same state.
        A batch signed by the relay (rebalancing) may only change assignees. Notices of tasks
        moved to or from this member are written from where a task settles: at the end of this
        batch, or of the caller's run when it passes its ``settler`` (``apply_incoming``).
        """
        own = settler is None
        settler = settler or received.Settler(self.store, self.store.meta("member"))
        frame = wire.parse_batch(data)
        from_relay = frame.device == self.relay_device()
        keys = {0: RELAY_KEY} if from_relay else self.team_keys()
        if frame.epoch == 0 and not from_relay:
            raise IntegrityError(_("only the relay may send unsealed (epoch 0) changes"), code="integrity.epoch")
        b = wire.decode_batch(data, public_key, keys, team=self.require_team())
        if from_relay:
            check_relay_ops(b.ops)
        rank = self._rank(b.device)
        new = 0
        with self.store.transaction():
            clock = self.store.meta("hlc", 0)
            for op in b.ops:
                if not self._log(op, b.device, received_ms, None):
                    continue
                new += 1
                clock = hlc.observe(clock, op.hlc, now_ms())
                stamp = merge.stamp_for(op, b.device, received_ms)
                st = self._load(op.kind, op.entity)
                if op.kind is Kind.TASK:
                    settler.saw(op.entity, st)
                self._save(merge.apply_op(st, op, stamp, rank))
                if op.kind is Kind.DOC:
                    self._export_notice(op, b.device)  # a confidential document left someone's store
            self.store.set_meta("hlc", clock)
            if own:
                self.settle(settler)
        return new

    def settle(self, settler: received.Settler) -> None:
        """Write the notices of an apply run, from the tasks' merged state now (received.py)."""
        states = {e: st for e in settler.before if (st := self._load(Kind.TASK, e)) is not None}
        with self.store.transaction():
            for text, code, params in settler.notices(states, self._device_names(), self.relay_device()):
                notices.add_notice(self.store, text, code=code, params=params, when_ms=now_ms())

    def rebuild(self, kind: Kind, entity: bytes) -> merge.EntityState | None:
        """Recompute an entity from its op log (after a relay capped a clock, or to verify the store)."""
        rows = self.store.execute(
            "SELECT op_id, body, device, received_ms FROM oplog WHERE kind = ? AND entity = ?", (int(kind), entity)
        ).fetchall()
        st = None
        for oid, body, device, rcv in rows:
            op = self._op_from_log(oid, body)
            st = merge.apply_op(st, op, merge.stamp_for(op, device, rcv), self._rank(device))
        if st is not None:
            self._save(st)
        return st

    # -- resolving ids -----------------------------------------------------------------------------

    def resolve(self, kind: Kind, prefix: str) -> bytes:
        """An entity id from an unambiguous hex prefix (as git does).

        Raises:
            UsageError: not at least 2 hex digits, no such entity, or a prefix of several.
        """
        p = prefix.strip().lower()
        what = kind.name.lower()
        if len(p) < 2 or any(c not in "0123456789abcdef" for c in p):
            raise UsageError(_("{prefix!r} is not a {what} id").format(prefix=prefix, what=what), hint=_("give at least 2 hex digits, as shown by 'list'"))
        rows = self.store.execute(
            "SELECT id FROM entities WHERE kind = ? AND hex(id) LIKE ? LIMIT 6", (int(kind), p.upper() + "%")
        ).fetchall()
        if not rows:
            raise UsageError(_("no {what} with id {prefix!r}").format(what=what, prefix=prefix), hint=_("see '{v} list'").format(v='task' if kind is Kind.TASK else 'doc'))
        if len(rows) > 1:
            ids = ", ".join(r[0].hex()[:8] for r in rows[:5])
            raise UsageError(_("{what} id {prefix!r} is ambiguous: {ids}...").format(what=what, prefix=prefix, ids=ids), hint=_("give more digits"))
        return rows[0][0]

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
        self.change(edits)
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
        tid = self.resolve(Kind.TASK, prefix)
        values = {k: v for k, v in values.items()}
        if "assignee" in values:
            self._check_member(values["assignee"])
        if not values:
            raise UsageError(_("nothing to change"), code="usage.nothing_to_change")
        if "title" in values and not (values["title"] or "").strip():
            raise UsageError(_("a task's title must not be empty"))
        st = self._load(Kind.TASK, tid)
        if st is not None and st.values().get("deleted"):
            who = self._who_when(st, "deleted", self._device_names())
            raise UsageError(_("task {v} was deleted (by {who}); nothing changed").format(v=tid.hex()[:6], who=who),
                             code="usage.deleted", hint=_("a deleted task cannot be changed; add a new one"))
        self.change([(Kind.TASK, tid, values)])
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
        tid = self.resolve(Kind.TASK, prefix)
        st = self._load(Kind.TASK, tid)
        assert st is not None
        view = self._task_view(st)
        rows = self.store.execute("SELECT id, state FROM entities WHERE kind = ?", (int(Kind.DOC),)).fetchall()
        for did, _updated in rows:
            doc = self._load(Kind.DOC, did)
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
        tid = self.resolve(Kind.TASK, prefix)
        names, specs = self._device_names(), FIELDS[Kind.TASK]
        out = []
        for oid, body in self.store.execute(
            "SELECT op_id, body FROM oplog WHERE kind = ? AND entity = ? ORDER BY op_id", (int(Kind.TASK), tid)
        ).fetchall():
            op = self._op_from_log(oid, body)
            ts, dev = split_op_id(oid)
            values = {**op.fields, **(op.content or {})}
            out.append({"at": views.hlc_iso(ts), "by": names.get(dev, dev.hex()[:8]),
                        "changes": {specs[t].name: v for t, v in values.items() if t in specs}})
        return out

    def _device_names(self) -> dict[bytes, str]:
        names = {bytes.fromhex(k): v for k, v in (self.store.meta("roster") or {}).items()}
        names[self.author.device_id] = self.store.meta("member")
        return names

    def _task_view(self, st: merge.EntityState, names: dict[bytes, str] | None = None) -> views.TaskView:
        v = st.values()
        names = names if names is not None else self._device_names()
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
        names = self._device_names()
        out = []
        for (tid,) in self.store.execute(sql, params).fetchall():
            st = self._load(Kind.TASK, tid)
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
            self.change(edits)
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
        self.change([(Kind.MEMBER, me.encode(), values)])
        return self.profile()

    def profile(self, member: str | None = None) -> dict[str, Any]:
        """A member's working conditions and role (this device's member by default); raises nothing."""
        name = member or self.store.meta("member")
        st = self._load(Kind.MEMBER, name.encode())
        v = st.values() if st else {}
        return {
            "member": name,
            "laptop": v.get("laptop"),
            "internet": v.get("internet"),
            "office_days": views.days_to_names(v.get("office_days", 0)),
            "away_until": views.format_day(v.get("away_until")),
            "capacity": v.get("capacity"),
            "takes_work": v.get("takes_work"),
            "role": self.member_role(name),
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
            stored = self._load(Kind(kind), eid)
            rows = self.store.execute(
                "SELECT op_id, body, device, received_ms FROM oplog WHERE kind = ? AND entity = ?", (kind, eid)
            ).fetchall()
            st = None
            for oid, body, device, rcv in rows:
                op = self._op_from_log(oid, body)
                shown = {k: v for k, v in (op.content or {}).items() if not (k == 33 and v is None)}
                validate_op(Op(op.kind, op.entity, op.hlc, op.base, op.fields, shown))
                st = merge.apply_op(st, op, merge.stamp_for(op, device, rcv), self._rank(device))
            if st is None or stored is None or st.values().keys() != stored.values().keys() or st.head != stored.head:
                problems.append(f"{Kind(kind).name.lower()} {eid.hex()} does not match its op log")
        unbatched = self.store.execute(
            "SELECT COUNT(*) FROM oplog WHERE device = ? AND batch_seq IS NULL", (self.author.device_id,)
        ).fetchone()[0]
        if unbatched and self.current_key_or_none() is not None:
            problems.append(f"local changes not in any outbox batch: {unbatched}")
        return problems
