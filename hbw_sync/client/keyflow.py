"""The device's side of the key flow: whom it trusts, what it owes others, what it waits for.

Trust never comes from the relay's roster (PROTOCOL.md §14b, §19). A device
trusts itself, the supervisor's device named in the welcome it opened with its
own secret, and every device an approval record signed by a trusted supervisor
device vouches for. It accepts key grants only from trusted devices, and a
supervisor's device grants keys only to trusted devices, using the X25519 key the
approval record names (so the relay cannot swap it).

Nothing waits silently: what a grant or rotation waits on, and since when, is
kept in the store's meta so ``status`` (no passphrase) and ``sync`` can say it.
This module holds no network code; ``sync`` and ``team`` call it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..i18n import _, ngettext
from .. import approval, crypto
from ..approval import Trusted
from ..enroll import Invite, make_grant
from ..errors import IntegrityError, ProtocolError
from ..clock import now_ms
from . import notices
from .store import Store

if TYPE_CHECKING:
    from .ledger import Ledger

ANCHORS = "trust_anchors"  # {device hex: [author pub, role, x25519 pub or None]}
RECORDS = "approval_records"  # [approval record bytes] as the relay handed them
AFTER = "approvals_after"  # highest approval id received
OUTGOING = "admission_out"  # {"approvals": [...], "welcomes": [...], "reject": [...]}, kept until acknowledged
PENDING = "pending_in"  # the relay's last pending list (supervisors)
ROTATION = "rotation_hold"  # {"since": ms, "epoch": E}: seal nothing under epoch <= E
WAIT = "admission_wait"  # {"how": "code" | "invite", "code": str | None, "since": ms}
INVITES = "invite_secrets"  # {token hash hex: [sealed secret, member, role, expires_ms]}
WELCOME_IN = "welcome_in"
INVITE_SECRET = "invite_secret_in"  # the secret of the invite this device joined with (sealed)
NEWER_SEEN = "newer_epoch_seen"  # ms this device first saw the relay list an epoch it does not hold
PENDING_SEEN = "pending_seen"  # {device hex: ms first seen in pending}
PROOF_FAILED = "proof_failed"  # devices whose proof did not match the invite they named (not checked again)


# -- trust ---------------------------------------------------------------------------------------------


def revoked_devices(s: Store) -> set[bytes]:
    return {bytes.fromhex(d) for d, v in (s.meta("roster_keys") or {}).items() if len(v) > 3 and v[3] is not None}


def trust(s: Store) -> Trusted:
    """Every device this one trusts, with (author pub, role, X25519 pub or None)."""
    anchors: Trusted = {bytes.fromhex(d): (v[0], v[1], v[2]) for d, v in (s.meta(ANCHORS) or {}).items()}
    anchors[s.meta("device_id")] = (s.meta("author_public"), s.meta("role") or "member", s.meta("x25519_public"))
    return approval.trusted(anchors, s.meta(RECORDS) or [], revoked_devices(s))


def add_anchor(s: Store, device: bytes, author_pub: bytes, role: str) -> None:
    anchors = dict(s.meta(ANCHORS) or {})
    anchors[device.hex()] = [author_pub, role, None]
    s.set_meta(ANCHORS, anchors)


def queue_out(s: Store, kind: str, item: Any) -> None:
    """Keep an approval, welcome or rejection until a relay answer acknowledges it (crash and link safe)."""
    out = dict(s.meta(OUTGOING) or {})
    out.setdefault(kind, []).append(item)
    s.set_meta(OUTGOING, out)


# -- joining ---------------------------------------------------------------------------------------------


def join_proof(inv: Invite, author_pub: bytes, transport_pub: bytes, x_pub: bytes) -> tuple[bytes, str | None]:
    """(proof, approval code or None): the invite's secret if it has one, else a fresh code to show."""
    if inv.secret is not None:
        return approval.make_proof(inv.secret, author_pub, transport_pub, x_pub), None
    code = approval.new_code()
    return approval.make_proof(approval.code_secret(code), author_pub, transport_pub, x_pub), code


def joined(led: "Ledger", inv: Invite, res: dict[str, Any], code: str | None, first_device: bool) -> None:
    """Record how this device is admitted (inside join's transaction)."""
    s = led.store
    if first_device:
        return  # it made the team key: it trusts itself, and waits for nobody
    if inv.secret is not None:
        s.set_meta(INVITE_SECRET, led.sealer.seal(inv.secret, b"meta:invite_secret"))
        s.set_meta(WAIT, {"how": "invite", "code": None, "since": now_ms()})
    else:
        s.set_meta(WAIT, {"how": "code", "code": code, "since": now_ms()})
    if res.get("welcome"):
        s.set_meta(WELCOME_IN, res["welcome"])


