"""What arrives from the relay, applied once the passphrase opens the store.

An unattended sync only stores what it receives (sealed batches in the inbox, key grants, a
snapshot); the next unlocked command applies it here. Also the device's side of snapshots
(making one for late joiners). A part of the replica, given the ``Ledger`` (sealed rows, keys,
who is who) and the ``ChangeLog`` (whose log every received op goes into, once).
"""

from __future__ import annotations

from typing import Any, Iterable

from .. import batch as wire
from .. import crypto, hlc, merge, snapshot
from ..clock import now_ms
from ..enroll import grant_sender, open_grant
from ..errors import IntegrityError, ProtocolError, WrongKeyError
from ..ops import NAMES, Kind, Op
from . import docdelta, keyflow
from . import notices, received, reply_parts, snapshots, views
from .changes import ChangeLog
from .ledger import Ledger
from ..i18n import _

#: Relay-signed batches (rebalancing) carry no content; epoch 0 is this public, all-zero key.
RELAY_KEY = crypto.TeamKey(0, bytes(32))
_EXPORTED = NAMES[Kind.DOC]["exported"].tag
_EXPORT_REASON = NAMES[Kind.DOC]["export_reason"].tag


def check_relay_ops(ops: Iterable[Op]) -> None:
    """The relay may only move tasks: an assignee change, nothing else, no content."""
    for op in ops:
        if op.kind is not Kind.TASK or set(op.fields) != {1} or op.content:
            raise IntegrityError(_("a relay-signed change touches more than a task's assignee; refused"),
                                 code="integrity.relay_scope")


