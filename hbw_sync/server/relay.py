"""What the relay does with a request, as functions over one storage transaction (``storage.Txn``).

Each function runs inside one transaction (the SQLite writer's, or a PostgreSQL
pool's: ``storage``), in the portable SQL ``storage/base.py`` defines, so
a request is applied whole or not at all, and its response is sent only after
the commit. No aiohttp here: the app module moves bytes, this module decides.

The relay checks everything it can without the team key: the request's
signature, freshness and nonce; the device's enrollment and revocation; each
batch's framing, team, author signature and routing section. It stores
batches append-only under a team-wide sequence number (``rseq``), idempotently
by (device, seq), and hands each device what it has not seen, within a byte
budget.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from .. import batch as wire
from .. import snapshot as snap_fmt
from .. import clock, codec, crypto, envelope
from .. import bundle, wordcode
from . import admission, bundle_ingest, bundle_replies, receipts
from .. import enroll as enroll_mod
from ..enroll import token_hash
from ..errors import (AccessError, HbwError, IntegrityError, LimitError, ProtocolError, RevokedError,
                      TransientError, UsageError)
from ..i18n import _, ngettext
from ..ops import is_member_name
from . import chunk_actions, limits
from . import chunkstore
from .storage import Txn
from .storage.named import relay_txn

DEFAULT_BUDGET = 200_000
MAX_BUDGET = 8 * 1024 * 1024
NONCE_KEEP_MS = 2 * envelope.MAX_REQUEST_SKEW_MS + 60_000
#: Ask devices for a new snapshot once this many batches came after the last one.
SNAPSHOT_EVERY = 500
#: ... or once the bytes of batches after it reach this share of its size: a late joiner then
#: downloads about 1.5x a fresh snapshot, whatever the history's shape (many small batches of
#: edits weigh more than the state they leave; issue 11). A snapshot costs its author its size in
#: upload, so asking when history reaches half of it keeps that under twice the history's bytes.
SNAPSHOT_BYTES_PERCENT = 50
#: With no snapshot yet, nobody is asked below this many bytes of history: cheap to replay.
SNAPSHOT_MIN_BYTES = 16_384
#: Batches larger than this are handed out by reference and fetched in resumable chunks.
INLINE_MAX = 64 * 1024
CHUNK_MAX = limits.CHUNK_MAX
BOARD_LIMITS = codec.Limits(max_container=1_000_000)


now_ms = clock.now_ms  # the one wall clock (hbw_sync/clock.py); callers import it from here too


@dataclass(frozen=True)
class RelayIdentity:
    team: bytes
    team_name: str
    key: crypto.DeviceKey  # signs responses; its public key is pinned by invites
    chunks: Any = None  # the team's document chunks (chunkstore.ChunkStore): index in the txn, bytes per backend


# -- small helpers ----------------------------------------------------------------------------------


def meta(conn: Txn, key: str, default: Any = None) -> Any:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return default if row is None else codec.unpack(row[0])


def set_meta(conn: Txn, key: str, value: Any) -> None:
    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                 (key, codec.pack(value)))


def audit(conn: Txn, actor: str | None, action: str, *, now: int, **detail: Any) -> None:
    """Record who did what at ``now`` (the request's time, or the admin command's: the clock is read
    at the edge, STYLE.md §2), with ``detail`` as JSON (bytes as hex)."""
    conn.execute(
        "INSERT INTO audit (time_ms, actor, action, detail) VALUES (?, ?, ?, ?)",
        (now, actor, action, json.dumps(detail, default=lambda b: b.hex() if isinstance(b, bytes) else str(b))),
    )


def bump_roster(conn: Txn, *, device: bytes | None = None, member: str | None = None) -> None:
    """A roster entry changed: new version, stamped on the entries that changed (sent as deltas)."""
    v = meta(conn, "roster_v", 0) + 1
    set_meta(conn, "roster_v", v)
    if device is not None:
        conn.execute("UPDATE devices SET roster_v = ? WHERE device = ?", (v, device))
    if member is not None:
        conn.execute("UPDATE devices SET roster_v = ? WHERE member = ?", (v, member))


def roster(conn: Txn, since: int | None = None) -> dict[bytes, list[Any]]:
    """device -> [member, author key, X25519 key, revoked ms, role]; only entries changed after ``since``.

    A team of 1,000 devices has a 98 KB roster: a device that knows version N gets the few
    entries that changed since, not all of them again.
    """
    return roster_with_reads(conn, since)[0]


def roster_with_reads(conn: Txn, since: int | None = None) -> tuple[dict[bytes, list[Any]], dict[bytes, int]]:
    """``roster`` and, for the same devices, what each declared it reads (0: never declared), in one statement.

    The bits travel beside the entries (result key ``reads``), never inside them: older clients
    unpack the five-element entries and ignore a key they do not know (PROTOCOL.md §16, §21).
    """
    sql = ("SELECT d.device, d.member, d.author_pub, d.x25519_pub, d.revoked_ms, m.role, COALESCE(d.reads, 0)"
           " FROM devices d JOIN members m ON m.name = d.member")
    rows = conn.execute(sql + (" WHERE COALESCE(d.roster_v, 0) > ?" if since is not None else ""),
                        (() if since is None else (since,))).fetchall()
    return ({d: [m, a, x, r, role] for d, m, a, x, r, role, _reads in rows},
            {d: int(reads) for d, *_entry, reads in rows})


def declare_reads(conn: Txn, device: bytes, reads: int | None) -> bool:
    """Keep what ``device`` says its software reads (sync arg ``reads``, checked by ``limits``); True if it changed.

    A change is a roster change (``bump_roster``), in the same write: every device learns it at
    its next sync, as a roster delta. Absent (None) is 0: a client that says nothing is an older
    hbw-sync, and one moved back to an older release after a newer one declared must not keep the
    newer one's bits (writers would send it forms it refuses). One conditional update, its row
    count the verdict, so an unchanged value (every sync) writes nothing else.
    """
    if reads is None:
        reads = 0
    if conn.execute("UPDATE devices SET reads = ? WHERE device = ? AND COALESCE(reads, 0) <> ?",
                    (reads, device, reads)).rowcount != 1:
        return False
    bump_roster(conn, device=device)
    return True


def team_keys(conn: Txn) -> dict[int, bytes]:
    return dict(conn.execute("SELECT epoch, key_id FROM keys").fetchall())


def _device_row(conn: Txn, device: bytes) -> tuple | None:
    row = relay_txn(conn).device(device)
    return None if row is None else (row.member, row.author_pub, row.transport_pub, row.revoked_ms, row.role)


def _use_nonce(conn: Txn, req: envelope.Request, now: int) -> None:
    rt = relay_txn(conn)
    if not rt.use_nonce(req.device + req.nonce, now):  # a value (storage.named), raised here as the refusal
        raise AccessError("this request was already received once (a replay); it was ignored",
                          code="access.replay")
    if now % 97 == 0:  # prune now and then, not on every request
        rt.prune_nonces(now - NONCE_KEEP_MS)


def authenticate(conn: Txn, req: envelope.Request, now: int, fresh: bool = True) -> tuple[str, str, bytes]:
    """(member, role, author public key) of a fresh, signed, non-replayed request from an enrolled device.

    ``fresh=False`` is for bundles, which spend days in the mail: their replay protection is
    a per-device counter instead of the clock (see ``ingest_bundle``).
    """
    if fresh:
        envelope.check_fresh(req, now)
    # Seen now, and its row, in one statement (one round trip to PostgreSQL under the team's lock);
    # a refusal below raises, and the transaction's rollback undoes the stamp.
    row = relay_txn(conn).device(req.device, seen_ms=now)
    if row is None:
        raise AccessError("this device is not enrolled in the team", code="access.unknown_device",
                          hint="join with an invite: hbw-sync join INVITE")
    req.verify(row.transport_pub)
    if row.revoked_ms is not None:
        raise RevokedError("this device was revoked by the office; it can no longer sync",
                           hint="ask office IT to enroll this device again if it was found")
    if fresh:
        _use_nonce(conn, req, now)
    return row.member, row.role, row.author_pub


# -- enrollment --------------------------------------------------------------------------------------


def create_invite(conn: Txn, member: str, role: str, token: bytes, ttl_days: int, actor: str, now: int,
                  *, words: bool = False) -> None:
    if not is_member_name(member):
        raise UsageError(f"{member!r} is not a valid member name", hint="1-32 of a-z, 0-9, '.', '_', '-'")
    if role not in ("member", "supervisor"):
        raise UsageError("role must be 'member' or 'supervisor'")
    conn.execute(
        "INSERT INTO invites (token_hash, member, role, created_ms, expires_ms) VALUES (?, ?, ?, ?, ?)",
        (token_hash(token), member, role, now, now + ttl_days * 86_400_000),
    )
    audit(conn, actor, "invite", now=now, member=member, role=role, ttl_days=ttl_days, **({"words": True} if words else {}))


def create_code(conn: Txn, invite_text: str, token: bytes, invite_expires_ms: int,
                now: int) -> tuple[int, tuple[str, ...]]:
    """Keep ``invite_text`` sealed under a new word code (PROTOCOL.md §14a); returns (slot, words)."""
    conn.execute("DELETE FROM invite_codes WHERE expires_ms < ?", (now,))
    taken = {r[0] for r in conn.execute("SELECT slot FROM invite_codes")}
    for _attempt in range(100):
        slot, words = wordcode.new_code()
        if slot not in taken:
            break
    else:
        raise UsageError("too many word codes are waiting to be used; use the full invite, or wait for some to expire")
    proof, seal_key = wordcode.derive(slot, words)
    conn.execute("INSERT INTO invite_codes (slot, proof_digest, sealed, token_hash, expires_ms) VALUES (?, ?, ?, ?, ?)",
                 (slot, wordcode.proof_digest(proof), wordcode.seal_invite(seal_key, slot, invite_text),
                  token_hash(token), min(invite_expires_ms, now + wordcode.CODE_TTL_MS)))
    return slot, words


def fetch_code(conn: Txn, ident: RelayIdentity, body: bytes,
               now: int) -> tuple[bytes | AccessError, dict[str, Any]]:
    """POST /v1/code: [1, slot, proof] in, the sealed invite out (msgpack bin). No signature can be checked
    yet (the device has no enrollment), so the request is bounded and every wrong proof is counted.

    A wrong proof is *returned* as an AccessError, not raised: its count and audit entry must be
    committed, and a raised error rolls the transaction back. The app answers it after the commit.
    """
    slot, proof = wordcode.parse_fetch_request(body)
    stats = {"action": "code", "device": "-", "batches_in": 0, "batches_out": 0}
    window = now - wordcode.FAILURE_WINDOW_MS
    conn.execute("DELETE FROM code_failures WHERE time_ms < ?", (window,))
    if conn.execute("SELECT COUNT(*) FROM code_failures").fetchone()[0] >= wordcode.MAX_FAILURES_PER_WINDOW:
        raise TransientError("too many wrong word codes were tried recently; the relay is not answering codes "
                             "for a few minutes", code="transient.code_rate",
                             hint="try again in 10 minutes, or use the full invite")
    row = conn.execute("SELECT proof_digest, sealed, expires_ms, failures FROM invite_codes WHERE slot = ?",
                       (slot,)).fetchone()
    if row is None or row[2] < now:  # counted too: trying numbers is guessing as well
        conn.execute("INSERT INTO code_failures (time_ms) VALUES (?)", (now,))
        return AccessError(f"no invite waits under code {slot}: it was used, it expired, or the number is wrong",
                           code="access.code", hint="ask office IT for a new code",
                           params={"case": "no_invite", "slot": slot}), stats
    digest, sealed, _exp, failures = row
    if not hmac.compare_digest(digest, wordcode.proof_digest(proof)):
        conn.execute("INSERT INTO code_failures (time_ms) VALUES (?)", (now,))
        left = wordcode.MAX_FAILURES_PER_SLOT - failures - 1
        if left <= 0:
            conn.execute("DELETE FROM invite_codes WHERE slot = ?", (slot,))
        else:
            conn.execute("UPDATE invite_codes SET failures = failures + 1 WHERE slot = ?", (slot,))
        audit(conn, None, "code_failed", now=now, slot=slot, tries_left=max(left, 0))
        return AccessError(f"the words do not match code {slot}" +
                           (f" ({left} tries left)" if left > 0 else "; the code is now cancelled"),
                           code="access.code", hint="check the words with office IT",
                           params={"case": "words" if left > 0 else "cancelled", "slot": slot, "left": max(left, 0)}), stats
    return codec.pack(sealed), stats


def _enroll_args(req: envelope.Request, now: int) -> tuple[bytes, bytes, bytes, bytes, str, Any]:
    """An enroll request's (token, author, transport and X25519 keys, label, proof), its signature checked.

    No transaction needed: ``prepare`` runs it before one (off the writer, outside the team's lock);
    ``enroll`` runs it again, where ``req.verify`` is then free (``verified_with``).
    """
    envelope.check_fresh(req, now)
    a = req.args
    try:
        token, author_pub, transport_pub, x_pub = a["token"], a["author_pub"], a["transport_pub"], a["x25519_pub"]
        label = a.get("label", "")
    except KeyError:
        raise ProtocolError("enrollment request lacks keys or token", code="protocol.schema") from None
    if not all(isinstance(v, bytes) and len(v) == 32 for v in (author_pub, transport_pub, x_pub)):
        raise ProtocolError("enrollment keys must be 32 bytes each", code="protocol.schema")
    if crypto.device_id_for(author_pub) != req.device:
        raise ProtocolError("device id does not match its author key", code="protocol.schema")
    if not isinstance(token, bytes) or len(token) != enroll_mod.TOKEN_LEN:
        raise ProtocolError("the invite token must be 16 bytes", code="protocol.schema")
    proof = admission.check_proof_arg(a)
    req.verify(transport_pub)
    return token, author_pub, transport_pub, x_pub, label, proof


def enroll(conn: Txn, ident: RelayIdentity, req: envelope.Request, now: int) -> dict[str, Any]:
    """Enroll a new device with a one-time invite token; its own keys sign the request."""
    token, author_pub, transport_pub, x_pub, label, proof = _enroll_args(req, now)
    inv = conn.execute(
        "SELECT member, role, expires_ms, used_ms, device FROM invites WHERE token_hash = ?", (token_hash(token),)
    ).fetchone()
    if inv is None:
        raise AccessError("this invite is not valid for this relay", code="access.invite", params={"case": "other_relay"})
    member, role, expires_ms, used_ms, used_by = inv
    if used_ms is not None:
        same = used_by == req.device and conn.execute(
            "SELECT 1 FROM devices WHERE device = ? AND author_pub = ? AND transport_pub = ? AND x25519_pub = ?"
            " AND revoked_ms IS NULL", (req.device, author_pub, transport_pub, x_pub)).fetchone()
        if not same:
            raise AccessError("this invite was already used; ask for a new one", code="access.invite",
                              params={"case": "used"})
        _use_nonce(conn, req, now)  # the same device and keys again: its answer was lost on the way
        again = {"team": ident.team, "team_name": ident.team_name, "member": member, "role": role,
                 "relay_x25519": enroll_mod.x25519_public(bundle.relay_x25519(ident.key)),
                 "keys": team_keys(conn)}
        if (w := admission.welcome_for(conn, req.device)) is not None:
            again["welcome"] = w
        return again
    if expires_ms < now:
        raise AccessError("this invite has expired; ask for a new one", code="access.invite", params={"case": "expired"})
    if conn.execute("SELECT 1 FROM devices WHERE device = ?", (req.device,)).fetchone():
        raise AccessError("this device is already enrolled", code="access.invite", params={"case": "enrolled"})
    _use_nonce(conn, req, now)
    # The one-time use is one conditional update, its row count the verdict: two devices enrolling
    # with one invite at once (two relay processes, or a transaction that read before the other
    # committed) cannot both see it unused and both succeed.
    if conn.execute("UPDATE invites SET used_ms = ?, device = ? WHERE token_hash = ? AND used_ms IS NULL"
                    " AND expires_ms >= ?", (now, req.device, token_hash(token), now)).rowcount != 1:
        raise AccessError("this invite was already used; ask for a new one", code="access.invite", params={"case": "used"})
    conn.execute("INSERT INTO members (name, role, created_ms) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
                 (member, role, now))
    if role == "supervisor":
        conn.execute("UPDATE members SET role = ? WHERE name = ?", (role, member))
    conn.execute(
        "INSERT INTO devices (device, member, author_pub, transport_pub, x25519_pub, enrolled_ms, last_seen_ms, label)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (req.device, member, author_pub, transport_pub, x_pub, now, now, label),
    )
    conn.execute("DELETE FROM invite_codes WHERE token_hash = ?", (token_hash(token),))  # one-time
    bump_roster(conn, member=member)  # this device, and a role change of the member's other devices
    audit(conn, member, "enroll", now=now, device=req.device, label=label)
    welcome = admission.enrolled(conn, req.device, token, proof, now)
    out = {
        "team": ident.team,
        "team_name": ident.team_name,
        "member": member,
        "role": role,
        "keys": team_keys(conn),
        "relay_x25519": enroll_mod.x25519_public(bundle.relay_x25519(ident.key)),
    }
    if welcome is not None:
        out["welcome"] = welcome
    return out


def find_device(conn: Txn, device_prefix: str) -> bytes:
    """The one device id starting with ``device_prefix`` (hex); UsageError when none or several."""
    if not device_prefix or any(c not in "0123456789abcdef" for c in device_prefix.lower()):
        raise UsageError(f"no device {device_prefix!r}", hint="device ids are hex digits; see 'hbw-relay devices'")
    prefix = device_prefix.lower()  # matched here, not in SQL: hex() is SQLite's (an admin command, <= 1,000 rows)
    rows = [r for r in conn.execute("SELECT device FROM devices").fetchall() if r[0].hex().startswith(prefix)]
    if not rows:
        raise UsageError(f"no device {device_prefix!r}", hint="see 'hbw-relay devices'")
    if len(rows) > 1:
        raise UsageError(f"device {device_prefix!r} is ambiguous", hint="give more digits")
    return rows[0][0]


def revoke(conn: Txn, device_prefix: str, actor: str, now: int) -> tuple[bytes, str]:
    """Revoke a device at ``now``: later requests from it are refused, supervisors are asked to rotate the key."""
    device = find_device(conn, device_prefix)
    member, revoked = conn.execute("SELECT member, revoked_ms FROM devices WHERE device = ?", (device,)).fetchone()
    if revoked is None:
        conn.execute("UPDATE devices SET revoked_ms = ? WHERE device = ?", (now, device))
        set_meta(conn, "rotation_wanted", True)
        if not meta(conn, "rotation_since"):
            set_meta(conn, "rotation_since", now)
        bump_roster(conn, device=device)
        audit(conn, actor, "revoke", now=now, device=device, member=member)
    return device, member


# -- sync ---------------------------------------------------------------------------------------------


def check_batch(team: bytes, device: bytes, author_pub: bytes, data: bytes) -> tuple[Any, tuple[int, list[bytes]]]:
    """A batch's frame and routing summary (number of ops, document versions' chunk ids), checked as far
    as they can be without the database.

    Framing, team, author, epoch, the author's signature, and the routing section's decoding:
    the CPU of a sync, done by ``prepare`` before the transaction (off the writer, outside the
    team's lock), so that the transaction only reads and writes.
    """
    frame = wire.parse_batch(data)
    if frame.team != team:
        raise IntegrityError("batch belongs to another team", code="integrity.team")
    if frame.device != device:
        raise AccessError("a device may only send its own batches", code="access.not_author")
    if frame.epoch == 0:
        raise AccessError("epoch 0 (unsealed) is reserved for the relay's own changes", code="access.epoch")
    frame.verify(author_pub)
    return frame, frame.routing_summary()


def _accept_batch(conn: Txn, ident: RelayIdentity, device: bytes, author_pub: bytes, data: bytes,
                  now: int, checked: Any = None) -> list[Any]:
    """Store one batch idempotently; returns the ack [seq, rseq, received_ms].

    ``checked``: what ``prepare`` found for it, (author key it used, (frame, routing summary) or the error);
    used only if that key is still the device's.
    """
    if checked is not None and checked[0] == author_pub:
        if isinstance(checked[1], HbwError):
            raise checked[1]
        frame, ops = checked[1]
    else:
        frame, ops = check_batch(ident.team, device, author_pub, data)
    n_ops, chunk_lists = ops
    # Insert first, look only on a conflict: a new batch (the common case) costs one statement.
    rt = relay_txn(conn)
    rseq = rt.add_batch(device, frame.seq, now, n_ops, frame.epoch, data)
    if rseq is None:  # sent again (its answer was lost): the same ack, or a refusal if the content differs
        old = rt.batch_by_seq(device, frame.seq)
        assert old is not None
        if old.data != data:
            raise ProtocolError(f"batch {frame.seq} was already received with other content", code="protocol.seq_reuse")
        return [frame.seq, old.rseq, old.received_ms]
    chunk_actions.record_ref_ids(conn, rseq, chunk_lists)  # which chunks its document versions use (GC)
    return [frame.seq, rseq, now]


def insert_batch(conn: Txn, device: bytes, seq: int, now: int, n_ops: int, epoch: int, data: bytes) -> int:
    """Append a batch under the next team sequence number (``rseq``) and return it.

    MAX + 1, not an autoincrement: the transaction holds the team's lock (``storage/base.py``),
    so numbers have no gaps or duplicates and commit in order, which a PostgreSQL sequence
    would not promise across concurrent transactions.
    """
    rseq = relay_txn(conn).add_batch(device, seq, now, n_ops, epoch, data)
    if rseq is None:
        raise ProtocolError(f"batch {seq} of this device is already stored", code="protocol.seq_reuse")
    return rseq


def _batch_seq(data: bytes) -> int:
    """The seq a refused batch's frame names (0 when too short), for the device's rejects list."""
    return int.from_bytes(data[22:30], "big") if len(data) >= 30 else 0


def _bundle_chunks(conn: Txn, ident: RelayIdentity, pieces: list[Any], member: str, now: int) -> None:
    """Store a bundle's sealed chunks with ``chunk_put``'s checks; over the quota the whole bundle is refused."""
    if ident.chunks is None:
        raise ProtocolError(_("this relay keeps no document chunks, and this bundle carries some"),
                            code="protocol.chunk")
    try:
        chunk_actions.chunk_put(conn, ident.chunks, ident.team, {"chunks": pieces}, now)
    except LimitError as e:
        if e.code != "protocol.quota":
            raise
        size = sum(len(p[1]) for p in pieces)
        raise LimitError(ngettext("the bundle from {member} carries {n} document chunk ({size} bytes) that would take the "
                                  "team past its document quota at this relay: nothing of this bundle was applied",
                                  "the bundle from {member} carries {n} document chunks ({size} bytes) that would take "
                                  "the team past its document quota at this relay: nothing of this bundle was applied",
                                  len(pieces)).format(
                               member=member, n=len(pieces), size=size),
                         code="protocol.quota", hint=e.hint) from None


def sync(conn: Txn, ident: RelayIdentity, req: envelope.Request, now: int,
         by_bundle: bool = False, checked: list[Any] | None = None) -> dict[str, Any]:
    """A device's sync: its batches in, what it has not seen out. ``checked``: ``Prepared.batches``."""
    result, role = sync_push(conn, ident, req, now, by_bundle, checked)
    return sync_pull(conn, ident, req, result, role, by_bundle)


def sync_push(conn: Txn, ident: RelayIdentity, req: envelope.Request, now: int, by_bundle: bool = False,
              checked: list[Any] | None = None) -> tuple[dict[str, Any], str]:
    """What a sync writes (its batches, key, grants, admission, snapshot): the part that needs the team's
    lock. Returns the result so far (acks, rejects) and the device's role, for ``sync_pull``."""
    member, role, author_pub = authenticate(conn, req, now, fresh=not by_bundle)
    a = req.args
    device = req.device
    if by_bundle and a.get("chunks"):  # kept before the batches that name them (§18f), as chunk_put online
        _bundle_chunks(conn, ident, a["chunks"], member, now)
    acks, rejects = [], []
    for i, data in enumerate(a.get("batches", [])):
        if not isinstance(data, bytes):
            raise ProtocolError("batches must be bytes", code="protocol.schema")
        pre = checked[i] if checked is not None and i < len(checked) else None
        if pre is not None and pre[0] == author_pub:
            # Checked before the transaction: a refusal changed nothing, and an accepted batch
            # writes only after its last check (seq reuse), so no savepoint is needed.
            try:
                if isinstance(pre[1], HbwError):
                    raise pre[1]
                acks.append(_accept_batch(conn, ident, device, author_pub, data, now, pre))
            except HbwError as e:
                rejects.append([_batch_seq(data), e.to_dict()])
            continue
        conn.execute("SAVEPOINT b")
        try:
            acks.append(_accept_batch(conn, ident, device, author_pub, data, now, pre))
            conn.execute("RELEASE SAVEPOINT b")
        except HbwError as e:
            conn.execute("ROLLBACK TO SAVEPOINT b")
            conn.execute("RELEASE SAVEPOINT b")
            rejects.append([_batch_seq(data), e.to_dict()])
    _publish_key(conn, a.get("key"), device, member, role, now)
    for g in a.get("grants", []):
        _store_grant(conn, g, device, role, now)
    admission.take_args(conn, a, device, author_pub, member, role, now)
    declare_reads(conn, device, a.get("reads"))
    if a.get("snapshot"):
        refused = _store_snapshot(conn, ident, a["snapshot"], device, member, role, now)

    result: dict[str, Any] = {"acks": acks, "rejects": rejects}
    if a.get("snapshot") and refused is not None:  # a value, not an error: the sync goes on (§18)
        result["snapshot_refused"] = refused
    return result, role


def sync_pull(conn: Txn, ident: RelayIdentity, req: envelope.Request, result: dict[str, Any], role: str,
              by_bundle: bool = False) -> dict[str, Any]:
    """What a sync hands out (batches past the cursor, roster, keys, grants, a snapshot): reads only.

    So it may run in a transaction of its own without the team's lock (``apply_pull``): rseq is
    given and committed under that lock, in order, so a reader that sees rseq N sees every rseq
    below it, committed earlier.
    """
    a = req.args
    device = req.device
    cursor = int(a.get("cursor", 0))
    budget = min(max(int(a.get("budget", DEFAULT_BUDGET)), 1024), MAX_BUDGET)
    reply_max = a.get("reply_max") if by_bundle else None
    if reply_max is not None:  # a reply bundle in parts of at most reply_max bytes (bundle_replies)
        budget = bundle_replies.batch_budget(reply_max)
    # The oldest rseq held, the roster's version and the newest snapshot's head, in one statement;
    # the snapshot's bytes are read only when it is served (``_servable_snapshot``), not on every sync.
    oldest, roster_v, *head = conn.execute(
        "SELECT (SELECT MIN(rseq) FROM batches), (SELECT value FROM meta WHERE key = 'roster_v'),"
        " s.cursor, s.device, s.size FROM (SELECT 1 AS one) o LEFT JOIN"
        " (SELECT cursor, device, length(data) AS size FROM snapshots ORDER BY id DESC LIMIT 1) s ON 1 = 1").fetchone()
    snap = None if head[0] is None else (head[0], head[1], head[2])  # (cursor, device, size)
    if (snap is not None and a.get("no_snapshot") is not True
            and (cursor == 0 or (oldest is not None and cursor < oldest - 1))):
        served = _servable_snapshot(conn, ident, cursor)
        if (served is not None and reply_max is not None and len(served[2]) > budget // 2
                and (oldest is None or oldest <= 1)):
            # Too big for a reply part, and the whole history is still here: it comes in parts instead.
            served = None
        if served is not None:
            result["snapshot"] = list(served)
            cursor = served[0]
    out: list[Any] = []
    used = 0
    rt = relay_txn(conn)
    more, first = False, cursor
    for rseq, dev, rcv, size in ((b.rseq, b.device, b.received_ms, b.size) for b in _pages_after(rt, cursor)):
        if dev == device:
            cursor = rseq  # own batches are acknowledged, not sent back
            continue
        inline = size <= INLINE_MAX or by_bundle  # a reply bundle cannot fetch pieces later
        cost = size if inline else 64
        if out and used + cost > budget:
            more = True
            break
        if inline:
            out.append([rseq, dev, rcv, b""])  # its bytes come below, with the others', in one statement
        else:
            out.append([rseq, dev, rcv, None, size])  # fetched with 'download', resumable
        used += cost
        cursor = rseq
    else:
        more = rt.any_after(cursor)
    inline_at = {b[0]: b for b in out if len(b) == 4}
    if inline_at:
        limit = codec.DEFAULT_LIMITS.max_message if by_bundle else INLINE_MAX
        for rseq, data in rt.batches_data(first, cursor, device, limit):
            if rseq in inline_at:
                inline_at[rseq][3] = data
    result.update(batches=out, cursor=cursor, more=more)
    rv = 0 if roster_v is None else codec.unpack(roster_v)
    known = a.get("roster_v")
    if known != rv:
        partial = type(known) is int and 0 <= known < rv
        result["roster"], result["reads"] = roster_with_reads(conn, known if partial else None)
        result["roster_full"] = not partial
        result["roster_v"] = rv
        result["relay_x25519"] = enroll_mod.x25519_public(bundle.relay_x25519(ident.key))
    # The team's key ids and this device's grants, in one statement.
    keys, grants = {}, []
    for kind, epoch, value in conn.execute(
            "SELECT 0, epoch, key_id FROM keys UNION ALL"
            " SELECT 1, epoch, data FROM grants WHERE device = ? AND length(data) > 0", (device,)):
        if kind == 0:
            keys[epoch] = value
        else:
            grants.append([epoch, value])
    result["keys"] = keys
    result["grants"] = grants
    if role == "supervisor":
        result["pending"] = _pending_grants(conn, device)
        result["rotate"] = bool(meta(conn, "rotation_wanted", False))
    admission.add_results(conn, a, device, role, result)
    # Only a supervisor's snapshot is ever kept (§18): asking a member would waste its bytes.
    want, joiner_bytes = _want_snapshot(conn, snap, cursor) if role == "supervisor" else (False, 0)
    result["want_snapshot"] = want
    if want:
        result["joiner_bytes"] = joiner_bytes
    return result


#: Rows of batch metadata a pull reads at most (then ``more``), and its first and largest page.
PULL_SCAN_MAX = 2000
PULL_FIRST_PAGE = 16
PULL_PAGE_MAX = 512


def _pages_after(rt: Any, cursor: int) -> Iterator[Any]:
    """The stored batches after ``cursor``, read by index a page at a time, as far as the pull goes.

    Why pages: a device behind by thousands of batches takes only what its budget holds
    (about 3 batches of 100 ops in 20 KB), yet one ``LIMIT 2000`` read built 2,000 rows for it
    on every sync: 1.9 ms of the relay's 2 ms per sync once history piled up. A small first
    page that grows (x4) keeps a device that is far behind, or skipping its own batches, at a
    few statements.
    """
    page, left = PULL_FIRST_PAGE, PULL_SCAN_MAX
    while left > 0:
        rows = rt.batches_after(cursor, min(page, left))
        yield from rows
        if len(rows) < min(page, left):
            return
        left -= len(rows)
        cursor = rows[-1].rseq
        page = min(page * 4, PULL_PAGE_MAX)


def _want_snapshot(conn: Txn, snap: tuple | None, cursor: int) -> tuple[bool, int]:
    # snap: (cursor, device, size in bytes) of the newest snapshot, or None
    """By count (``SNAPSHOT_EVERY`` batches) or by bytes of history since the newest snapshot (§18).

    Also returns what a late joiner would download now (that snapshot and the history after
    it): the device builds a snapshot to see its size and sends it only if it saves bytes.
    """
    last_snap = snap[0] if snap else 0
    size = snap[2] if snap else 0
    history = conn.execute("SELECT COALESCE(SUM(size), 0) FROM batches WHERE rseq > ? AND rseq <= ?",
                           (last_snap, cursor)).fetchone()[0]
    if cursor - last_snap >= SNAPSHOT_EVERY:
        return True, size + history
    return history >= (SNAPSHOT_BYTES_PERCENT * size // 100 if snap else SNAPSHOT_MIN_BYTES), size + history


def _publish_key(conn: Txn, key: Any, device: bytes, member: str, role: str, now: int) -> None:
    if not key:
        return
    epoch, key_id = key
    current = conn.execute("SELECT MAX(epoch) FROM keys").fetchone()[0] or 0
    if role != "supervisor":
        raise AccessError("only a supervisor's device may create or rotate the team key", code="access.role")
    if epoch != current + 1:
        # Sent again after a lost response, or another supervisor got there first: not an error
        # here (the sync goes on); the device compares key ids in the answer and says what to do.
        return
    conn.execute("INSERT INTO keys (epoch, key_id, created_ms, created_by) VALUES (?, ?, ?, ?)",
                 (epoch, key_id, now, device))
    conn.execute("INSERT INTO grants (device, epoch, data, created_ms) VALUES (?, ?, ?, ?) ON CONFLICT (device, epoch)"
                 " DO UPDATE SET data = excluded.data, created_ms = excluded.created_ms", (device, epoch, b"", now))
    set_meta(conn, "rotation_wanted", False)
    set_meta(conn, "rotation_since", None)
    audit(conn, member, "key", now=now, epoch=epoch, device=device)


def _store_grant(conn: Txn, g: Any, device: bytes, role: str, now: int) -> None:
    if role != "supervisor":
        raise AccessError("only a supervisor's device may share the team key", code="access.role")
    target, epoch, data = g  # typed by limits.ACTIONS: [bin 8, epoch, bin <= 1 KiB]
    if conn.execute("SELECT 1 FROM devices WHERE device = ?", (target,)).fetchone() is None or \
            conn.execute("SELECT 1 FROM keys WHERE epoch = ?", (epoch,)).fetchone() is None:
        return  # for no enrolled device, or no known epoch: nothing worth keeping
    conn.execute("INSERT INTO grants (device, epoch, data, created_ms) VALUES (?, ?, ?, ?)"
                 " ON CONFLICT (device, epoch) DO NOTHING", (target, epoch, data, now))


def _pending_grants(conn: Txn, me: bytes) -> list[list[Any]]:
    rows = conn.execute(
        "SELECT d.device, d.x25519_pub, k.epoch FROM devices d CROSS JOIN keys k"
        " WHERE d.revoked_ms IS NULL AND d.device != ?"
        " AND NOT EXISTS (SELECT 1 FROM grants g WHERE g.device = d.device AND g.epoch = k.epoch)"
        " ORDER BY d.device, k.epoch",
        (me,),
    ).fetchall()
    out: dict[bytes, list[Any]] = {}
    for dev, xpub, epoch in rows:
        out.setdefault(dev, [dev, xpub, []])[2].append(epoch)
    return list(out.values())


# -- snapshots (§18) ------------------------------------------------------------------------------------


def snapshot_coverage(conn: Txn, cursor: int) -> dict[bytes, int]:
    """device -> highest seq among its batches stored at rseq <= cursor: what a snapshot must cover."""
    return dict(conn.execute("SELECT device, MAX(seq) FROM batches WHERE rseq <= ? GROUP BY device", (cursor,)))


def check_snapshot(conn: Txn, ident: RelayIdentity, device: bytes, cursor: int, data: bytes) -> None:
    """A snapshot the relay may keep or serve: a current supervisor's, signed, covering exactly what is held.

    A snapshot lets a joining device's cursor skip history, so a wrong one (a member's,
    or one that leaves batches out) would hide those batches from it for ever. Raises
    AccessError ``access.role`` or an error of ``snapshot.verify`` / ``check_coverage``.
    """
    row = _device_row(conn, device)
    if row is None or row[3] is not None or row[4] != "supervisor":
        raise AccessError("only a supervisor's device may provide a snapshot", code="access.role")
    claim = snap_fmt.verify(data, row[1], ident.team)
    if claim.device != device or claim.cursor != cursor:
        raise IntegrityError("the snapshot's header does not match how it was sent", code="integrity.coverage")
    top = conn.execute("SELECT MAX(rseq) FROM batches").fetchone()[0] or 0
    if cursor > top:
        raise IntegrityError(f"the snapshot claims batches up to {cursor}; the relay holds {top}",
                             code="integrity.coverage")
    snap_fmt.check_coverage(claim, snapshot_coverage(conn, cursor))


def _store_snapshot(conn: Txn, ident: RelayIdentity, snap: Any, device: bytes, member: str,
                    role: str, now: int) -> dict[str, Any] | None:
    """Keep a checked snapshot; a refused one is a value (the error map), and the sync goes on."""
    try:
        if not (isinstance(snap, list) and len(snap) == 2 and type(snap[0]) is int and isinstance(snap[1], bytes)):
            raise ProtocolError("malformed snapshot", code="protocol.schema")
        cursor, data = snap
        if role != "supervisor":
            raise AccessError("only a supervisor's device may provide a snapshot", code="access.role")
        if conn.execute("SELECT 1 FROM snapshots WHERE cursor = ? AND device = ?", (cursor, device)).fetchone():
            return None  # sent again after a lost answer
        check_snapshot(conn, ident, device, cursor, data)
    except HbwError as e:
        audit(conn, member, "snapshot_refused", now=now, device=device, code=e.code)
        return e.to_dict()
    conn.execute("INSERT INTO snapshots (cursor, device, created_ms, data) VALUES (?, ?, ?, ?)",
                 (cursor, device, now, data))
    # Keep the two newest: the latest, and one before it in case the latest turns out unreadable.
    conn.execute("DELETE FROM snapshots WHERE id NOT IN (SELECT id FROM snapshots ORDER BY id DESC LIMIT 2)")
    return None


def _servable_snapshot(conn: Txn, ident: RelayIdentity, cursor: int) -> tuple[int, bytes, bytes] | None:
    """The newest stored snapshot past ``cursor`` that passes the checks *now* (author still a supervisor...).

    Checked again at serving time because rows may predate these checks (an older relay kept
    any snapshot) and an author may have been revoked or demoted since.
    """
    for c, dev, data in conn.execute(
            "SELECT cursor, device, data FROM snapshots WHERE cursor > ? ORDER BY id DESC", (cursor,)).fetchall():
        try:
            check_snapshot(conn, ident, dev, c, data)
        except HbwError:
            continue
        return c, dev, data
    return None


def upload(conn: Txn, ident: RelayIdentity, req: envelope.Request, now: int) -> dict[str, Any]:
    """One piece of a large batch, at an offset (tus-style). Answers the offset the relay holds.

    A piece at the wrong offset is not an error: the answer tells the device
    where to go on from, so a link that dropped at 90 % resumes at 90 %. Without a
    piece it is the question "where are we?" that a streamed upload (``stream.py``,
    PROTOCOL.md §13a) asks first; pieces remain for devices that do not stream.
    """
    _member, _role, author_pub = authenticate(conn, req, now)
    a = req.args
    seq, total, offset, chunk = a.get("seq"), a.get("total"), a.get("offset", 0), a.get("chunk")
    if type(seq) is not int or type(total) is not int or type(offset) is not int:
        raise ProtocolError("malformed upload", code="protocol.schema")
    state = upload_state(conn, req.device, seq, total, a.get("sha256"), now)
    if isinstance(state, dict):
        return state
    have = state
    if chunk is None or offset != have:
        return {"offset": have}
    if not isinstance(chunk, bytes) or not chunk or len(chunk) > CHUNK_MAX or have + len(chunk) > total:
        raise ProtocolError("malformed upload piece", code="protocol.schema")
    make_upload_room(conn, req.device, seq, len(chunk))
    relay_txn(conn).upload_add(req.device, seq, offset, total, chunk, now)
    have += len(chunk)
    if have < total:
        return {"offset": have}
    return finish_upload(conn, ident, req.device, author_pub, seq, now)


def upload_state(conn: Txn, device: bytes, seq: int, total: int, sha256: Any, now: int) -> dict[str, Any] | int:
    """Where an upload of batch ``seq`` stands: the answer if it is already a batch, else the bytes held.

    Also drops what expired (unfinished uploads older than a day) and what was held for
    another ``total`` (the device rebuilt that batch).
    """
    if total > codec.DEFAULT_LIMITS.max_message:
        raise LimitError(f"a batch of {total} bytes is over the limit", code="protocol.limit")
    rt = relay_txn(conn)
    # Unfinished uploads expire: a device resumes within hours; pieces left for a day are abandoned.
    rt.upload_expire(now - limits.UPLOAD_EXPIRE_MS)
    done = rt.batch_by_seq(device, seq)
    if done:
        if hashlib.sha256(done.data).digest() != sha256:
            return {"offset": 0, "reject": ProtocolError(f"batch {seq} was already received with other content",
                                                         code="protocol.seq_reuse").to_dict()}
        return {"offset": total, "ack": [seq, done.rseq, done.received_ms]}
    return rt.upload_held(device, seq, total)


def upload_bytes(conn: Txn, device: bytes, seq: int) -> bytes:
    """The bytes held of an unfinished upload, in order."""
    return relay_txn(conn).upload_bytes(device, seq)


def finish_upload(conn: Txn, ident: RelayIdentity, device: bytes, author_pub: bytes, seq: int,
                  now: int) -> dict[str, Any]:
    """Ingest a whole upload as a batch, exactly as one sent inline; the answer for the device."""
    data = relay_txn(conn).upload_take(device, seq)
    try:
        ack = _accept_batch(conn, ident, device, author_pub, data, now)
    except HbwError as e:
        return {"offset": 0, "reject": e.to_dict()}
    return {"offset": len(data), "ack": ack}


def make_upload_room(conn: Txn, device: bytes, seq: int, size: int) -> None:
    """Keep a device's unfinished uploads under ``limits.UPLOAD_QUOTA``: its oldest other uploads go first.

    Why evict rather than refuse: an honest device uploads one batch at a time (at most
    32 MiB), so only abandoned pieces fill the quota, and they are restarted if still wanted.
    """
    rt = relay_txn(conn)
    if rt.upload_used(device) + size <= limits.UPLOAD_QUOTA:
        return
    for old in rt.upload_oldest_other(device, seq):
        rt.upload_drop(device, old)
        if rt.upload_used(device) + size <= limits.UPLOAD_QUOTA:
            return
    raise LimitError("this device's unfinished uploads are over the relay's quota", code="protocol.quota")


def download(conn: Txn, ident: RelayIdentity, req: envelope.Request, now: int) -> dict[str, Any]:
    """A piece of a stored batch: [rseq, offset, length] -> bytes. Resuming is asking for the next offset."""
    authenticate(conn, req, now)
    a = req.args
    rseq, offset, length = a.get("rseq"), a.get("offset", 0), min(int(a.get("length", CHUNK_MAX)), CHUNK_MAX)
    if type(rseq) is not int or type(offset) is not int or offset < 0 or length <= 0:
        raise ProtocolError("malformed download", code="protocol.schema")
    row = conn.execute("SELECT size, substr(data, ?, ?) FROM batches WHERE rseq = ?",
                       (offset + 1, length, rseq)).fetchone()
    if row is None:
        raise UsageError(f"no batch {rseq} at the relay", code="usage.not_found")
    return {"size": row[0], "offset": offset, "chunk": bytes(row[1] or b"")}


def _guarded(action: str, fn: Any) -> Any:
    """Run an action; arguments of the wrong shape from a signed peer are refused, changing nothing."""
    try:
        return fn()
    except HbwError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as e:
        raise ProtocolError(f"malformed {action} arguments ({type(e).__name__})", code="protocol.schema") from None


def ingest_bundle_parts(conn: Txn, ident: RelayIdentity, data: bytes | bytearray | Path | bundle_ingest.Spooled,
                        now: int, max_parts: int = bundle_replies.MAX_REPLY_BYTES // bundle_replies.MIN_REPLY,
                        spool_dir: Path | None = None) -> tuple[list[bytes | bytearray], dict[str, Any]]:
    """Apply a device's bundle exactly as an online sync, and seal the reply (in parts) to that device.

    Replays: each bundle carries a counter. An older bundle than the last ingested for its
    device is refused and changes nothing. The *same* bundle again is answered again (its
    batches are acknowledged idempotently): a reply lost in the mail, or a reply file that could
    not be written, must not strand the device.
    """
    # Format 1 or 2 (PROTOCOL.md §18b), from a file or the HTTP body: the body (document chunks) is
    # checked segment by segment into a spool file; only the envelope is held (bundle_ingest).
    # ``spool_dir``: the relay's data directory (a 4 GiB bundle must not fill the system's /tmp).
    sp = bundle_ingest.spool(data, ident.team, ident.key.device_id, bundle.relay_x25519(ident.key), spool_dir)
    try:
        return _ingest_spooled(conn, ident, sp, now, max_parts)
    finally:
        if sp is not data:  # a spool opened here is closed here (the HTTP drop point closes its own)
            sp.close()


def _ingest_spooled(conn: Txn, ident: RelayIdentity, sp: bundle_ingest.Spooled, now: int,
                    max_parts: int) -> tuple[list[bytes | bytearray], dict[str, Any]]:
    env = sp.envelope
    head = envelope.peek_request(env)
    # Only the counter is read before the signature; every other arg is skipped unbuilt.
    try:
        counter = envelope.open_request(head, {"bundle": limits.ACTIONS["sync"].args["bundle"]}).args.get("bundle")
    except ProtocolError as e:
        if e.code != "protocol.schema":
            raise
        counter = None
    if head.action != "sync" or counter is None:
        raise ProtocolError("a bundle must carry a sync request with its counter", code="protocol.bundle")
    row = conn.execute("SELECT last_bundle, x25519_pub, member, transport_pub FROM devices WHERE device = ?",
                       (head.device,)).fetchone()
    if row is None:
        raise AccessError("this bundle comes from a device that is not enrolled", code="access.unknown_device")
    last, x_pub, member, transport_pub = row
    head.verify(transport_pub)  # anyone can seal to the relay: say nothing about a device before this
    req = envelope.open_request(head, limits.ACTIONS["sync"].args, verified_with=transport_pub)
    counter = req.args["bundle"]
    if last is not None and counter < last:
        raise AccessError(f"bundle {counter} from {member} is older than one already ingested: nothing changed",
                          code="access.old_bundle", hint="ingest the newest bundle from this device instead")
    chunks_in = bundle_ingest.keep_body(conn, ident, sp, req, member, now)  # before its batches (§18f)
    result = _guarded("bundle", lambda: sync(conn, ident, req, now, by_bundle=True))
    reply_max = req.args.get("reply_max")
    # A device that names its largest reply gets it in parts of at most that size (bundle_replies);
    # an older one gets the one reply it knows how to read.
    results = ([result] if reply_max is None else
               bundle_replies.split(conn, req.device, result, int(req.args.get("cursor", 0)), reply_max, max_parts))
    chunks_out = 0
    if reply_max is not None and req.args.get("want_chunks") and ident.chunks is not None:
        # The document chunks its policy wants, in the reply's room left (§18f); the rest next time.
        chunks_out = bundle_replies.add_chunks(results, lambda cid: ident.chunks.get(conn, ident.team, cid),
                                               req.args["want_chunks"], reply_max,
                                               keep_bytes=sp.opened.version == bundle.VERSION)
    conn.execute("UPDATE devices SET last_bundle = ? WHERE device = ?", (counter, req.device))
    batches_out = sum(len(r["batches"]) for r in results)
    audit(conn, member, "bundle", now=now, device=req.device, counter=counter, acks=len(result["acks"]),
          batches_out=batches_out)
    replies = [bundle_ingest.seal_reply(sp.opened.version, ident, req, x_pub, r, now,
                                        lambda cid: ident.chunks.get(conn, ident.team, cid)) for r in results]
    stats = {"action": "bundle", "device": req.device.hex(), "member": member, "counter": counter,
             "request": req.nonce.hex(), "chunks_in": len(req.args.get("chunks") or []) + chunks_in,
             "chunks_out": chunks_out,
             "batches_in": len(result["acks"]), "batches_out": batches_out, "parts": len(replies),
             "more_waiting": bool(results[-1].get("more")), "oversize_bytes": results[-1].get("oversize"),
             # Only a snapshot the device cannot do without (older history gone) makes a part bigger than asked.
             "over_cap": reply_max is not None and max(map(len, replies)) > reply_max}
    return replies, stats


def ingest_bundle(conn: Txn, ident: RelayIdentity, data: bytes | bytearray | Path | bundle_ingest.Spooled,
                  now: int) -> tuple[bytes | bytearray, dict[str, Any]]:
    """``ingest_bundle_parts`` answering with one file (the HTTP drop point): the rest comes with the next bundle."""
    replies, stats = ingest_bundle_parts(conn, ident, data, now, max_parts=1)
    return replies[0], stats


#: The relay's actions; each has its line in ``limits.ACTIONS`` (body limit, args).
ACTIONS = {"enroll": enroll, "sync": sync, "upload": upload, "download": download, "invite": admission.invite,
           "evidence": receipts.evidence_action}


def _authenticated(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    def action(conn: Txn, ident: RelayIdentity, req: envelope.Request, now: int) -> dict[str, Any]:
        authenticate(conn, req, now)
        return fn(conn, ident, req, now)
    return action


# Document chunks (PROTOCOL.md §18e): any enrolled, unrevoked device of the team.
ACTIONS.update({"chunk_put": _authenticated(chunk_actions.put_action),
                "chunk_missing": _authenticated(chunk_actions.missing_action),
                "chunk_get": _authenticated(chunk_actions.get_action)})


def open_request(body: bytes | bytearray, now: int, transport_key: Callable[[bytes], bytes | None]) -> envelope.Request:
    """A request whose signature is checked before its args are decoded (``enroll``: decoded within tight limits).

    Order: frame and routing header (about 80 bytes), the action's body limit,
    then, except for ``enroll``, freshness, the enrolled device's key
    (``transport_key(device_id)``, None if not enrolled) and the signature; only
    then the args, each by its spec in ``limits.ACTIONS``. Junk from anyone costs
    the relay the body it sent, nothing proportional to the numbers inside it.
    ``envelopes.json`` "relay_order" holds vectors of this order.
    """
    head = envelope.peek_request(body)
    spec = limits.action_for(head.action)
    if spec is None or head.action not in ACTIONS:
        raise ProtocolError(f"unknown action {head.action!r}", code="protocol.action")
    limits.check_body(head.action, len(body))
    key = None
    if not spec.pre_auth:
        envelope.check_fresh(head, now)
        key = transport_key(head.device)
        if key is None:
            raise AccessError("this device is not enrolled in the team", code="access.unknown_device",
                              hint="join with an invite: hbw-sync join INVITE")
        head.verify(key)
    return envelope.open_request(head, spec.args, verified_with=key)


def _transport_key(conn: Txn, device: bytes) -> bytes | None:
    return relay_txn(conn).transport_key(device)


# -- the request entry: checked before the transaction, applied in it, signed after it --------------


@dataclass(frozen=True)
class DeviceKeys:
    """An enrolled device's public keys: fixed at enrollment, so a process may keep them (``app.KeyCache``)."""

    transport: bytes
    author: bytes


def device_keys(conn: Txn, device: bytes) -> DeviceKeys | None:
    """The keys of an enrolled device (revoked or not: that is checked in the transaction), or None."""
    row = conn.execute("SELECT transport_pub, author_pub FROM devices WHERE device = ?", (device,)).fetchone()
    return None if row is None else DeviceKeys(bytes(row[0]), bytes(row[1]))


@dataclass(frozen=True)
class Prepared:
    """A request whose signature, freshness, args and batches were checked before its transaction.

    ``batches`` (sync only): per entry of ``args["batches"]``, (author key used, (frame, routing summary: op count, chunk ids)
    or the error that batch earns), or None for an entry that is not bytes (``sync`` refuses it).
    """

    req: envelope.Request
    batches: list[Any] | None = None


def prepare(body: bytes | bytearray, now: int, keys: DeviceKeys | None, team: bytes) -> Prepared:
    """Everything about a request that needs no transaction: the CPU of a request, off the writer.

    ``keys``: the enrolled keys of the device the request's header names (``device_keys``), or None.
    Runs ``open_request`` (so the order of ``envelopes.json`` "relay_order" holds), checks an
    enrollment's own signature, and parses and verifies each batch of a sync. Inside the transaction
    ``apply`` then re-checks only what may have changed since: the device still enrolled and not
    revoked, with these keys; the nonce unused; the invite unused; (device, seq) not stored yet.
    """
    req = open_request(body, now, lambda device: keys.transport if keys is not None else None)
    if req.action == "enroll":
        _enroll_args(req, now)  # its signature, by the keys it brings
        return Prepared(replace(req, verified_with=req.args["transport_pub"]))
    if req.action != "sync" or keys is None:
        return Prepared(req)
    checked: list[Any] = []
    for data in req.args.get("batches", []):
        if not isinstance(data, bytes):
            checked.append(None)
            continue
        try:
            frame, ops = check_batch(team, req.device, keys.author, data)
            checked.append((keys.author, (CheckedBatch(frame.seq, frame.epoch), ops)))
        except HbwError as e:
            checked.append((keys.author, e))
    return Prepared(req, checked)


@dataclass(frozen=True)
class CheckedBatch:
    """What the transaction needs of a checked batch's frame (a ``Frame`` holds views into the body)."""

    seq: int
    epoch: int


def prepare_detached(body: bytes, now: int, keys: DeviceKeys | None, team: bytes) -> Prepared:
    """``prepare`` in a checker process (``app`` with ``check_processes``): its result crosses a pipe.

    The request's signed bytes (a view into the body, already verified) stay behind; what goes
    back is plain data: the args, the checked batches' seq, epoch and routing summaries, or their errors.
    """
    prep = prepare(body, now, keys, team)
    return Prepared(replace(prep.req, signed=b""), prep.batches)


def apply(conn: Txn, ident: RelayIdentity, prep: Prepared, now: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A prepared request's action in one transaction: its result, and figures for metrics."""
    req = prep.req
    if req.action == "sync":
        result = _guarded("sync", lambda: sync(conn, ident, req, now, checked=prep.batches))
    else:
        result = _guarded(req.action, lambda: ACTIONS[req.action](conn, ident, req, now))
    acks = result.get("acks", [result["ack"]] if result.get("ack") else [])
    stats = {"action": req.action, "device": req.device.hex(), "batches_in": len(acks),
             "batches_out": len(result.get("batches", ()))}
    return result, stats


def apply_push(conn: Txn, ident: RelayIdentity, prep: Prepared, now: int) -> tuple[dict[str, Any], str]:
    """A prepared sync's writes (``sync_push``), for a backend that runs its reads apart (``apply_pull``)."""
    return _guarded("sync", lambda: sync_push(conn, ident, prep.req, now, checked=prep.batches))


def apply_pull(conn: Txn, ident: RelayIdentity, prep: Prepared,
               pushed: tuple[dict[str, Any], str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A prepared sync's reads (``sync_pull``) after its writes committed: its result and figures."""
    result = _guarded("sync", lambda: sync_pull(conn, ident, prep.req, dict(pushed[0]), pushed[1]))
    stats = {"action": "sync", "device": prep.req.device.hex(), "batches_in": len(result["acks"]),
             "batches_out": len(result.get("batches", ()))}
    return result, stats


def answer(ident: RelayIdentity, prep: Prepared, result: dict[str, Any], now: int) -> bytes:
    """The signed response envelope: made after the commit, outside the writer and the team's lock."""
    return envelope.make_response(ident.key, prep.req.nonce, result, now)


def handle(conn: Txn, ident: RelayIdentity, body: bytes | bytearray, now: int) -> tuple[bytes, dict[str, Any]]:
    """One request envelope in, one signed response envelope out (errors raise), all in one transaction.

    The server splits this in three (``prepare`` before, ``apply`` in, ``answer`` after the
    transaction: ``app._rpc``); this whole form is for in-process callers (benchmarks, tests).
    """
    head = envelope.peek_request(body)
    prep = prepare(body, now, device_keys(conn, head.device), ident.team)
    result, stats = apply(conn, ident, prep, now)
    return answer(ident, prep, result, now), stats


def stage(ident: RelayIdentity, prep: Prepared, now: int) -> Callable[[Txn], Any] | None:
    """What ``apply`` lets run before its transaction, outside the single writer (``Runner.run``).

    A ``chunk_put`` (signature already checked by ``prepare``) whose chunks go to files (SQLite's
    store): write the files first, so the writer only indexes them. Anything else: None.
    ``apply`` still checks and decides everything; a file it does not index is removed.
    """
    if prep.req.action != "chunk_put" or getattr(ident.chunks, "stage", None) is None:
        return None

    def work(conn: Txn) -> Callable[[], None] | None:
        return chunk_actions.stage_put(conn, ident.chunks, ident.team, prep.req.args)
    return work


apply.stage = stage  # type: ignore[attr-defined]


#: The relay's setting (``meta``) that keeps ``serve --chunk-quota-gb``, in bytes.
CHUNK_QUOTA_SETTING = "chunk_quota"


def load_identity(data_dir: Path, conn: Txn, chunk_quota: int | None = None) -> RelayIdentity:
    """The relay's team, key and chunk store. ``chunk_quota`` None: the quota ``serve`` last kept.

    Why kept: ``hbw-relay bundle ingest`` runs in its own process, without serve's options, and
    must refuse a bundle's chunks at the same quota as the online path (PROTOCOL.md §18f).
    """
    key = crypto.DeviceKey((data_dir / "relay.key").read_bytes())
    if chunk_quota is None:
        kept = meta(conn, CHUNK_QUOTA_SETTING)
        chunk_quota = kept if type(kept) is int and kept > 0 else limits.CHUNK_QUOTA
    kind = getattr(conn, "kind", "sqlite")  # storage.postgres.PgTxn says "postgres"; sqlite3's connection nothing
    return RelayIdentity(meta(conn, "team"), meta(conn, "team_name"), key,
                         chunkstore.for_backend(kind, data_dir, chunk_quota))