def open_welcome(led: "Ledger") -> None:
    """Open a welcome received with our own secret: its keys, and the supervisor device that admitted us."""
    s = led.store
    data, wait = s.meta(WELCOME_IN), s.meta(WAIT)
    if not data or not wait:
        if data:
            with s.transaction():
                s.set_meta(WELCOME_IN, None)
        return
    try:
        if wait["how"] == "invite":
            key = approval.invite_welcome_key(led.sealer.open(s.meta(INVITE_SECRET), b"meta:invite_secret"))
            w = approval.open_welcome(key, data, led.require_team())
        else:
            x_private = led.sealer.open(s.meta("x25519_key"), b"meta:x25519_key")
            w = approval.open_code_welcome(wait["code"], led.author.public, x_private, data, led.require_team())
    except (IntegrityError, ProtocolError) as e:
        led.problem(f"refused a welcome that was not made with this device's secret: {e}",
                     code="problem.welcome_refused", params=notices.why_params(e))
        with s.transaction():
            s.set_meta(WELCOME_IN, None)
        return
    relay_ids = s.meta("relay_keys") or {}
    with s.transaction():
        for k in w.keys:
            if relay_ids.get(k.epoch) in (None, k.key_id):
                led.add_team_key(k)
        add_anchor(s, w.granter, w.granter_pub, "supervisor")
        s.set_meta(WELCOME_IN, None)
        s.set_meta(WAIT, None)
        s.set_meta(INVITE_SECRET, None)


# -- sync hooks --------------------------------------------------------------------------------------------


def request_args(s: Store) -> dict[str, Any]:
    args: dict[str, Any] = {"approvals_after": s.meta(AFTER, 0)}
    if s.meta(WAIT) and not s.meta(WELCOME_IN):
        args["want_welcome"] = True  # the relay sends it only then
    args.update(s.meta(OUTGOING) or {})
    return args


def take_response(s: Store, res: dict[str, Any], sent: dict[str, Any]) -> None:
    """Record what a signed relay answer carried (inside its transaction)."""
    recs = res.get("approvals") or []
    if recs:  # a bundle reply lists them all again: keep each once
        have = s.meta(RECORDS) or []
        s.set_meta(RECORDS, have + [r for _id, r in recs if r not in have])
        s.set_meta(AFTER, max(s.meta(AFTER, 0), max(i for i, _r in recs)))
    if res.get("welcome") and s.meta(WAIT):
        s.set_meta(WELCOME_IN, res["welcome"])
    rot = res.get("rotation")
    if not (isinstance(rot, dict) and type(rot.get("epoch")) is int and type(rot.get("since") or 0) is int):
        rot = None  # the relay's answer is signed, but its shape is still checked before use
    if rot and (s.meta("key_epoch") or 0) <= rot["epoch"]:
        held = s.meta(ROTATION)
        if not held or held["epoch"] < rot["epoch"]:
            s.set_meta(ROTATION, {"since": rot.get("since") or now_ms(), "epoch": rot["epoch"]})
    if newer_epoch(s) is None:
        s.set_meta(NEWER_SEEN, None)
    elif not s.meta(NEWER_SEEN):
        s.set_meta(NEWER_SEEN, now_ms())
    if "pending" in res:
        pending = [p for p in res["pending"] if _pending_ok(p)] if isinstance(res["pending"], list) else []
        s.set_meta(PENDING, pending)
        seen = s.meta(PENDING_SEEN) or {}  # since when each device has waited, as this device saw it
        s.set_meta(PENDING_SEEN, {p[0].hex(): seen.get(p[0].hex(), now_ms()) for p in pending})
    out = dict(s.meta(OUTGOING) or {})
    for kind in ("approvals", "welcomes", "reject"):
        if sent.get(kind):  # acknowledged: the relay committed them before answering
            out[kind] = [x for x in out.get(kind, []) if x not in sent[kind]]
    s.set_meta(OUTGOING, {k: v for k, v in out.items() if v} or None)


def _bin(v: Any, n: int) -> bool:
    return isinstance(v, bytes) and len(v) == n


def _pending_ok(p: Any) -> bool:
    """[device, x25519 pub, [epochs], {author_pub, transport_pub, ...}] of the right types (info optional)."""
    if not (isinstance(p, list) and len(p) in (3, 4) and _bin(p[0], 8) and _bin(p[1], 32)
            and isinstance(p[2], list) and all(type(e) is int for e in p[2])):
        return False
    return len(p) == 3 or (isinstance(p[3], dict) and _bin(p[3].get("author_pub"), 32)
                           and _bin(p[3].get("transport_pub"), 32))


