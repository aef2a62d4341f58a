"""A supervisor admits devices: team invites, pending devices, approve, reject, rotate.

Every command here runs unlocked (it needs the team key or the author key), so a
grant is made at the moment a person decides, never "at the next supervisor
sync". Each queues what it must tell the relay in the store (kept until a signed
answer acknowledges it) and then syncs, so a dropped link loses nothing: the next
sync sends it. See PROTOCOL.md §14b.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import approval
from ..enroll import Invite, new_token, token_hash
from ..errors import AccessError, TransientError, UsageError
from . import keyflow
from . import sync as syncing
from .device import Device, now_ms
from .replica import Replica
from ..i18n import _


def _supervisor(rep: Replica) -> None:
    if rep.store.meta("role") != "supervisor":
        raise AccessError(_("only a supervisor's device can admit devices or rotate the team key"), code="access.role",
                          hint=_("ask your team's supervisor"))
    rep.current_key()  # raises ConfigError if this device holds no key


def _try_sync(home: Path | None, passphrase: str, **kw: Any) -> str | None:
    """Sync once; a link that is down is a note (what was queued goes with the next sync), not a failure."""
    try:
        syncing.sync(home, passphrase, **kw)
    except TransientError as e:
        return f"not sent yet ({e.message}); it goes with your next sync"
    return None


def make_invite(home: Path | None, passphrase: str, member: str, role: str = "member", ttl_days: int = 14, *,
                url: str | None = None, transport: syncing.Transport = syncing.post, timeout: float = 60) -> Invite:
    """A team invite made on this supervisor's device: its secret never goes to the relay.

    The relay receives the token's hash and a welcome (the team keys sealed under the secret), so
    the new device gets the key when it joins, even if this device is offline then.
    Raises: AccessError (not a supervisor), TransientError (relay unreachable: nothing was made).
    """
    member = member.strip().lower()
    if role not in approval.ROLES:
        raise UsageError(_("role must be 'member' or 'supervisor'"))
    dev = Device.open(home)
    with dev:
        rep = dev.unlock(passphrase)
        _supervisor(rep)
        s = dev.store
        token, secret = new_token(), keyflow.new_invite_secret()
        th = token_hash(token)
        keys = list(rep.team_keys().values())
        welcome = approval.make_welcome(approval.invite_welcome_key(secret), rep.author, keys, rep.require_team())
        args = {"token_hash": th, "member": member, "role": role, "ttl_days": ttl_days, "welcome": welcome,
                "epochs": sorted(k.epoch for k in keys)}
        syncing.call(dev, "invite", args, transport, timeout)
        with s.transaction():
            invites = dict(s.meta(keyflow.INVITES) or {})
            invites[th.hex()] = [rep.sealer.seal(secret, b"invite:" + th), member, role,
                                 now_ms() + ttl_days * 86_400_000]
            s.set_meta(keyflow.INVITES, invites)
        return Invite(url or s.meta("relay_url"), s.meta("relay_public"), rep.require_team(), token, member, role,
                      s.meta("tls_sha256"), secret)


def pending(home: Path | None, passphrase: str, **kw: Any) -> dict[str, Any]:
    """Devices waiting for a person's approval (after a sync, so the list is fresh when the link is up)."""
    note = _try_sync(home, passphrase, **kw)
    with Device.open(home) as dev:
        rep = dev.unlock(passphrase)
        _supervisor(rep)
        items = [{"device": d.hex(), "member": i.get("member"), "label": i.get("label"), "role": i.get("role"),
                  "since_ms": i.get("enrolled_ms")} for d, _x, _e, i in keyflow.untrusted_pending(dev.store)]
    return {"pending": items, "note": note}


def _one_device(rep: Replica, code: str) -> list[Any]:
    found = keyflow.devices_for_code(rep.ledger, code)
    if not found:
        raise UsageError(_("no device waiting for approval shows this code"), code="usage.code")
    return found[0]


def approve(home: Path | None, passphrase: str, code: str, role: str = "member", **kw: Any) -> dict[str, Any]:
    """Admit the device that shows CODE: sign its approval, hand it the team keys sealed under the code.

    ``role`` is the person's decision, not the relay's: only a device approved as supervisor
    vouches for others. Rotates the team key first if a revocation asked for it, so the new device
    gets the new epoch. Raises: UsageError (no device shows this code), AccessError (not a supervisor).
    """
    approval.parse_code(code)
    if role not in approval.ROLES:
        raise UsageError(_("role must be 'member' or 'supervisor'"))
    note = _try_sync(home, passphrase, **kw)  # a fresh pending list
    with Device.open(home) as dev:
        rep = dev.unlock(passphrase)
        _supervisor(rep)
        s = dev.store
        dev_id, x_pub, _epochs, info = _one_device(rep, code)
        with s.transaction():
            if keyflow.hold_epoch(s) is not None:
                keyflow.rotate(rep.ledger)
            keys = list(rep.team_keys().values())
            keyflow.admit(rep.ledger, info["author_pub"], x_pub, info["member"], role)
            welcome = approval.seal_code_welcome(code, info["author_pub"], x_pub, rep.author, keys, rep.require_team())
            keyflow.queue_out(s, "welcomes", [dev_id, sorted(k.epoch for k in keys), welcome])
    note = _try_sync(home, passphrase, **kw) or note
    return {"device": dev_id.hex(), "member": info["member"], "role": role, "label": info.get("label"), "note": note,
            "enrolled_as": info.get("role")}


def reject(home: Path | None, passphrase: str, code: str, **kw: Any) -> dict[str, Any]:
    """Refuse the device that shows CODE: the relay revokes it; it never gets a key."""
    approval.parse_code(code)
    _try_sync(home, passphrase, **kw)
    with Device.open(home) as dev:
        rep = dev.unlock(passphrase)
        _supervisor(rep)
        dev_id, _x, _e, info = _one_device(rep, code)
        with dev.store.transaction():
            keyflow.queue_out(dev.store, "reject", dev_id)
    note = _try_sync(home, passphrase, **kw)
    return {"device": dev_id.hex(), "member": info.get("member"), "note": note}


def rotate(home: Path | None, passphrase: str, **kw: Any) -> dict[str, Any]:
    """Make the next team key epoch now and share it with every approved device (not revoked ones)."""
    with Device.open(home) as dev:
        rep = dev.unlock(passphrase)
        _supervisor(rep)
        if dev.store.meta("publish_key"):
            new_epoch = dev.store.meta("publish_key")[0]  # made already, not yet published
        else:
            new_epoch = keyflow.rotate(rep.ledger).epoch
    note = _try_sync(home, passphrase, **kw)
    return {"epoch": new_epoch, "note": note}
