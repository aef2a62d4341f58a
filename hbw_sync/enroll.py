"""Invites and key grants: how a device joins a team and receives the team key (sans-IO).

The relay must never hold the team key in clear, yet a new member must get it.
So each device has an X25519 key, and a device that holds the team key (a
supervisor's) *grants* it to a newly enrolled device by wrapping it to that
device's X25519 key and signing the grant with its author key. The relay only
stores and forwards the wrapped grant. The same mechanism carries a rotated key
(new epoch) to every device that was not revoked.

An invite is a short text an administrator gives a new member (on paper, in
person, by phone): the relay's URL, the relay's public key (pinned: a device
never syncs with anyone else), the team id, a one-time token, and the member
name and role it enrolls. The relay stores only a hash of the token.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from . import codec, crypto
from .errors import IntegrityError, ProtocolError, UsageError
from .i18n import _

INVITE_PREFIX = "hbw1-"
TOKEN_LEN = 16
_GRANT_LABEL = b"hbw-sync key grant v1\x00"


@dataclass(frozen=True)
class Invite:
    url: str
    relay_public: bytes
    team: bytes
    token: bytes
    member: str
    role: str
    #: SHA-256 of the relay's TLS certificate (DER), for an https URL: a small office's
    #: self-signed certificate is then trusted exactly, and nothing else is.
    tls_sha256: bytes | None = None
    #: A team invite's secret (PROTOCOL.md §14b): made by a supervisor's device, never sent to the
    #: relay; the joining device proves it holds it and opens its welcome with it.
    secret: bytes | None = None

    def encode(self) -> str:
        fields: list[Any] = [self.url, self.relay_public, self.team, self.token, self.member, self.role]
        if self.tls_sha256 is not None or self.secret is not None:
            fields.append(self.tls_sha256)
        if self.secret is not None:
            fields.append(self.secret)
        raw = codec.pack(fields)
        return INVITE_PREFIX + base64.b32encode(raw).decode().rstrip("=").lower()

    @classmethod
    def decode(cls, text: str) -> "Invite":
        t = "".join(text.split()).lower()
        if not t.startswith(INVITE_PREFIX):
            raise UsageError(_("this is not an hbw-sync invite (it should start with 'hbw1-')"))
        body = t[len(INVITE_PREFIX):].upper()
        try:
            raw = base64.b32decode(body + "=" * (-len(body) % 8))
            fields = codec.unpack(raw)
            url, pub, team, token, member, role = fields[:6]
            tls = fields[6] if len(fields) >= 7 else None
            secret = fields[7] if len(fields) == 8 else None
            if len(fields) not in (6, 7, 8):
                raise ValueError
        except (ValueError, TypeError, ProtocolError, Exception):
            raise UsageError(_("this invite is damaged or incomplete; copy it again")) from None
        if not (isinstance(url, str) and isinstance(pub, bytes) and len(pub) == 32 and isinstance(team, bytes)
                and isinstance(token, bytes) and isinstance(member, str) and role in ("member", "supervisor")
                and (tls is None or (isinstance(tls, bytes) and len(tls) == 32))
                and (secret is None or (isinstance(secret, bytes) and len(secret) == 16))):
            raise UsageError(_("this invite is damaged or incomplete; copy it again"))
        return cls(url, pub, team, token, member, role, tls, secret)


def token_hash(token: bytes) -> bytes:
    return hashlib.sha256(b"hbw-sync invite token v1\x00" + token).digest()


def new_token() -> bytes:
    return os.urandom(TOKEN_LEN)


# -- X25519 keys and grants -------------------------------------------------------------------------


def new_x25519() -> bytes:
    """A fresh X25519 private key (raw 32 bytes)."""
    return X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def x25519_public(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def _grant_key(shared: bytes, eph_pub: bytes, recipient_pub: bytes) -> bytes:
    return crypto.hkdf(shared, _GRANT_LABEL, salt=eph_pub + recipient_pub)


def make_grant(key: crypto.TeamKey, recipient_device: bytes, recipient_x25519: bytes, granter: crypto.DeviceKey) -> bytes:
    """Wrap a team key to one device: [epoch, key id, ephemeral pub, sealed secret, granter id] + signature."""
    eph = X25519PrivateKey.generate()
    eph_pub = eph.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    shared = eph.exchange(X25519PublicKey.from_public_bytes(recipient_x25519))
    aad = _GRANT_LABEL + recipient_device + key.epoch.to_bytes(4, "big") + key.key_id
    sealed = crypto.seal(_grant_key(shared, eph_pub, recipient_x25519), key.secret, aad)
    body = codec.pack([key.epoch, key.key_id, eph_pub, sealed, granter.device_id])
    return body + granter.sign(_GRANT_LABEL + recipient_device + body)


def open_grant(grant: bytes, my_device: bytes, my_x25519: bytes, granter_public: bytes) -> crypto.TeamKey:
    """Check the granter's signature and unwrap; IntegrityError if anything is off."""
    if len(grant) < crypto.SIG_LEN + 10:
        raise ProtocolError(_("key grant is truncated"), code="protocol.truncated")
    body, sig = grant[: -crypto.SIG_LEN], grant[-crypto.SIG_LEN:]
    crypto.verify(granter_public, sig, _GRANT_LABEL + my_device + body, what="key grant")
    try:
        epoch, key_id, eph_pub, sealed, _granter = codec.unpack(body)
        shared = X25519PrivateKey.from_private_bytes(my_x25519).exchange(X25519PublicKey.from_public_bytes(eph_pub))
        epoch.to_bytes(4, "big")
    except (ValueError, TypeError, AttributeError, OverflowError):
        raise ProtocolError(_("malformed key grant"), code="protocol.schema") from None
    aad = _GRANT_LABEL + my_device + epoch.to_bytes(4, "big") + key_id
    secret = crypto.open_sealed(_grant_key(shared, eph_pub, x25519_public(my_x25519)), sealed, aad, what="key grant")
    key = crypto.TeamKey(epoch, secret)
    if key.key_id != key_id:
        raise IntegrityError(_("key grant does not match its key id"), code="integrity.grant")
    return key


def grant_sender(grant: bytes) -> bytes:
    """The device id of whoever made a grant (to find the key to check it with); ProtocolError if malformed."""
    try:
        sender = codec.unpack(grant[: -crypto.SIG_LEN])[4]
    except (TypeError, IndexError, KeyError, ValueError):
        sender = None
    if not isinstance(sender, bytes) or len(sender) != 8:
        raise ProtocolError(_("malformed key grant"), code="protocol.schema")
    return sender