def untrusted_pending(s: Store) -> list[list[Any]]:
    t = trust(s)
    return [p for p in s.meta(PENDING) or [] if len(p) > 3 and p[0] not in t]


def grant_duties(led: "Ledger", res: dict[str, Any], grants: list[list[Any]], notes: list[str]) -> bool:
    """Admit pending devices whose proof matches one of our team invites; grant trusted ones. True: more to send."""
    s = led.store
    need = False
    invites = dict(s.meta(INVITES) or {})
    # One proof check (scrypt) per device that names one of our invites, never retried: a relay that
    # lists thousands of fake devices cannot make this device spend minutes on each sync.
    failed = set(s.meta(PROOF_FAILED) or [])
    pending = s.meta(PENDING) or []  # as checked by take_response
    for dev, _x, _epochs, info in [p for p in pending if len(p) > 3]:
        th = info.get("token_hash")
        th = th.hex() if isinstance(th, bytes) else None
        if th is None or th not in invites or dev.hex() in failed or dev in trust(s):
            continue
        sealed, member, role, _expires = invites[th]
        secret = led.sealer.open(sealed, b"invite:" + bytes.fromhex(th))
        if approval.check_proof(secret, info.get("proof"), info["author_pub"], info["transport_pub"], _x):
            with s.transaction():
                admit(led, info["author_pub"], _x, member, role)
                del invites[th]
                s.set_meta(INVITES, invites)
            notes.append(_("admitted {member}'s device {device}: it proved it holds your invite").format(
                member=member, device=dev.hex()[:8]))
            need = True
        else:
            failed.add(dev.hex())
            with s.transaction():
                s.set_meta(PROOF_FAILED, sorted(failed))
    t = trust(s)
    keys = led.team_keys()
    n = 0
    for dev, _x, epochs, *_info in pending:
        entry = t.get(dev)
        if entry is None or entry[2] is None:
            continue  # not approved by a person: no key (the relay's word is not enough)
        for epoch in epochs:
            if epoch in keys:
                grants.append([dev, epoch, make_grant(keys[epoch], dev, entry[2], led.author)])
        n += 1
    if grants:
        notes.append(ngettext("shared the team key with {n} approved device",
                              "shared the team key with {n} approved devices", n).format(n=n))
        need = True
    return need


def admit(led: "Ledger", author_pub: bytes, x_pub: bytes, member: str, role: str) -> bytes:
    """Sign an approval record for a device and queue it for the relay; returns it."""
    rec = approval.make_approval(led.author, author_pub, x_pub, member, role, now_ms())
    s = led.store
    s.set_meta(RECORDS, (s.meta(RECORDS) or []) + [rec])
    queue_out(s, "approvals", rec)
    return rec


# -- what waits, and on whom --------------------------------------------------------------------------------


