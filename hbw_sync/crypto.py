"""Keys and the few primitives hbw-sync uses, all from pyca/cryptography.

* Each **device** has an Ed25519 key pair. It signs every batch, so the audit
  trail says which device (and so which official) made each change, and the
  relay can refuse a revoked device. The device id is the first 8 bytes of
  SHA-256 over a label and the public key.
* The **team key** is 32 random bytes shared by the team's devices, never by the
  relay. It has an *epoch* number so that it can rotate (after a laptop is lost)
  while older batches stay readable. Purpose keys are derived from it with
  HKDF-SHA256, so the same secret never serves two purposes.
* Content is sealed with **ChaCha20-Poly1305** (12-byte random nonce, 16-byte
  tag: 28 bytes per batch). Random 96-bit nonces are safe far beyond the number
  of batches one epoch will see; rotation resets the count anyway.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import IntegrityError, ProtocolError

NONCE_LEN = 12
TAG_LEN = 16
SIG_LEN = 64
PUBLIC_KEY_LEN = 32
TEAM_KEY_LEN = 32

_DEVICE_ID_LABEL = b"hbw-sync device id v1\x00"
_KEY_ID_LABEL = b"hbw-sync key id v1\x00"


@functools.lru_cache(maxsize=4096)
def _private(raw: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(raw)


@functools.lru_cache(maxsize=4096)
def _public(raw: bytes) -> Ed25519PublicKey:
    """Parsed public keys, cached: the relay checks the same few hundred devices all day."""
    return Ed25519PublicKey.from_public_bytes(raw)


def device_id_for(public_key: bytes) -> bytes:
    """The 8-byte device id of an Ed25519 public key."""
    return hashlib.sha256(_DEVICE_ID_LABEL + public_key).digest()[:8]


def hkdf(secret: bytes, info: bytes, length: int = 32, salt: bytes | None = None) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(secret)


@dataclass(frozen=True)
class DeviceKey:
    """A device's signing key. ``private`` is the 32-byte Ed25519 seed."""

    private: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> "DeviceKey":
        raw = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return cls(raw)

    @property
    def _key(self) -> Ed25519PrivateKey:
        return _private(self.private)

    @property
    def public(self) -> bytes:
        return self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def device_id(self) -> bytes:
        return device_id_for(self.public)

    def sign(self, message: bytes | bytearray | memoryview) -> bytes:
        return self._key.sign(message)


def verify(public_key: bytes, signature: bytes, message: bytes | bytearray | memoryview, what: str = "message") -> None:
    """Check an Ed25519 signature; IntegrityError when it does not hold."""
    try:
        _public(bytes(public_key)).verify(signature, message)
    except (InvalidSignature, ValueError, TypeError):
        raise IntegrityError(
            f"the {what}'s signature does not match its author's key: it was altered or forged",
            code="integrity.signature",
        ) from None


@dataclass(frozen=True)
class TeamKey:
    """The team's shared content key for one epoch."""

    epoch: int
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != TEAM_KEY_LEN:
            raise ValueError("team key must be 32 bytes")
        if not 0 <= self.epoch < (1 << 32):
            raise ValueError("key epoch out of range")

    @classmethod
    def generate(cls, epoch: int = 1) -> "TeamKey":
        return cls(epoch, os.urandom(TEAM_KEY_LEN))

    @property
    def key_id(self) -> bytes:
        """A public 8-byte fingerprint, so a wrong key is recognised before any decryption."""
        return hmac.new(self.secret, _KEY_ID_LABEL + self.epoch.to_bytes(4, "big"), "sha256").digest()[:8]

    def subkey(self, purpose: bytes) -> bytes:
        return hkdf(self.secret, b"hbw-sync " + purpose + b" v1")


def seal(key: bytes, plaintext: bytes, aad: bytes, nonce: bytes | None = None) -> bytes:
    """nonce || ChaCha20-Poly1305(plaintext, aad). ``nonce`` is only fixed for test vectors."""
    nonce = os.urandom(NONCE_LEN) if nonce is None else nonce
    return nonce + ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)


def seal_into(out: bytearray, key: bytes, plaintext: bytes, aad: bytes, nonce: bytes | None = None) -> None:
    """Append nonce || AEAD(plaintext) to ``out`` without an intermediate concatenation (large documents)."""
    nonce = os.urandom(NONCE_LEN) if nonce is None else nonce
    out += nonce
    out += ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, sealed: bytes, aad: bytes, what: str = "content") -> bytes:
    """Inverse of ``seal``; IntegrityError if the key is wrong or anything was altered."""
    if len(sealed) < NONCE_LEN + TAG_LEN:
        raise ProtocolError(f"sealed {what} is too short", code="protocol.truncated")
    try:
        return ChaCha20Poly1305(key).decrypt(sealed[:NONCE_LEN], sealed[NONCE_LEN:], aad)
    except InvalidTag:
        raise IntegrityError(
            f"the sealed {what} does not open: it was altered, or it was sealed with another team key",
            code="integrity.aead",
        ) from None
