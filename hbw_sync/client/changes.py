"""Making changes and keeping them for the relay: the op log's writer and the outbox.

A change is one transaction that (1) stamps ops with the device's HLC, (2) folds them into the
merged state with the same rule every replica uses (``hbw_sync.merge``), (3) logs them sealed at
rest, and (4) puts them into the outbox as a signed, sealed batch, all or nothing. Nothing waits
for a network.

The outbox keeps one *open* batch that later changes join until it holds ``OPEN_MAX_OPS`` ops or
a sync or bundle export closes it; closed batches never change again, so the relay can
de-duplicate them by (device, seq). The open batch is kept as pieces, one signed, sealed batch per
change, and built into full batches once when it closes (``ChangeLog._queue``): small edits do not
each pay a whole batch's framing on the wire, every change is signed and sealed the moment the
command returns, and a change costs the same however many wait.

Given the ``Ledger`` (sealed rows) and ``Versions`` (a logged document version's bytes are kept
as it is logged); ``documents``, ``incoming`` and the replica's task commands are given this.
"""

from __future__ import annotations

from typing import Any, Sequence

from .. import batch as wire
from .. import codec, crypto, hlc, merge
from ..clock import now_ms
from ..errors import UsageError
from ..i18n import _
from ..ops import Kind, Op, make_op, make_op_id
from . import docdelta
from .ledger import Ledger
from .versions import Versions

OPEN_MAX_OPS = 200
BATCH_MAX_OPS = 1000
BATCH_MAX_PLAIN = 768 * 1024  # keeps a sealed batch under the 1 MB many proxies refuse
BATCH_LEVEL = codec.BATCH_LEVEL  # one knob, in the core (STYLE.md §8)
OPEN_MAX_BYTES = 256 * 1024

#: One edit of a change: (kind, entity id, {field name: value}).
Edit = tuple[Kind, bytes, dict[str, Any]]


def _approx_size(op: Op) -> int:
    """An op's plaintext size on the wire, near enough to cut batches, without encoding it."""
    n = 48 + len(op.entity)
    for section in (op.fields, op.content or {}):
        for v in section.values():
            n += 2 + (len(v) if isinstance(v, (bytes, str)) else 9)
    return n


class ChangeLog:
    """This device's changes: made, logged, and waiting in the outbox as sealed batches."""

    def __init__(self, ledger: Ledger, versions: Versions):
        self.ledger = ledger
        self.versions = versions
        self.store = ledger.store

    # -- the op log -------------------------------------------------------------------------------

    def log(self, op: Op, device: bytes, received_ms: int | None, batch_seq: int | None) -> bool:
        """Record an op in the log; False if it was already there (a duplicate delivery).

        A document's full bytes are not logged again: they live once in `blobs` (by hash), and
        the logged op keeps the key with None, to be filled back by ``Ledger.op_from_log(with_data=True)``.
        """
        if self.ledger.is_logged(op.op_id(device)):
            return False
        content = dict(op.content or {})
        if op.kind is Kind.DOC:
            content = docdelta.expand(self.versions, op.entity, content)  # a manifest sent as a delta (§18e)
            if content.get(38) is not None and (op.content or {}).get(38) is None:
                op = Op(op.kind, op.entity, op.hlc, op.base, op.fields, content)
            self.versions.materialize(op)
            if content.get(33) is not None:
                content[33] = None
        self.ledger.write_log(op, device, received_ms, batch_seq, content)
        return True

    # -- making changes ----------------------------------------------------------------------------

    def change(self, edits: Sequence[Edit]) -> list[Op]:
        """Apply a list of (kind, entity, {field name: value}) edits as one atomic command.

        Raises:
            UsageError: a value the op format refuses ("invalid change: ..."); nothing was changed.
            ConfigError: this device is in no team yet.
        """
        led = self.ledger
        team = led.require_team()
        key = led.current_key_or_none()
        me = led.author.device_id
        made: list[Op] = []
        heads: dict[tuple[Kind, bytes], bytes | None] = {}
        with self.store.transaction():
            clock = self.store.meta("hlc", 0)
            for kind, entity, values in edits:
                clock = hlc.tick(clock, now_ms())
                st = led.load(kind, entity)
                base = heads.get((kind, entity), st.head.op_id if st and st.head else None)
                try:
                    op = make_op(kind, entity, clock, base, **values)
                except (ValueError, Exception) as e:  # ProtocolError from validation: a bad value
                    raise UsageError(_("invalid change: {e}").format(e=getattr(e, 'message', e))) from None
                stamp = merge.Stamp(op.hlc, op.op_id(me))
                led.save(merge.apply_op(st, op, stamp, led.rank(me)))
                self.log(op, me, None, None)
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
        key = self.ledger.current_key_or_none()
        if key is None:
            return 0
        me = self.ledger.author.device_id
        with self.store.transaction():
            rows = self.store.execute(
                "SELECT op_id, body FROM oplog WHERE device = ? AND batch_seq IS NULL ORDER BY hlc", (me,)
            ).fetchall()
            if rows:
                self._queue(self.ledger.require_team(), key,
                            [self.ledger.op_from_log(oid, body, True) for oid, body in rows])
        return len(rows)

    # -- the outbox ---------------------------------------------------------------------------------

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
            if n > 1 and self.ledger.current_key_or_none() is not None:
                self._rebuild_open(self.ledger.require_team(), self.ledger.current_key(), [], close_last=True)
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
            pending = [self.ledger.op_from_log(oid, body, True) for oid, body in rows]
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
        author = self.ledger.author
        me = author.device_id
        s = self.store
        t = now_ms()
        for i, chunk in enumerate(chunks):
            seq = first + i
            plain = sum(_approx_size(op) for op in chunk)
            level = BATCH_LEVEL if plain < 1 << 20 else 3  # big = a document: fast, and mostly deltas
            # or already-compressed formats, where level 19 buys little
            data = wire.encode_batch(wire.Batch(team, me, seq, key.epoch, tuple(chunk)), author, key, level=level)
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

    def reseal_outbox(self) -> None:
        """Seal every unsent batch again (after joining a relay under its team id). Only before a first sync."""
        s = self.store
        author = self.ledger.author
        with s.transaction():
            seqs = [r[0] for r in s.execute("SELECT seq FROM outbox ORDER BY seq")]
            team, key = self.ledger.require_team(), self.ledger.current_key()
            for seq in seqs:
                rows = s.execute("SELECT op_id, body FROM oplog WHERE batch_seq = ? ORDER BY hlc", (seq,)).fetchall()
                ops = tuple(self.ledger.op_from_log(oid, body, True) for oid, body in rows)
                batch = wire.Batch(team, author.device_id, seq, key.epoch, ops)
                data = wire.encode_batch(batch, author, key)
                s.execute("UPDATE outbox SET data = ?, size = ? WHERE seq = ?", (data, len(data), seq))
