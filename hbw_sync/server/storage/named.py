"""The relay's hot path as named storage methods (``RelayTxn``), one implementation per backend.

Why named methods here and portable SQL elsewhere: a sync runs these few statements for every
request of every device (look the device up, spend the nonce, store batches, hand out the
batches after a cursor, resumable upload pieces), so they are where a backend pays to do
things its own way, and where a typed answer beats a tuple: "replay" is ``use_nonce() ->
False`` and "already stored" is a ``StoredBatch``, never a driver exception (PostgreSQL
aborts the whole transaction on a key violation). The rest of the relay (enrollment,
admission, grants, snapshots, board, admin, equipment, receipts) stays on the portable SQL
subset of ``base`` (about 130 statements, run far less often).

Contract: ``tests/test_storage.py`` runs the same tests on both implementations. Every method
runs inside the caller's transaction (``base``'s rules), so the team lock covers it.

- ``SqlRelayTxn`` is the portable implementation: SQLite uses it as it is (one process, one
  writer: a statement costs microseconds, no round trip).
- ``postgres.PgRelayTxn`` reads batch bytes in binary format (BYTEA as is, not hex text).
  Both keep a sync to few statements (one PostgreSQL round trip each): ``device`` with
  ``seen_ms`` looks up and stamps in one ``UPDATE ... RETURNING``, ``add_batch`` inserts with
  ``ON CONFLICT DO NOTHING`` (looking only on a conflict), ``batches_data`` fetches every
  inline batch at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from .base import Txn


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """An enrolled device as the relay checks a request from it."""

    member: str
    author_pub: bytes
    transport_pub: bytes
    revoked_ms: int | None
    role: str


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """A batch the relay already holds (by device and seq): acknowledged again, never stored twice."""

    rseq: int
    received_ms: int
    data: bytes


@dataclass(frozen=True, slots=True)
class BatchRef:
    """A stored batch without its bytes: what ``batches_after`` lists for the budget to choose from."""

    rseq: int
    device: bytes
    received_ms: int
    size: int


class RelayTxn(Protocol):
    """The hot path's storage, inside one transaction of one team (``base`` states the rules)."""

    def device(self, device: bytes, seen_ms: int | None = None) -> DeviceRow | None:
        """The enrolled device, or None; with ``seen_ms`` also record it as seen then (undone if the
        transaction rolls back, e.g. on a bad signature)."""
        ...

    def transport_key(self, device: bytes) -> bytes | None:
        """The key that signs the device's requests, or None if it is not enrolled."""
        ...

    def use_nonce(self, key: bytes, now: int) -> bool:
        """Spend a request nonce; False: seen before (a replay), nothing changed."""
        ...

    def prune_nonces(self, before_ms: int) -> None:
        """Forget nonces older than ``before_ms`` (a replay that old fails the freshness check)."""
        ...

    def batch_by_seq(self, device: bytes, seq: int) -> StoredBatch | None:
        """The batch ``device`` sent as ``seq``, if the relay holds it."""
        ...

    def add_batch(self, device: bytes, seq: int, now: int, n_ops: int, epoch: int, data: bytes) -> int | None:
        """Append a batch under the next team sequence number (MAX + 1 under the team lock) and return it;
        None when ``device`` already sent a batch as ``seq`` (a value: nothing stored, the transaction goes on)."""
        ...

    def batches_after(self, cursor: int, limit: int) -> list[BatchRef]:
        """Up to ``limit`` stored batches after ``cursor``, in order."""
        ...

    def batch_data(self, rseq: int) -> bytes | None:
        """A stored batch's bytes."""
        ...

    def batches_data(self, after: int, upto: int, not_device: bytes, max_size: int) -> list[tuple[int, bytes]]:
        """(rseq, bytes) of the batches in (after, upto] of other devices up to ``max_size``: one statement
        for all a sync hands out inline."""
        ...

    def any_after(self, cursor: int) -> bool:
        """Whether a batch is stored after ``cursor``."""
        ...

    def upload_expire(self, before_ms: int) -> None:
        """Forget upload pieces stored before ``before_ms`` (abandoned uploads)."""
        ...

    def upload_held(self, device: bytes, seq: int, total: int) -> int:
        """Bytes held of ``device``'s upload of ``seq`` (pieces of another total are forgotten first)."""
        ...

    def upload_used(self, device: bytes) -> int:
        """Bytes of all of ``device``'s unfinished uploads."""
        ...

    def upload_oldest_other(self, device: bytes, seq: int) -> list[int]:
        """The seqs of ``device``'s other unfinished uploads, oldest first."""
        ...

    def upload_add(self, device: bytes, seq: int, offset: int, total: int, data: bytes, now: int) -> None:
        """Keep one piece at ``offset``."""
        ...

    def upload_bytes(self, device: bytes, seq: int) -> bytes:
        """The bytes held of an unfinished upload, its pieces joined in order."""
        ...

    def upload_take(self, device: bytes, seq: int) -> bytes:
        """The whole upload, its pieces joined in order, and forget them."""
        ...

    def upload_drop(self, device: bytes, seq: int) -> None:
        """Forget an unfinished upload."""
        ...


