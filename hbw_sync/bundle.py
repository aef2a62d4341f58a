"""Sync bundles: a sync request or reply as one sealed file, for email or a USB stick (sans-IO).

Why: Chidi's phone can send email but his laptop has no data plan; Bosco's
laptop reaches the office only on Mondays. A bundle carries exactly what an
online sync would carry (the device's signed request; the relay's signed
reply), so the relay treats both paths alike. On top, the file is sealed to
its recipient's X25519 key: whoever handles the mail or finds the stick learns
nothing but the team id, the recipient and the size; even the routing metadata
an online relay sees is hidden from them.

Layout (big-endian)::

    "HBW" type(1) version(1) flags(1)=0 team(8) recipient(8) ephemeral X25519 public(32)
    nonce(12) ChaCha20-Poly1305(envelope) ; AAD = the 54-byte header
    key = HKDF-SHA256(X25519(ephemeral, recipient), salt = ephemeral pub || recipient pub,
                      info = "hbw-sync bundle v1")

type "X" goes to the relay (recipient = relay device id; envelope = a signed sync
request with a ``bundle`` counter), type "Y" comes back (recipient = device id;
envelope = the relay's signed response to that request).
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from . import crypto
from .errors import IntegrityError, LimitError, ProtocolError, VersionError

MAGIC = b"HBW"
TO_RELAY = b"X"
TO_DEVICE = b"Y"
VERSION = 1
HEADER = struct.Struct(">3scBB8s8s32s")
_INFO = b"hbw-sync bundle v1"
MAX_BUNDLE = 64 * 1024 * 1024
#: Most sealed document chunks one bundle to the relay carries (its ``chunks`` arg, PROTOCOL.md §18f):
#: a real file averages 64 KiB a chunk, so 64 MiB is about 1,000; this bounds the list before it is built.
MAX_CHUNKS = 16384


def relay_x25519(relay_key: crypto.DeviceKey) -> bytes:
    """The relay's X25519 private key, derived from its signing key: one secret file to keep."""
    return crypto.hkdf(relay_key.private, b"hbw-sync relay x25519 v1")


def _key(shared: bytes, eph_pub: bytes, recipient_pub: bytes) -> bytes:
    return crypto.hkdf(shared, _INFO, salt=eph_pub + recipient_pub)


def seal(kind: bytes, team: bytes, recipient: bytes, recipient_x25519: bytes, envelope: bytes,
         *, ephemeral: bytes | None = None, nonce: bytes | None = None) -> bytes:
    """Seal an envelope to a recipient. ``ephemeral``/``nonce`` are fixed only by the vector generator."""
    eph = X25519PrivateKey.from_private_bytes(ephemeral) if ephemeral else X25519PrivateKey.generate()
    eph_pub = eph.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    shared = eph.exchange(X25519PublicKey.from_public_bytes(recipient_x25519))
    header = HEADER.pack(MAGIC, kind, VERSION, 0, team, recipient, eph_pub)
    return header + crypto.seal(_key(shared, eph_pub, recipient_x25519), envelope, header, nonce=nonce)


def peek(data: bytes) -> tuple[bytes, bytes, bytes]:
    """(type, team, recipient) of a bundle, checking only its framing."""
    if len(data) > MAX_BUNDLE:
        raise LimitError(f"bundle of {len(data)} bytes is over the limit", code="protocol.limit")
    if len(data) < 4 or data[:3] != MAGIC or data[3:4] not in (TO_RELAY, TO_DEVICE):
        raise ProtocolError("this file is not an hbw-sync bundle", code="protocol.magic")
    if len(data) < HEADER.size + crypto.NONCE_LEN + crypto.TAG_LEN:
        raise ProtocolError("this bundle is truncated (an incomplete download or copy?)", code="protocol.truncated")
    _, kind, version, flags, team, recipient, _eph = HEADER.unpack_from(data)
    if version != VERSION:
        raise VersionError(f"bundle format version {version} is not known", hint="upgrade hbw-sync")
    if flags:
        raise VersionError("bundle uses features this version does not know", hint="upgrade hbw-sync")
    return kind, team, recipient


def open_bundle(data: bytes, kind: bytes, team: bytes, recipient: bytes, my_x25519: bytes) -> bytes:
    """The envelope inside a bundle addressed to us; clear errors for each way it can be wrong."""
    k, t, r = peek(data)
    if k != kind:
        raise ProtocolError("this bundle goes the other way (a request where a reply was expected, or back)",
                            code="protocol.bundle_type")
    if t != team:
        raise IntegrityError("this bundle belongs to another team", code="integrity.team")
    if r != recipient:
        raise IntegrityError("this bundle is addressed to another device", code="integrity.recipient")
    eph_pub = data[HEADER.size - 32: HEADER.size]
    me = X25519PrivateKey.from_private_bytes(my_x25519)
    my_pub = me.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        shared = me.exchange(X25519PublicKey.from_public_bytes(eph_pub))
    except ValueError:
        raise IntegrityError("this bundle is damaged or was altered", code="integrity.aead") from None
    try:
        return crypto.open_sealed(_key(shared, eph_pub, my_pub), data[HEADER.size:], data[:HEADER.size], "bundle")
    except IntegrityError:
        raise IntegrityError("this bundle is damaged or was altered (it does not open)", code="integrity.aead") from None
