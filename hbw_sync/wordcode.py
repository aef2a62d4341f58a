"""Invites as a short code of words a person can read out by phone (sans-IO). See PROTOCOL.md §14a.

Why: a full invite is ~190 characters of base32, impossible to dictate. A word
code is a slot number and five words ("4821 orchid lantern ferry mango
tiger"). The relay keeps the full invite under the slot, *sealed* with a key
derived from the words; the device fetches it by slot, proving it knows the
words, opens it, and then joins with the full invite exactly as if it had been
typed. So the relay key and TLS certificate the device pins still come from
office IT, never from whoever answers at the address: a fake relay cannot make
a sealed invite that opens without the words.

Strength: five words from the 2,048-word BIP-39 English list are 55 bits. Each
guess costs one scrypt (N = 2^15, r = 8: ~32 MiB, ~0.1 s), the relay allows 5
wrong proofs per slot and 20 per 10 minutes in all, and a code lives 24 hours at
most and ends when its invite is used. Any word may be typed by its first four
letters (unique in the list), in any case, separated by spaces or dashes.
"""

from __future__ import annotations

import hashlib
import os
from importlib import resources

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from . import codec, crypto
from .errors import IntegrityError, ProtocolError, UsageError
from .i18n import _

N_WORDS = 5
SLOT_MIN, SLOT_MAX = 1000, 9999
PROOF_LEN = 32
#: A code lives at most this long (and ends sooner if its invite is used or expires).
CODE_TTL_MS = 24 * 3_600_000
#: Wrong proofs a slot survives, and wrong proofs the relay accepts per window, before refusing.
MAX_FAILURES_PER_SLOT = 5
MAX_FAILURES_PER_WINDOW = 20
FAILURE_WINDOW_MS = 10 * 60_000
#: A fetch request is [1, slot, proof]; nothing longer is read.
MAX_FETCH_BODY = 64
MAX_SEALED_INVITE = 1024
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_LABEL = b"hbw-sync word code v1\x00"

WORDS: tuple[str, ...] = tuple(
    resources.files("hbw_sync.data").joinpath("words-en.txt").read_text(encoding="utf-8").split())
_BY_PREFIX = {w[:4]: w for w in WORDS}
assert len(WORDS) == 2048 and len(_BY_PREFIX) == 2048, "the word list must be BIP-39's: 2,048 words, 4-letter unique"


def new_code() -> tuple[int, tuple[str, ...]]:
    """A random slot and five random words (55 bits)."""
    slot = SLOT_MIN + int.from_bytes(os.urandom(4), "big") % (SLOT_MAX - SLOT_MIN + 1)
    raw = int.from_bytes(os.urandom(8), "big")
    words = tuple(WORDS[(raw >> (11 * i)) & 0x7FF] for i in range(N_WORDS))
    return slot, words


def format_code(slot: int, words: tuple[str, ...]) -> str:
    """``4821-orchid-lantern-ferry-mango-tiger``: what `hbw-sync join` accepts (spaces work too)."""
    return "-".join([str(slot), *words])


def looks_like_code(text: str) -> bool:
    """A word code starts with its slot number; a full invite with ``hbw1-``."""
    return text.strip()[:1].isdigit()


def parse_code(text: str) -> tuple[int, tuple[str, ...]]:
    """Slot and full words from what a person typed; UsageError naming what is wrong."""
    parts = [p for p in text.replace(",", " ").replace("-", " ").lower().split() if p]
    if not parts or not parts[0].isdigit() or not SLOT_MIN <= int(parts[0]) <= SLOT_MAX:
        raise UsageError(_("a word code starts with its 4-digit number, e.g. 4821 orchid lantern ferry mango tiger"))
    words = parts[1:]
    if len(words) != N_WORDS:
        raise UsageError(_("a word code has {N_WORDS} words after its number; this one has {n}").format(N_WORDS=N_WORDS, n=len(words)))
    full = []
    for w in words:
        match = _BY_PREFIX.get(w[:4]) if len(w) >= 3 else None
        if match is None or not match.startswith(w):
            raise UsageError(_("{w!r} is not one of the code words; check its spelling with office IT").format(w=w))
        full.append(match)
    return int(parts[0]), tuple(full)


def derive(slot: int, words: tuple[str, ...]) -> tuple[bytes, bytes]:
    """(proof key, seal key) from the code; slow on purpose (scrypt) so that guessing is expensive."""
    kdf = Scrypt(salt=_LABEL + slot.to_bytes(2, "big"), length=64, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    k = kdf.derive(" ".join(words).encode())
    return k[:32], k[32:]


def proof_digest(proof: bytes) -> bytes:
    """What the relay stores to check a proof: it never holds the proof itself."""
    return hashlib.sha256(_LABEL + b"proof\x00" + proof).digest()


def _aad(slot: int) -> bytes:
    return _LABEL + b"invite\x00" + slot.to_bytes(2, "big")


def seal_invite(seal_key: bytes, slot: int, invite_text: str, nonce: bytes | None = None) -> bytes:
    """nonce || ChaCha20-Poly1305(seal key, invite text); ``nonce`` is fixed only for test vectors."""
    return crypto.seal(seal_key, invite_text.encode(), _aad(slot), nonce)


def open_invite(seal_key: bytes, slot: int, sealed: bytes) -> str:
    """The full invite text; IntegrityError (``integrity.code``) when it does not open with these words."""
    if not isinstance(sealed, bytes) or len(sealed) > MAX_SEALED_INVITE:
        raise ProtocolError(_("the relay's answer to a word code is malformed"), code="protocol.schema")
    try:
        return crypto.open_sealed(seal_key, sealed, _aad(slot), what="invite").decode()
    except IntegrityError:
        raise IntegrityError(
            _("the invite this relay holds for the code does not open with these words: it "
                  "is not the office's relay, or the code was mistyped"), code="integrity.code",
            hint=_("check the words with office IT; if they are right, do not use this network")) from None


def fetch_request(slot: int, proof: bytes) -> bytes:
    return codec.pack([1, slot, proof])


def parse_fetch_request(body: bytes) -> tuple[int, bytes]:
    """Checked before anything is looked up: a small array of a version, a slot and a 32-byte proof."""
    if len(body) > MAX_FETCH_BODY:
        raise ProtocolError(_("a word code request is too long"), code="protocol.limit")
    try:
        v = codec.unpack(body, codec.Limits(max_container=3))
    except ProtocolError:
        raise ProtocolError(_("a word code request is malformed"), code="protocol.schema") from None
    if not (isinstance(v, list) and len(v) == 3 and v[0] == 1 and type(v[1]) is int
            and SLOT_MIN <= v[1] <= SLOT_MAX and isinstance(v[2], bytes) and len(v[2]) == PROOF_LEN):
        raise ProtocolError(_("a word code request is malformed"), code="protocol.schema")
    return v[1], v[2]