class SqlRelayTxn:
    """``RelayTxn`` in the portable SQL of ``base``, over any ``Txn`` (SQLite's as it is)."""

    __slots__ = ("t",)

    def __init__(self, txn: Txn):
        self.t = txn

    def device(self, device: bytes, seen_ms: int | None = None) -> DeviceRow | None:
        if seen_ms is None:
            row = self.t.execute(
                "SELECT d.member, d.author_pub, d.transport_pub, d.revoked_ms, m.role FROM devices d"
                " JOIN members m ON m.name = d.member WHERE d.device = ?", (device,)).fetchone()
        else:  # looked up and stamped in one statement (one round trip to PostgreSQL)
            row = self.t.execute(
                "UPDATE devices SET last_seen_ms = ? WHERE device = ? RETURNING member, author_pub, transport_pub,"
                " revoked_ms, (SELECT m.role FROM members m WHERE m.name = devices.member)",
                (seen_ms, device)).fetchone()
        return None if row is None else DeviceRow(row[0], bytes(row[1]), bytes(row[2]), row[3], row[4])

    def transport_key(self, device: bytes) -> bytes | None:
        row = self.t.execute("SELECT transport_pub FROM devices WHERE device = ?", (device,)).fetchone()
        return None if row is None else bytes(row[0])

    def use_nonce(self, key: bytes, now: int) -> bool:
        return self.t.execute("INSERT INTO nonces (nonce, time_ms) VALUES (?, ?) ON CONFLICT (nonce) DO NOTHING",
                              (key, now)).rowcount == 1

    def prune_nonces(self, before_ms: int) -> None:
        self.t.execute("DELETE FROM nonces WHERE time_ms < ?", (before_ms,))

    def batch_by_seq(self, device: bytes, seq: int) -> StoredBatch | None:
        row = self.t.execute("SELECT rseq, received_ms, data FROM batches WHERE device = ? AND seq = ?",
                             (device, seq)).fetchone()
        return None if row is None else StoredBatch(row[0], row[1], bytes(row[2]))

    def add_batch(self, device: bytes, seq: int, now: int, n_ops: int, epoch: int, data: bytes) -> int | None:
        row = self.t.execute(
            "INSERT INTO batches (rseq, device, seq, received_ms, size, n_ops, epoch, data)"
            " VALUES ((SELECT COALESCE(MAX(rseq), 0) + 1 FROM batches), ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (device, seq) DO NOTHING RETURNING rseq",
            (device, seq, now, len(data), n_ops, epoch, data),
        ).fetchone()
        return None if row is None else row[0]

    def batches_after(self, cursor: int, limit: int) -> list[BatchRef]:
        return [BatchRef(r[0], bytes(r[1]), r[2], r[3]) for r in self.t.execute(
            "SELECT rseq, device, received_ms, size FROM batches WHERE rseq > ? ORDER BY rseq LIMIT ?",
            (cursor, limit))]

    def batch_data(self, rseq: int) -> bytes | None:
        row = self.t.execute("SELECT data FROM batches WHERE rseq = ?", (rseq,)).fetchone()
        return None if row is None else bytes(row[0])

    def batches_data(self, after: int, upto: int, not_device: bytes, max_size: int) -> list[tuple[int, bytes]]:
        return [(r[0], bytes(r[1])) for r in self.t.execute(
            "SELECT rseq, data FROM batches WHERE rseq > ? AND rseq <= ? AND device != ? AND size <= ?",
            (after, upto, not_device, max_size))]

    def any_after(self, cursor: int) -> bool:
        return self.t.execute("SELECT 1 FROM batches WHERE rseq > ? LIMIT 1", (cursor,)).fetchone() is not None

    def upload_expire(self, before_ms: int) -> None:
        self.t.execute("DELETE FROM upload_chunks WHERE created_ms < ?", (before_ms,))

    def upload_held(self, device: bytes, seq: int, total: int) -> int:
        self.t.execute("DELETE FROM upload_chunks WHERE device = ? AND seq = ? AND total != ?", (device, seq, total))
        return int(self.t.execute("SELECT COALESCE(SUM(length(data)), 0) FROM upload_chunks"
                                  " WHERE device = ? AND seq = ?", (device, seq)).fetchone()[0])

    def upload_used(self, device: bytes) -> int:
        return int(self.t.execute("SELECT COALESCE(SUM(length(data)), 0) FROM upload_chunks WHERE device = ?",
                                  (device,)).fetchone()[0])

    def upload_oldest_other(self, device: bytes, seq: int) -> list[int]:
        return [r[0] for r in self.t.execute(
            "SELECT seq FROM upload_chunks WHERE device = ? AND seq != ? GROUP BY seq ORDER BY MIN(created_ms)",
            (device, seq)).fetchall()]

    def upload_add(self, device: bytes, seq: int, offset: int, total: int, data: bytes, now: int) -> None:
        self.t.execute('INSERT INTO upload_chunks (device, seq, "offset", total, data, created_ms)'
                       " VALUES (?, ?, ?, ?, ?, ?)", (device, seq, offset, total, data, now))

    def upload_bytes(self, device: bytes, seq: int) -> bytes:
        return b"".join(bytes(r[0]) for r in self.t.execute(
            'SELECT data FROM upload_chunks WHERE device = ? AND seq = ? ORDER BY "offset"', (device, seq)))

    def upload_take(self, device: bytes, seq: int) -> bytes:
        data = self.upload_bytes(device, seq)
        self.upload_drop(device, seq)
        return data

    def upload_drop(self, device: bytes, seq: int) -> None:
        self.t.execute("DELETE FROM upload_chunks WHERE device = ? AND seq = ?", (device, seq))


def relay_txn(txn: Txn) -> RelayTxn:
    """The named methods of this transaction's backend (PostgreSQL's transaction makes its own)."""
    named: Any = getattr(txn, "named", None)
    return named() if named is not None else SqlRelayTxn(txn)
