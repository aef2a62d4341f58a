"""The key hierarchy at rest on a device: who can read what without the passphrase.

Why: a laptop at home is shared with family, and a copy of the database may
leave the house; yet a scheduled sync must run at 3 a.m. with nobody to type a
passphrase. So keys are split by what they allow::

    passphrase --scrypt--> KEK --AEAD--> store key (32 random bytes)
                                          ├── seals content columns at rest (titles, notes, docs)
                                          ├── seals the author key (Ed25519, signs batches)
                                          └── seals the team keys (one per epoch)
    transport key (Ed25519, in clear in the store): signs sync *requests* only

Without the passphrase one can move already sealed and signed batches (sync,
bundle export) and see routing metadata (assignees, statuses, due dates, which
the relay sees too), but cannot read content, make a change, or sign as the
official. This module is plain functions over bytes; the store keeps the blobs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..errors import IntegrityError, WrongKeyError
from ..i18n import _

NONCE = 12
SALT = 16


@dataclass(frozen=True)
class KdfParams:
    """scrypt cost. n=2**15, r=8 costs ~32 MiB and ~0.1 s: slow for a guesser, fine once per command."""

    n: int = 2**15
    r: int = 8
    p: int = 1

    def to_list(self) -> list[int]:
        return [self.n, self.r, self.p]

    @classmethod
    def from_list(cls, v: list[int]) -> "KdfParams":
        return cls(*v)


def derive_kek(passphrase: str, salt: bytes, params: KdfParams) -> bytes:
    return Scrypt(salt=salt, length=32, n=params.n, r=params.r, p=params.p).derive(passphrase.encode("utf-8"))


def wrap_store_key(passphrase: str, store_key: bytes, params: KdfParams) -> bytes:
    """salt || nonce || AEAD(store key): what the store keeps of the passphrase."""
    salt = os.urandom(SALT)
    kek = derive_kek(passphrase, salt, params)
    nonce = os.urandom(NONCE)
    return salt + nonce + ChaCha20Poly1305(kek).encrypt(nonce, store_key, b"hbw-sync store key v1")


def unwrap_store_key(passphrase: str, wrapped: bytes, params: KdfParams) -> bytes:
    """The store key, or WrongKeyError: the AEAD tag tells a wrong passphrase apart at once."""
    salt, nonce, ct = wrapped[:SALT], wrapped[SALT : SALT + NONCE], wrapped[SALT + NONCE :]
    kek = derive_kek(passphrase, salt, params)
    try:
        return ChaCha20Poly1305(kek).decrypt(nonce, ct, b"hbw-sync store key v1")
    except InvalidTag:
        raise WrongKeyError(_("wrong passphrase"), hint=_("check HBW_PASSPHRASE or retype it")) from None


class Sealer:
    """Seals values at rest under the store key, bound to where they live (table, row, column).

    The binding (AAD) stops an attacker with write access to the file from
    swapping one task's encrypted title into another row unnoticed.
    """

    def __init__(self, store_key: bytes):
        self._aead = ChaCha20Poly1305(store_key)

    def seal(self, plaintext: bytes, where: bytes) -> bytes:
        nonce = os.urandom(NONCE)
        return nonce + self._aead.encrypt(nonce, plaintext, where)

    def seal_parts(self, plaintext: bytes, where: bytes) -> tuple[bytes, bytes]:
        """(nonce, ciphertext) kept apart: no concatenated copy of a 20 MB document."""
        nonce = os.urandom(NONCE)
        return nonce, self._aead.encrypt(nonce, plaintext, where)

    def open_parts(self, nonce: bytes, ciphertext: bytes, where: bytes) -> bytes:
        try:
            return self._aead.decrypt(nonce, ciphertext, where)
        except InvalidTag:
            raise IntegrityError(
                _("a record in the local store does not decrypt: the file was altered or damaged"),
                code="integrity.store",
            ) from None

    def open(self, sealed: bytes, where: bytes) -> bytes:
        try:
            return self._aead.decrypt(sealed[:NONCE], sealed[NONCE:], where)
        except InvalidTag:
            raise IntegrityError(
                _("a record in the local store does not decrypt: the file was altered or damaged"),
                code="integrity.store",
            ) from None
