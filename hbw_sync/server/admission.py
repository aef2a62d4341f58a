"""The relay's part in admitting devices to the team key: store and forward, decide nothing.

The relay cannot admit anyone (PROTOCOL.md §14b): it keeps each enrolling
device's *proof* (an HMAC keyed by a secret it never sees), the *welcome* a
supervisor's device left with a team invite, and the *approval records*
supervisors' devices sign; it hands them to the devices that need them. Whoever
controls this host can rewrite all of it, and gains no key by doing so: devices
check proofs, welcomes and approval signatures themselves.

Every argument is type- and size-checked before it is stored (bounded before
trusted), and only a supervisor's device may post invites, welcomes, approvals
or rejections (``access.role``).
"""

from __future__ import annotations

from typing import Any

from .. import approval, codec, envelope
from ..enroll import token_hash
from ..errors import AccessError, ProtocolError, UsageError
from ..ops import is_member_name
from . import relay
from .storage import Txn

MAX_INVITE_DAYS = 90
#: Most approvals, welcomes or rejections one sync may carry.
MAX_ITEMS = 256
MAX_EPOCHS = 4096
_PUT_WELCOME = ("INSERT INTO welcomes (device, data, made_by, created_ms) VALUES (?, ?, ?, ?) ON CONFLICT (device)"
                " DO UPDATE SET data = excluded.data, made_by = excluded.made_by, created_ms = excluded.created_ms")
#: An empty grant: the device has this epoch's key by other means (a welcome), none is pending.
_NO_GRANT_NEEDED = ("INSERT INTO grants (device, epoch, data, created_ms) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (device, epoch) DO NOTHING")


def _epochs(v: Any) -> list[int]:
    if not isinstance(v, list) or len(v) > MAX_EPOCHS or not all(type(e) is int and 0 < e < 1 << 32 for e in v):
        raise ProtocolError("epochs must be a list of key epochs", code="protocol.schema")
    return v


def _bin(v: Any, n: int | None = None, most: int | None = None) -> bytes:
    if not isinstance(v, bytes) or (n is not None and len(v) != n) or (most is not None and len(v) > most):
        raise ProtocolError("malformed admission argument", code="protocol.schema")
    return v


def _supervisor(role: str, what: str) -> None:
    if role != "supervisor":
        raise AccessError(f"only a supervisor's device may {what}", code="access.role")


# -- action 'invite' ---------------------------------------------------------------------------------


def invite(conn: Txn, ident: relay.RelayIdentity, req: envelope.Request, now: int) -> dict[str, Any]:
    """A supervisor's device registers a team invite: the token's hash and a sealed welcome, never the secret."""
    member, role, _pub = relay.authenticate(conn, req, now)
    _supervisor(role, "make a team invite")
    a = req.args
    th = _bin(a.get("token_hash"), 32)
    name, new_role, days = a.get("member"), a.get("role"), a.get("ttl_days", 14)
    if not isinstance(name, str) or not is_member_name(name):
        raise UsageError("not a valid member name", code="usage.member", hint="1-32 of a-z, 0-9, '.', '_', '-'")
    if new_role not in approval.ROLES or type(days) is not int or not 1 <= days <= MAX_INVITE_DAYS:
        raise ProtocolError("malformed invite", code="protocol.schema")
    welcome = _bin(a.get("welcome"), most=approval.MAX_WELCOME)
    epochs = _epochs(a.get("epochs", []))
    if conn.execute("SELECT 1 FROM invites WHERE token_hash = ?", (th,)).fetchone():
        return {"expires_ms": None}  # sent again after a lost answer
    conn.execute("INSERT INTO invites (token_hash, member, role, created_ms, expires_ms) VALUES (?, ?, ?, ?, ?)",
                 (th, name, new_role, now, now + days * 86_400_000))
    conn.execute("INSERT INTO invite_welcomes (token_hash, data, epochs, made_by) VALUES (?, ?, ?, ?)",
                 (th, welcome, codec.pack(epochs), req.device))
    relay.audit(conn, member, "team_invite", now=now, member=name, role=new_role, ttl_days=days, device=req.device)
    return {"expires_ms": now + days * 86_400_000}


# -- enrollment --------------------------------------------------------------------------------------


def check_proof_arg(a: dict[str, Any]) -> bytes | None:
    p = a.get("proof")
    return None if p is None else _bin(p, approval.PROOF_LEN)


def enrolled(conn: Txn, device: bytes, token: bytes, proof: bytes | None, now: int) -> bytes | None:
    """Record a new device's proof; move the invite's welcome (if any) to it. Returns the welcome."""
    th = token_hash(token)
    conn.execute("INSERT INTO enrollments (device, proof, token_hash) VALUES (?, ?, ?) ON CONFLICT (device)"
                 " DO UPDATE SET proof = excluded.proof, token_hash = excluded.token_hash", (device, proof, th))
    row = conn.execute("SELECT data, epochs, made_by FROM invite_welcomes WHERE token_hash = ?", (th,)).fetchone()
    if row is None:
        return None
    data, epochs, made_by = row
    conn.execute(_PUT_WELCOME,
                 (device, data, made_by, now))
    for e in codec.unpack(epochs):  # the welcome carries these epochs: no grant is pending for them
        conn.execute(_NO_GRANT_NEEDED,
                     (device, e, b"", now))
    return data