def waiting(s: Store) -> list[dict[str, Any]]:
    """Everything in the key flow that waits on a person, with since when and what to do. No passphrase."""
    out: list[dict[str, Any]] = []
    wait = s.meta(WAIT)
    role = s.meta("role")
    if wait and s.meta(WELCOME_IN):
        out.append({"waits_for": "unlock", "who": "you", "since_ms": wait["since"],
                    "todo": _("the team key has arrived; it is opened at your next command that asks for your "
                              "passphrase (e.g. 'hbw-sync task list')")})
    elif wait and wait["how"] == "code":
        out.append({"waits_for": "approval", "who": "a supervisor", "since_ms": wait["since"],
                    "code": approval.format_code(wait["code"]),
                    "todo": _("show this code to your supervisor (in person or by phone); they approve it with "
                              "'hbw-sync team approve CODE'. Until then this device holds no team key.")})
    elif wait:
        out.append({"waits_for": "welcome", "who": "the supervisor who invited you", "since_ms": wait["since"],
                    "todo": _("sync again; if it stays, ask the supervisor who gave you the invite")})
    elif s.meta("key_epoch") is None and s.meta("relay_url"):
        out.append({"waits_for": "key grant", "who": "a supervisor's device", "since_ms": s.meta("created_ms"),
                    "todo": _("a supervisor's device shares the key at its next unlocked sync")})
    rot = s.meta(ROTATION)
    newer = newer_epoch(s)
    if newer is not None:
        out.append({"waits_for": "key grant", "who": "the supervisor's device that rotated the key",
                    "since_ms": (rot or {}).get("since") or s.meta(NEWER_SEEN), "epoch": newer,
                    "todo": _("the new key (epoch {epoch}) exists; that device shares it at its next sync with "
                              "its passphrase. Your new changes are kept until then, not sealed under the old "
                              "key.").format(epoch=newer)})
    elif rot and (s.meta("key_epoch") or 0) <= rot["epoch"]:
        if role == "supervisor":
            todo = _("run 'hbw-sync team rotate' (or any sync with your passphrase) to make the new team key")
        else:
            todo = _("nothing to do here: your changes are kept and sent once a supervisor's device rotates the "
                     "key")
        out.append({"waits_for": "key rotation", "who": "a supervisor's device" if role != "supervisor" else "you",
                    "since_ms": rot["since"], "epoch": rot["epoch"] + 1,
                    "todo": _("a device was revoked, so nothing new is sealed under the old key; {todo}").format(todo=todo)})
    if role == "supervisor":
        held = {r[0] for r in s.execute("SELECT epoch FROM team_keys")}
        t = trust(s)
        owed = [p for p in s.meta(PENDING) or [] if p[0] in t and t[p[0]][2] is not None and set(p[2]) & held]
        if owed:
            seen = s.meta(PENDING_SEEN) or {}
            out.append({"waits_for": "your unlocked sync", "who": "you",
                        "since_ms": min(seen.get(p[0].hex(), now_ms()) for p in owed), "devices": len(owed),
                        "todo": ngettext("{n} approved device waits for a key this device holds: sync with your "
                                         "passphrase (HBW_PASSPHRASE set, or 'hbw-sync team pending')",
                                         "{n} approved devices wait for a key this device holds: sync with your "
                                         "passphrase (HBW_PASSPHRASE set, or 'hbw-sync team pending')",
                                         len(owed)).format(n=len(owed))})
        for dev, _x, _e, info in untrusted_pending(s):
            out.append({"waits_for": "your approval", "who": "you", "since_ms": info.get("enrolled_ms"),
                        "device": dev.hex(), "member": info.get("member"), "label": info.get("label"),
                        "todo": _("ask {member} for the code their device shows, then 'hbw-sync team approve "
                                  "CODE' (or 'hbw-sync team reject CODE')").format(member=info.get("member"))})
    return out


def newer_epoch(s: Store) -> int | None:
    """The newest epoch the relay lists, when this device does not hold it yet."""
    listed = [e for e in (s.meta("relay_keys") or {}) if type(e) is int]
    mine = s.meta("key_epoch") or 0
    return max(listed) if listed and max(listed) > mine and s.meta("key_epoch") is not None else None


def hold_epoch(s: Store) -> int | None:
    """Seal nothing under this epoch or below: a revoked device may hold it. That is so while a
    rotation is asked for, and once a newer epoch exists (a device that slept through the
    revocation learns it that way: it never seals under the old key once the new one is listed)."""
    rot = s.meta(ROTATION)
    held = rot["epoch"] if rot else None
    newer = newer_epoch(s)
    if newer is not None:
        held = max(held or 0, newer - 1)
    return held


def key_added(s: Store, epoch: int) -> None:
    rot = s.meta(ROTATION)
    if rot and epoch > rot["epoch"]:
        s.set_meta(ROTATION, None)


def devices_for_code(led: "Ledger", code: str) -> list[list[Any]]:
    """The pending device whose proof was made with this code, if any (a list of at most one)."""
    secret = approval.code_secret(code)
    # Newest first, stopping at the first match: one scrypt per device tried.
    for p in sorted(untrusted_pending(led.store), key=lambda p: -(p[3].get("enrolled_ms") or 0)):
        if approval.check_proof(secret, p[3].get("proof"), p[3]["author_pub"], p[3]["transport_pub"], p[1]):
            return [p]
    return []


def new_invite_secret() -> bytes:
    return os.urandom(approval.INVITE_SECRET_LEN)


def rotate(led: "Ledger") -> crypto.TeamKey:
    """Make the next epoch here, seal with it from now on, and publish it with the next sync (locked or not)."""
    s = led.store
    epoch = max(set((s.meta("relay_keys") or {}).keys()) | {led.current_key().epoch}) + 1
    new = crypto.TeamKey.generate(epoch=epoch)
    with s.transaction():
        led.add_team_key(new)
        s.set_meta("publish_key", [new.epoch, new.key_id])
    return new


def rotate_if_wanted(led: "Ledger") -> crypto.TeamKey | None:
    """On a supervisor's device, any unlock after a revocation makes the new epoch: nothing waits for a
    supervisor to remember 'team rotate'. Members' devices wait for it (their grants follow its sync)."""
    s = led.store
    if s.meta("role") != "supervisor" or hold_epoch(s) is None or s.meta("publish_key"):
        return None
    if not led.team_keys():
        return None
    return rotate(led)