class Incoming:
    """Others' changes, key grants and snapshots: verified, opened and merged here."""

    def __init__(self, ledger: Ledger, changes: ChangeLog):
        self.ledger = ledger
        self.changes = changes
        self.store = ledger.store

    def _author_public(self, device: bytes) -> bytes | None:
        if device == self.ledger.author.device_id:
            return self.ledger.author.public
        if device == self.ledger.relay_device():
            pub: bytes | None = self.store.meta("relay_public")
            return pub
        entry = (self.store.meta("roster_keys") or {}).get(device.hex())
        return entry[1] if entry else None

    def apply_incoming(self) -> int:
        """Apply grants, a snapshot and inbox batches received by earlier syncs; returns new ops applied.

        Batches sealed with a key epoch this device does not hold yet stay in
        the inbox until the key's grant arrives; a batch that fails its checks
        is dropped and reported, never half-applied.
        """
        s = self.store
        keyflow.open_welcome(self.ledger)
        self._apply_grants()
        self.changes.queue_unsealed()
        applied = 0
        snap = s.meta("snapshot_in")
        if snap:
            applied += self._apply_snapshot(*snap)
        # Batches apply in the relay's order: one after a batch still being downloaded (a large one,
        # fetched in pieces) waits for it, since it may hold a delta whose base that batch carries.
        # (A supervisor applied its inbox mid-sync to build a snapshot, and a document's next
        # version was refused as "base missing".)
        gap = s.execute("SELECT MIN(rseq) FROM downloads").fetchone()[0]
        held = reply_parts.held_from(s)  # a reply bundle's part came before the one it follows
        if held is not None:
            gap = held if gap is None else min(gap, held)
        waiting = s.execute("SELECT rseq, device, received_ms FROM inbox WHERE ? IS NULL OR rseq < ? ORDER BY rseq",
                            (gap, gap)).fetchall()
        # Notices follow where each task settles after the whole run, not a batch on the way (received.py).
        settler = received.Settler(s, s.meta("member"))
        for rseq, device, rcv in waiting:  # one batch in memory at a time: some hold documents
            data = s.execute("SELECT data FROM inbox WHERE rseq = ?", (rseq,)).fetchone()[0]
            pub = self._author_public(device)
            try:
                if pub is None:
                    raise IntegrityError(_("batch from unknown device {hex}").format(hex=device.hex()), code="integrity.device")
                applied += self.apply_batch(data, pub, received_ms=rcv, settler=settler)
            except WrongKeyError:
                continue  # wait for the grant of that epoch
            except (IntegrityError, ProtocolError) as e:
                self.ledger.problem(f"dropped batch {rseq} from device {device.hex()[:8]}: {e}", code="problem.dropped_batch",
                              params={"rseq": rseq, "device": device.hex()[:8], **notices.why_params(e)})
            with s.transaction():
                s.execute("DELETE FROM inbox WHERE rseq = ?", (rseq,))
        self.settle(settler)
        for kind, entity in s.meta("rebuild") or []:
            with s.transaction():
                self.rebuild(Kind(kind), entity)
        if s.meta("rebuild"):
            with s.transaction():
                s.set_meta("rebuild", None)
        return applied

    def _problem(self, text: str, *, code: str | None = None, params: dict[str, Any] | None = None) -> None:
        """Log a problem of an apply run: ``text`` in English, ``(code, params)`` worded when shown."""
        with self.store.transaction():
            notices.add_log(self.store, now_ms(), now_ms(), False, "apply", text, code, params)

    def _apply_grants(self) -> None:
        s = self.store
        grants = s.meta("grants_in") or []
        if not grants:
            return
        x_private = self.ledger.sealer.open(s.meta("x25519_key"), b"meta:x25519_key")
        have = self.ledger.team_keys()
        # Grants count only from devices a person admitted (keyflow.trust), never from the relay's roster.
        trusted = keyflow.trust(s)
        for epoch, data in grants:
            if epoch in have:
                continue
            try:
                entry = trusted.get(grant_sender(data))
                if entry is None:
                    raise IntegrityError(_("key grant from a device no supervisor approved"), code="integrity.device")
                pub = entry[0]
                key = open_grant(data, self.ledger.author.device_id, x_private, pub)
            except (IntegrityError, ProtocolError) as e:
                self.ledger.problem(f"refused a key grant for epoch {epoch}: {e}", code="problem.grant_refused",
                              params={"epoch": epoch, **notices.why_params(e)})
                continue
            relay_ids = s.meta("relay_keys") or {}
            if relay_ids.get(key.epoch) not in (None, key.key_id):
                self.ledger.problem(f"refused a key grant for epoch {epoch}: it is not the team's key",
                              code="problem.grant_not_team", params={"epoch": epoch})
                continue
            self.ledger.add_team_key(key)
        with s.transaction():
            s.set_meta("grants_in", None)

    def _apply_snapshot(self, cursor: int, device: bytes, data: bytes, jumped_from: int | None = None) -> int:
        """Merge a snapshot accepted on receipt; one that fails to decode sends the cursor back (§18)."""
        s = self.store
        trusted = keyflow.trust(s)
        t = trusted.get(device)  # the key this device trusts, not the relay's roster (§14b)
        if t is None and not snapshots.admitted(s, trusted):
            return 0  # kept sealed until a supervisor approves this device; opened with the key it then trusts
        pub = t[0] if t else None
        try:
            if pub is None:
                raise IntegrityError(_("snapshot from a device no supervisor of this team approved"),
                                     code="integrity.device")
            snap = snapshot.decode(data, pub, self.ledger.team_keys(), self.ledger.require_team())
        except WrongKeyError:
            return 0  # applied once the key arrives
        except (IntegrityError, ProtocolError) as e:
            self.ledger.problem(f"dropped a snapshot from device {device.hex()[:8]}: {e}", code="problem.snapshot_dropped",
                          params={"device": device.hex()[:8], **notices.why_params(e)})
            with s.transaction():
                if jumped_from is not None:  # the cursor jumped on its word: fetch what it skipped
                    s.set_meta("pull_cursor", min(jumped_from, s.meta("pull_cursor", 0)))
                snapshots.refuse(s, cursor, device, e)
            return 0
        new = 0
        with s.transaction():
            clock = s.meta("hlc", 0)
            for so in snap.ops:
                if not self.changes.log(so.op, so.device, so.received_ms, None):
                    continue
                new += 1
                clock = hlc.observe(clock, so.op.hlc, now_ms())
                stamp = merge.stamp_for(so.op, so.device, so.received_ms)
                self.ledger.save(merge.apply_op(self.ledger.load(so.op.kind, so.op.entity), so.op, stamp, self.ledger.rank(so.device)))
            s.set_meta("hlc", clock)
            s.set_meta("snapshot_in", None)
            snapshots.raise_seen(s, dict(snap.coverage))
        return new

    def make_snapshot(self, cursor: int, coverage: dict[bytes, int]) -> list[Any]:
        """[cursor, sealed snapshot] of everything the relay has acknowledged, for late joiners.

        ``coverage`` is the device's count of the batches it holds (``snapshots.seen``): the
        relay keeps the snapshot only if it matches the batches stored up to ``cursor``.
        """
        s = self.store
        by_entity: dict[tuple[int, bytes], list[tuple[bytes, int, Op]]] = {}
        for oid, body, device, rcv, kind, entity in s.execute(
            "SELECT op_id, body, device, received_ms, kind, entity FROM oplog WHERE received_ms IS NOT NULL"
            " ORDER BY kind, entity"
        ):
            by_entity.setdefault((kind, entity), []).append((device, rcv, self.ledger.op_from_log(oid, body)))
        ops: list[snapshot.SnapOp] = []
        for items in by_entity.values():
            for d, r, o in snapshot.contributing(items):
                c = o.content or {}
                if o.kind is Kind.DOC and c.get(33, b"") is None:  # logged by reference: put the bytes back
                    c = {**c, 33: self.ledger.blob(c[34])}
                    o = Op(o.kind, o.entity, o.hlc, o.base, o.fields, c)
                if o.kind is Kind.DOC and c.get(39) is not None:  # a joiner gets the whole manifest
                    c = docdelta.snapshot_content(c)
                    o = Op(o.kind, o.entity, o.hlc, o.base, o.fields, c)
                if o.kind is Kind.DOC and 35 in c:
                    # A joiner has no base to apply a delta to: the snapshot carries the version in full.
                    full = self.ledger.blob(c[34])
                    if full is not None:
                        c = {k: v for k, v in c.items() if k not in (35, 36)} | {33: full}
                        o = Op(o.kind, o.entity, o.hlc, o.base, o.fields, c)
                ops.append(snapshot.SnapOp(d, r, o))
        key = self.ledger.current_key()
        snap = snapshot.Snapshot(self.ledger.require_team(), self.ledger.author.device_id, cursor, key.epoch, tuple(ops), coverage)
        return [cursor, snapshot.encode(snap, self.ledger.author, key)]

    def apply_batch(self, data: bytes, public_key: bytes, received_ms: int | None = None,
                    settler: received.Settler | None = None) -> int:
        """Verify, open and merge a batch from another device; returns how many ops were new.

        Applying the same batch twice, or batches in any order, gives the same state.
        A batch signed by the relay (rebalancing) may only change assignees. Notices of tasks
        moved to or from this member are written from where a task settles: at the end of this
        batch, or of the caller's run when it passes its ``settler`` (``apply_incoming``).
        """
        led = self.ledger
        own = settler is None
        settler = settler or received.Settler(self.store, self.store.meta("member"))
        frame = wire.parse_batch(data)
        from_relay = frame.device == led.relay_device()
        keys = {0: RELAY_KEY} if from_relay else led.team_keys()
        if frame.epoch == 0 and not from_relay:
            raise IntegrityError(_("only the relay may send unsealed (epoch 0) changes"), code="integrity.epoch")
        b = wire.decode_batch(data, public_key, keys, team=led.require_team())
        if from_relay:
            check_relay_ops(b.ops)
        rank = led.rank(b.device)
        new = 0
        with self.store.transaction():
            clock = self.store.meta("hlc", 0)
            for op in b.ops:
                if not self.changes.log(op, b.device, received_ms, None):
                    continue
                new += 1
                clock = hlc.observe(clock, op.hlc, now_ms())
                stamp = merge.stamp_for(op, b.device, received_ms)
                st = led.load(op.kind, op.entity)
                if op.kind is Kind.TASK:
                    settler.saw(op.entity, st)
                led.save(merge.apply_op(st, op, stamp, rank))
                if op.kind is Kind.DOC:
                    self._export_notice(op, b.device)  # a confidential document left someone's store
            self.store.set_meta("hlc", clock)
            if own:
                self.settle(settler)
        return new

    def settle(self, settler: received.Settler) -> None:
        """Write the notices of an apply run, from the tasks' merged state now (received.py)."""
        led = self.ledger
        states = {e: st for e in settler.before if (st := led.load(Kind.TASK, e)) is not None}
        with self.store.transaction():
            for text, code, params in settler.notices(states, led.device_names(), led.relay_device()):
                notices.add_notice(self.store, text, code=code, params=params, when_ms=now_ms())

    def rebuild(self, kind: Kind, entity: bytes) -> merge.EntityState | None:
        """Recompute an entity from its op log (after a relay capped a clock, or to verify the store)."""
        led = self.ledger
        rows = self.store.execute(
            "SELECT op_id, body, device, received_ms FROM oplog WHERE kind = ? AND entity = ?", (int(kind), entity)
        ).fetchall()
        st = None
        for oid, body, device, rcv in rows:
            op = led.op_from_log(oid, body)
            st = merge.apply_op(st, op, merge.stamp_for(op, device, rcv), led.rank(device))
        if st is not None:
            led.save(st)
        return st

    def _export_notice(self, op: Op, device: bytes) -> None:
        """Tell a supervisor, in ``status``, that someone else exported a confidential document."""
        led = self.ledger
        if _EXPORTED not in op.fields or self.store.meta("role") != "supervisor" or device == led.author.device_id:
            return
        st = led.load(Kind.DOC, op.entity)
        name = st.values().get("name", "") if st else ""
        who = led.device_names().get(device, device.hex()[:8])
        reason = (op.content or {}).get(_EXPORT_REASON, "")
        params = {"who": who, "doc": op.entity.hex()[:6], "name": name, "device": device.hex()[:8],
                  "at": views.hlc_iso(op.hlc), "reason": reason}
        text = ("{who} exported confidential document {doc} ({name}) from device {device} at {at}; "
                "reason: {reason}").format(**params)
        notices.add_notice(self.store, text, code="notice.exported", params=params, when_ms=now_ms())