def welcome_for(conn: Txn, device: bytes) -> bytes | None:
    row = conn.execute("SELECT data FROM welcomes WHERE device = ?", (device,)).fetchone()
    return row[0] if row else None


# -- sync arguments and results ------------------------------------------------------------------------


def take_args(conn: Txn, a: dict[str, Any], device: bytes, author_pub: bytes, member: str,
              role: str, now: int) -> None:
    """Approvals, approval welcomes and rejections a supervisor's device sends with a sync."""
    records, welcomes, rejects = a.get("approvals", []), a.get("welcomes", []), a.get("reject", [])
    for v in (records, welcomes, rejects):
        if not isinstance(v, list) or len(v) > MAX_ITEMS:
            raise ProtocolError("malformed admission arguments", code="protocol.schema")
    if records or welcomes or rejects:
        _supervisor(role, "approve or reject devices")
    for r in records:
        rec = approval.verify_approval(_bin(r, most=approval.MAX_APPROVAL), author_pub)
        if not conn.execute("SELECT 1 FROM approvals WHERE data = ?", (r,)).fetchone():
            conn.execute("INSERT INTO approvals (device, approver, data, created_ms) VALUES (?, ?, ?, ?)",
                         (rec.device, device, r, now))
            relay.audit(conn, member, "approve", now=now, device=rec.device, member=rec.member, role=rec.role)
    for w in welcomes:
        if not isinstance(w, list) or len(w) != 3:
            raise ProtocolError("malformed welcome entry", code="protocol.schema")
        target, epochs, data = _bin(w[0], 8), _epochs(w[1]), _bin(w[2], most=approval.MAX_WELCOME)
        conn.execute(_PUT_WELCOME,
                     (target, data, device, now))
        for e in epochs:
            conn.execute(_NO_GRANT_NEEDED,
                         (target, e, b"", now))
    for d in rejects:
        target = _bin(d, 8)
        if conn.execute("SELECT 1 FROM approvals WHERE device = ?", (target,)).fetchone():
            raise AccessError("an approved device is revoked by office IT, not rejected",
                              code="access.role", hint="ask office IT: hbw-relay devices revoke DEVICE")
        row = conn.execute("SELECT member FROM devices WHERE device = ? AND revoked_ms IS NULL", (target,)).fetchone()
        if row:
            conn.execute("UPDATE devices SET revoked_ms = ? WHERE device = ?", (now, target))
            relay.bump_roster(conn, device=target)
            relay.audit(conn, member, "reject", now=now, device=target, member=row[0])


def pending(conn: Txn, me: bytes) -> list[list[Any]]:
    """Devices a supervisor's device should look at: missing a grant, or not yet approved by anyone.

    Each: [device, x25519 pub, [epochs without a grant], {member, label, enrolled_ms, author_pub,
    transport_pub, proof, approved, role, token_hash}]. The relay's word is only a hint: devices check proofs themselves.
    """
    out = {d: [d, x, e] for d, x, e in relay._pending_grants(conn, me)}
    rows = conn.execute(
        "SELECT d.device, d.x25519_pub, d.member, d.label, d.enrolled_ms, d.author_pub, d.transport_pub, e.proof,"
        " EXISTS (SELECT 1 FROM approvals a WHERE a.device = d.device), m.role, e.token_hash"
        " FROM devices d JOIN members m ON m.name = d.member LEFT JOIN enrollments e ON e.device = d.device"
        " WHERE d.revoked_ms IS NULL AND d.device != ?", (me,)).fetchall()
    for dev, x, member, label, enrolled_ms, a_pub, t_pub, proof, approved, m_role, th in rows:
        if approved and dev not in out:
            continue
        entry = out.setdefault(dev, [dev, x, []])
        entry.append({"member": member, "label": label or "", "enrolled_ms": enrolled_ms, "author_pub": a_pub,
                      "transport_pub": t_pub, "proof": proof, "approved": bool(approved),
                      "role": m_role, "token_hash": th})
    return sorted(out.values(), key=lambda e: e[0])


def add_results(conn: Txn, a: dict[str, Any], device: bytes, role: str, result: dict[str, Any]) -> None:
    after = a.get("approvals_after", 0)
    if type(after) is not int:
        raise ProtocolError("approvals_after must be an integer", code="protocol.schema")
    # Only what is new, and the welcome only to a device that asks for it: bytes are precious.
    recs = [list(r) for r in conn.execute("SELECT id, data FROM approvals WHERE id > ? ORDER BY id LIMIT 1000",
                                          (after,))]
    if recs:
        result["approvals"] = recs
    if a.get("want_welcome") is True and (w := welcome_for(conn, device)) is not None:
        result["welcome"] = w
    if relay.meta(conn, "rotation_wanted", False):
        epoch = conn.execute("SELECT MAX(epoch) FROM keys").fetchone()[0] or 0
        result["rotation"] = {"since": relay.meta(conn, "rotation_since", None), "epoch": epoch}
    if role == "supervisor":
        result["pending"] = pending(conn, device)
