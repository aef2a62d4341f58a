"""The replica's sealed state at rest: team keys, who is who, entities, the op log, blobs, problems.

Every part of an unlocked replica (``versions``, ``changes``, ``documents``, ``incoming``) is
given this one object in its constructor and reads and writes the store through it, so the
sealing rules (which associated data each row is sealed with) live in one place and no part
reaches into another through a shared ``self`` (STYLE.md §3). It knows nothing of documents'
deltas, the outbox or the network: those parts sit above it, and it never imports them.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .. import crypto, features, merge
from ..clock import now_ms
from ..errors import ConfigError, IntegrityError, UsageError
from ..i18n import _
from ..ops import Kind, Op, routing_row
from . import docdelta, keyflow, notices
from .store import Store, _pack, _unpack
from .vault import Sealer

_TASK_LIST = ("assignee", "status", "due", "priority", "needs", "pinned")


class Ledger:
    """The sealed rows of one unlocked store, read and written with its store key and author."""

    def __init__(self, store: Store, sealer: Sealer, author: crypto.DeviceKey):
        self.store = store
        self.sealer = sealer
        self.author = author

    # -- team and keys ---------------------------------------------------------------------------

    def require_team(self) -> bytes:
        """The team id. Raises ConfigError ``config.no_team`` while the device is in no team."""
        team = self.store.meta("team_id")
        if team is None:
            raise ConfigError(_("this device is not in a team yet"), code="config.no_team")
        return bytes(team)

    def add_team_key(self, key: crypto.TeamKey) -> None:
        """Keep a team key sealed; the newest epoch becomes the one new changes are sealed with."""
        with self.store.transaction():
            self.store.execute(
                "INSERT OR REPLACE INTO team_keys (epoch, key_id, sealed) VALUES (?, ?, ?)",
                (key.epoch, key.key_id, self.sealer.seal(key.secret, b"team_key:%d" % key.epoch)),
            )
            if key.epoch >= (self.store.meta("key_epoch") or 0):
                self.store.set_meta("key_epoch", key.epoch)
            keyflow.key_added(self.store, key.epoch)

    def team_keys(self) -> dict[int, crypto.TeamKey]:
        """Every team key this device holds, by epoch (older epochs open older batches)."""
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
        """The key new changes are sealed with. Raises ConfigError when this device holds none."""
        epoch = self.store.meta("key_epoch")
        keys = self.team_keys()
        if epoch not in keys:
            raise ConfigError(_("this device holds no team key"), hint=_("create a team or join one"))
        return keys[epoch]

    # -- who is who -------------------------------------------------------------------------------

    def relay_device(self) -> bytes | None:
        """The relay's device id (it signs rebalancing batches); None before a first sync."""
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

    def rank(self, device: bytes) -> int:
        """The author's role for the assignment policy: relay 0, member 1, supervisor 2."""
        if device == self.relay_device():
            return merge.RANK_RELAY
        if device == self.author.device_id:
            role = self.store.meta("role")
        else:
            entry = (self.store.meta("roster_keys") or {}).get(device.hex())
            role = entry[4] if entry and len(entry) > 4 else "member"
        return merge.RANK_SUPERVISOR if role == "supervisor" else merge.RANK_MEMBER

    def device_names(self) -> dict[bytes, str]:
        """Member name by device id: the roster's devices and this one."""
        names = {bytes.fromhex(k): v for k, v in (self.store.meta("roster") or {}).items()}
        names[self.author.device_id] = self.store.meta("member")
        return names

    def everyone_reads(self, bit: int) -> bool:
        """Whether every other active device of the roster declared ``bit`` (``features.py``): a writer may
        then send the form that bit names (a derived manifest, PROTOCOL.md §18e) and no device refuses it.

        Revoked devices and this one do not count; a roster of this device alone gives True. A device
        that never declared (an older hbw-sync, or a relay from before ``reads``) reads 0.
        """
        roster = self.store.meta("roster_keys") or {}
        reads = self.store.meta("roster_reads") or {}
        return not features.lacking(roster, reads, self.author.device_id.hex(), bit)

    # -- entities ---------------------------------------------------------------------------------

    @staticmethod
    def _where(kind: Kind, entity: bytes) -> bytes:
        return b"entity:%d:" % kind + entity

    def load(self, kind: Kind, entity: bytes) -> merge.EntityState | None:
        """An entity's merged state, opened; None if this device has never heard of it."""
        row = self.store.execute("SELECT state FROM entities WHERE kind = ? AND id = ?", (int(kind), entity)).fetchone()
        if row is None:
            return None
        return merge.state_from_wire(_unpack(self.sealer.open(row[0], self._where(kind, entity))))

    def save(self, st: merge.EntityState) -> None:
        """Keep an entity's merged state sealed, its routing columns in clear, and its new conflicts."""
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
            names = self.device_names()
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
        return bytes(rows[0][0])

    # -- the op log -------------------------------------------------------------------------------

    def is_logged(self, op_id: bytes) -> bool:
        """Whether the op is in the log already (a duplicate delivery)."""
        return self.store.execute("SELECT 1 FROM oplog WHERE op_id = ?", (op_id,)).fetchone() is not None

    def write_log(self, op: Op, device: bytes, received_ms: int | None, batch_seq: int | None,
                  content: dict[Any, Any]) -> None:
        """Append an op to the log, sealed, with ``content`` (the caller's: a document's bytes left out)."""
        op_id = op.op_id(device)
        body = self.sealer.seal(_pack([routing_row(op), content]), b"op:" + op_id)
        self.store.execute(
            "INSERT INTO oplog (op_id, kind, entity, device, hlc, received_ms, batch_seq, body)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (op_id, int(op.kind), op.entity, device, op.hlc, received_ms, batch_seq, body),
        )

    def rewrite_log(self, op_id: bytes, op: Op, content: dict[Any, Any]) -> None:
        """Seal a logged op again with new local content: a derived manifest worked out after the op was
        logged (``docdelta.resolve``). The op's id, routing and place in the log do not change."""
        body = self.sealer.seal(_pack([routing_row(op), content]), b"op:" + op_id)
        self.store.execute("UPDATE oplog SET body = ? WHERE op_id = ?", (body, op_id))

    def op_from_log(self, op_id: bytes, body: bytes, with_data: bool = False) -> Op:
        """An op from the log; ``with_data`` restores a document version's bytes (to seal it again)."""
        row, content = _unpack(self.sealer.open(body, b"op:" + op_id))
        kind, entity, ts, base, fields = row
        if with_data and kind == Kind.DOC and 33 in content and content[33] is None:
            data = self.blob(content[34])
            if data is None:
                raise IntegrityError(_("a document version's bytes are missing from the store"), code="integrity.store")
            content[33] = data
        if with_data and kind == Kind.DOC:
            content = docdelta.wire_content(content)  # sealed again as sent: the manifest as its delta
        return Op(Kind(kind), entity, ts, base, fields, content)

    # -- blobs: every inline document version's bytes, once, by SHA-256 -----------------------------

    def blob(self, digest: bytes) -> bytes | None:
        """A version's bytes kept whole here (opened, not checked against the hash); None if not here."""
        row = self.store.execute("SELECT nonce, sealed FROM blobs WHERE sha256 = ?", (digest,)).fetchone()
        return None if row is None else self.sealer.open_parts(row[0], row[1], b"blob:" + digest)

    def has_blob(self, digest: bytes) -> bool:
        return self.store.execute("SELECT 1 FROM blobs WHERE sha256 = ?", (digest,)).fetchone() is not None

    def put_blob(self, data: bytes) -> tuple[bytes, bool]:
        """Keep bytes sealed by their SHA-256; (digest, True if they were not here before)."""
        digest = hashlib.sha256(data).digest()
        if self.has_blob(digest):
            return digest, False
        nonce, sealed = self.sealer.seal_parts(data, b"blob:" + digest)
        self.store.execute("INSERT INTO blobs (sha256, size, nonce, sealed) VALUES (?, ?, ?, ?)",
                           (digest, len(data), nonce, sealed))
        return digest, True

    # -- problems -----------------------------------------------------------------------------------

    def problem(self, text: str, *, code: str | None = None, params: dict[str, Any] | None = None) -> None:
        """Log a problem of an apply run: ``text`` in English, ``(code, params)`` worded when shown."""
        with self.store.transaction():
            notices.add_log(self.store, now_ms(), now_ms(), False, "apply", text, code, params)
