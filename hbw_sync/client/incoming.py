"""What arrives from the relay, applied once the passphrase opens the store.

An unattended sync only stores what it receives (sealed batches in the inbox, key grants, a
snapshot); the next unlocked command applies it here. Also the device's side of snapshots
(making one for late joiners) and of joining a relay (sealing the outbox again under the
relay's team id). A mixin of ``Replica``.
"""

from __future__ import annotations

from typing import Any

from .. import batch as wire
from .. import hlc, merge, snapshot
from ..enroll import grant_sender, open_grant
from ..errors import IntegrityError, ProtocolError, WrongKeyError
from ..ops import Kind, Op
from . import docdelta, keyflow
from .device import now_ms
from . import notices, received, reply_parts, snapshots
from ..i18n import _

# A mixin's ``self`` is the whole Replica, which inherits from the mixin: a cycle mypy cannot
# follow, so the base is Any to it (STYLE.md §3: composing the parts ends this).
_Base: Any = object


class IncomingMixin(_Base):

    def _author_public(self, device: bytes) -> bytes | None:
        if device == self.author.device_id:
            return self.author.public
        if device == self.relay_device():
            return self.store.meta("relay_public")
        entry = (self.store.meta("roster_keys") or {}).get(device.hex())
        return entry[1] if entry else None

    def apply_incoming(self) -> int:
        """Apply grants, a snapshot and inbox batches received by earlier syncs; returns new ops applied.

        Batches sealed with a key epoch this device does not hold yet stay in
        the inbox until the key's grant arrives; a batch that fails its checks
        is dropped and reported, never half-applied.
        """
        s = self.store
        keyflow.open_welcome(self)  # type: ignore[arg-type]
        self._apply_grants()
        self.queue_unsealed()
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
                self._problem(f"dropped batch {rseq} from device {device.hex()[:8]}: {e}", code="problem.dropped_batch",
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
        x_private = self.sealer.open(s.meta("x25519_key"), b"meta:x25519_key")
        have = self.team_keys()
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
                key = open_grant(data, self.author.device_id, x_private, pub)
            except (IntegrityError, ProtocolError) as e:
                self._problem(f"refused a key grant for epoch {epoch}: {e}", code="problem.grant_refused",
                              params={"epoch": epoch, **notices.why_params(e)})
                continue
            relay_ids = s.meta("relay_keys") or {}
            if relay_ids.get(key.epoch) not in (None, key.key_id):
                self._problem(f"refused a key grant for epoch {epoch}: it is not the team's key",
                              code="problem.grant_not_team", params={"epoch": epoch})
                continue
            self.add_team_key(key)
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
            snap = snapshot.decode(data, pub, self.team_keys(), self.require_team())
        except WrongKeyError:
            return 0  # applied once the key arrives
        except (IntegrityError, ProtocolError) as e:
            self._problem(f"dropped a snapshot from device {device.hex()[:8]}: {e}", code="problem.snapshot_dropped",
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
                if not self._log(so.op, so.device, so.received_ms, None):
                    continue
                new += 1
                clock = hlc.observe(clock, so.op.hlc, now_ms())
                stamp = merge.stamp_for(so.op, so.device, so.received_ms)
                self._save(merge.apply_op(self._load(so.op.kind, so.op.entity), so.op, stamp, self._rank(so.device)))
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
            by_entity.setdefault((kind, entity), []).append((device, rcv, self._op_from_log(oid, body)))
        ops: list[snapshot.SnapOp] = []
        for items in by_entity.values():
            for d, r, o in snapshot.contributing(items):
                c = o.content or {}
                if o.kind is Kind.DOC and c.get(33, b"") is None:  # logged by reference: put the bytes back
                    c = {**c, 33: self._blob(c[34])}
                    o = Op(o.kind, o.entity, o.hlc, o.base, o.fields, c)
                if o.kind is Kind.DOC and c.get(39) is not None:  # a joiner gets the whole manifest
                    c = docdelta.snapshot_content(c)
                    o = Op(o.kind, o.entity, o.hlc, o.base, o.fields, c)
                if o.kind is Kind.DOC and 35 in c:
                    # A joiner has no base to apply a delta to: the snapshot carries the version in full.
                    full = self._blob(c[34])
                    if full is not None:
                        c = {k: v for k, v in c.items() if k not in (35, 36)} | {33: full}
                        o = Op(o.kind, o.entity, o.hlc, o.base, o.fields, c)
                ops.append(snapshot.SnapOp(d, r, o))
        key = self.current_key()
        snap = snapshot.Snapshot(self.require_team(), self.author.device_id, cursor, key.epoch, tuple(ops), coverage)
        return [cursor, snapshot.encode(snap, self.author, key)]

    def reseal_outbox(self) -> None:
        """Seal every unsent batch again (after joining a relay under its team id). Only before a first sync."""
        s = self.store
        with s.transaction():
            seqs = [r[0] for r in s.execute("SELECT seq FROM outbox ORDER BY seq")]
            team, key = self.require_team(), self.current_key()
            for seq in seqs:
                rows = s.execute("SELECT op_id, body FROM oplog WHERE batch_seq = ? ORDER BY hlc", (seq,)).fetchall()
                ops = tuple(self._op_from_log(oid, body, True) for oid, body in rows)
                batch = wire.Batch(team, self.author.device_id, seq, key.epoch, ops)
                data = wire.encode_batch(batch, self.author, key)
                s.execute("UPDATE outbox SET data = ?, size = ? WHERE seq = ?", (data, len(data), seq))

