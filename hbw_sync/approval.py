"""A person admits a device to the team key; the relay never can (sans-IO formats).

Whoever runs the relay's host can make invites and write devices into its
database. So no device may obtain a team key because the relay says it belongs:
it must prove to a supervisor's device that it holds a secret the relay never
saw. Two ways to share that secret (PROTOCOL.md §14b):

* **Team invite** (``hbw-sync team invite``): the supervisor's device puts a
  random secret S into the invite text. The relay gets only the token's hash and
  a *welcome* (the team keys, sealed under a key derived from S), which it hands
  to the device that enrolls with the token.
* **Approval code** (a device admitted by IT alone, ``hbw-relay invite``): the
  device draws a 20-digit code and shows it; the supervisor types it into
  ``hbw-sync team approve CODE``. The relay sees only a proof keyed by the code.

In both, the joining device sends a **proof**: an HMAC over its enrollment keys,
keyed by the secret stretched with scrypt (a 20-digit code is about 66 bits; the
stretching makes guessing it from the proof impractical). A supervisor's device
admits a device only when the proof checks, and then signs an **approval
record** that every device receives, so another supervisor's device trusts it
without asking again and members accept key grants only from approved devices.
The welcome, sealed under the secret, tells the joining device which supervisor
device admitted it: its first trusted granter.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Iterable

from . import codec, crypto
from .errors import IntegrityError, ProtocolError, UsageError
from .i18n import _

CODE_DIGITS = 20
INVITE_SECRET_LEN = 16
PROOF_LEN = 32
#: A welcome carries one 32-byte secret per key epoch: 64 KiB is over a thousand epochs.
MAX_WELCOME = 64 * 1024
MAX_APPROVAL = 512
#: scrypt cost for the proof key: ~16 MiB and some tens of ms per guess, per device.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1

_STRETCH_LABEL = b"hbw-sync enrollment secret v1\x00"
_PROOF_LABEL = b"hbw-sync enrollment proof v1\x00"
_WELCOME_LABEL = b"hbw-sync welcome v1\x00"
_APPROVAL_LABEL = b"hbw-sync approval v1\x00"
ROLES = ("member", "supervisor")


# -- the shared secret ------------------------------------------------------------------------------


def new_code() -> str:
    """A fresh approval code: 20 decimal digits (about 66 bits)."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def format_code(code: str) -> str:
    """Groups of five digits, as a person reads them aloud: '12345 67890 12345 67890'."""
    return " ".join(code[i:i + 5] for i in range(0, len(code), 5))


def parse_code(text: str) -> str:
    """The 20 digits of a code as typed (spaces and dashes ignored); UsageError otherwise."""
    digits = "".join(ch for ch in text if ch not in " -\t")
    if len(digits) != CODE_DIGITS or not digits.isdigit() or not digits.isascii():
        raise UsageError(_("an approval code is {CODE_DIGITS} digits, as the new device shows it").format(CODE_DIGITS=CODE_DIGITS),
                         code="usage.code", hint=_("type the code shown on the device, e.g. 12345 67890 12345 67890"))
    return digits


def code_secret(code: str) -> bytes:
    return parse_code(code).encode()


def stretch(secret: bytes, author_pub: bytes) -> bytes:
    """The key that proofs and approval welcomes are made with; salted by the device's author key."""
    return hashlib.scrypt(secret, salt=_STRETCH_LABEL + author_pub, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                          maxmem=64 * 1024 * 1024, dklen=32)


def _proof_msg(device: bytes, author_pub: bytes, transport_pub: bytes, x25519_pub: bytes) -> bytes:
    return _PROOF_LABEL + device + author_pub + transport_pub + x25519_pub


def make_proof(secret: bytes, author_pub: bytes, transport_pub: bytes, x25519_pub: bytes) -> bytes:
    """HMAC-SHA256 over the device's three public keys, keyed by the stretched secret."""
    k = stretch(secret, author_pub)
    return hmac.new(k, _proof_msg(crypto.device_id_for(author_pub), author_pub, transport_pub, x25519_pub),
                    "sha256").digest()


def check_proof(secret: bytes, proof: Any, author_pub: bytes, transport_pub: bytes, x25519_pub: bytes) -> bool:
    """True when ``proof`` was made with ``secret`` over exactly these keys (constant time)."""
    if not isinstance(proof, bytes) or len(proof) != PROOF_LEN:
        return False
    return hmac.compare_digest(make_proof(secret, author_pub, transport_pub, x25519_pub), proof)


# -- welcomes ------------------------------------------------------------------------------------------


def invite_welcome_key(secret: bytes) -> bytes:
    """Welcome key of a team invite: S is 128 random bits, no stretching needed."""
    return crypto.hkdf(secret, _WELCOME_LABEL + b"invite")


def _raw(public: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    raw: bytes = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw


def code_welcome_key(code: str, author_pub: bytes, shared: bytes, eph_pub: bytes, x_pub: bytes) -> bytes:
    """Welcome key of an approval: needs both the code and the device's X25519 private key, so a code
    overheard on the phone, together with everything the relay holds, still opens nothing."""
    return crypto.hkdf(shared + stretch(code_secret(code), author_pub), _WELCOME_LABEL + b"code",
                       salt=eph_pub + x_pub)


def seal_code_welcome(code: str, author_pub: bytes, x_pub: bytes, granter: crypto.DeviceKey,
                      team_keys: Iterable[crypto.TeamKey], team: bytes, eph_private: bytes | None = None,
                      nonce: bytes | None = None) -> bytes:
    """E (32) ‖ welcome sealed under the code and X25519(e, device's X25519 key). ``eph_private``/``nonce``: vectors only."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

    eph = X25519PrivateKey.generate() if eph_private is None else X25519PrivateKey.from_private_bytes(eph_private)
    eph_pub = _raw(eph.public_key())
    shared = eph.exchange(X25519PublicKey.from_public_bytes(x_pub))
    key = code_welcome_key(code, author_pub, shared, eph_pub, x_pub)
    return eph_pub + make_welcome(key, granter, team_keys, team, nonce)


def open_code_welcome(code: str, author_pub: bytes, x_private: bytes, data: Any, team: bytes) -> Welcome:
    """Open a welcome sealed by ``seal_code_welcome`` to this device; IntegrityError if it is not ours."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

    if not isinstance(data, bytes) or not 32 < len(data) <= MAX_WELCOME:
        raise ProtocolError(_("malformed welcome"), code="protocol.schema")
    me = X25519PrivateKey.from_private_bytes(x_private)
    shared = me.exchange(X25519PublicKey.from_public_bytes(data[:32]))
    key = code_welcome_key(code, author_pub, shared, data[:32], _raw(me.public_key()))
    return open_welcome(key, data[32:], team)


@dataclass(frozen=True)
class Welcome:
    """What the admitting supervisor's device tells the joining device, sealed under the shared secret."""

    granter: bytes  # device id of the supervisor's device
    granter_pub: bytes  # its author key: the joining device's first trusted granter
    keys: tuple[crypto.TeamKey, ...]


def make_welcome(key: bytes, granter: crypto.DeviceKey, team_keys: Iterable[crypto.TeamKey], team: bytes,
                 nonce: bytes | None = None) -> bytes:
    """nonce ‖ ChaCha20-Poly1305(msgpack([granter id, granter pub, [[epoch, secret], ...]]), aad = label ‖ team)."""
    body = codec.pack([granter.device_id, granter.public, [[k.epoch, k.secret] for k in sorted(
        team_keys, key=lambda k: k.epoch)]])
    return crypto.seal(key, body, _WELCOME_LABEL + team, nonce)


def open_welcome(key: bytes, data: Any, team: bytes) -> Welcome:
    """Open and check a welcome: IntegrityError if it was not sealed under this secret for this team."""
    if not isinstance(data, bytes) or len(data) > MAX_WELCOME:
        raise ProtocolError(_("malformed welcome"), code="protocol.schema")
    body = crypto.open_sealed(key, data, _WELCOME_LABEL + team, what="welcome")
    try:
        granter, pub, pairs = codec.unpack(body)
        if not (isinstance(granter, bytes) and isinstance(pub, bytes) and len(pub) == 32
                and crypto.device_id_for(pub) == granter and isinstance(pairs, list)):
            raise ValueError
        keys = tuple(crypto.TeamKey(e, s) for e, s in pairs)
    except (ValueError, TypeError):
        raise ProtocolError(_("malformed welcome"), code="protocol.schema") from None
    return Welcome(granter, pub, keys)


# -- approval records ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Approval:
    """A supervisor's device vouches: this device (these keys) belongs to this member, in this role."""

    device: bytes
    author_pub: bytes
    x25519_pub: bytes
    member: str
    role: str
    approver: bytes
    time_ms: int
    raw: bytes = b""


def make_approval(approver: crypto.DeviceKey, author_pub: bytes, x25519_pub: bytes, member: str, role: str,
                  time_ms: int) -> bytes:
    """msgpack([device, author pub, x25519 pub, member, role, approver, time_ms]) ‖ Ed25519(approver, label ‖ body)."""
    body = codec.pack([crypto.device_id_for(author_pub), author_pub, x25519_pub, member, role,
                       approver.device_id, time_ms])
    return body + approver.sign(_APPROVAL_LABEL + body)


def parse_approval(data: Any) -> Approval:
    """The fields of an approval record, type- and size-checked; the signature is checked by ``verify_approval``."""
    if not isinstance(data, bytes) or not crypto.SIG_LEN < len(data) <= MAX_APPROVAL:
        raise ProtocolError(_("malformed approval record"), code="protocol.schema")
    try:
        dev, a_pub, x_pub, member, role, approver, t = codec.unpack(data[:-crypto.SIG_LEN])
    except (ValueError, TypeError):
        raise ProtocolError(_("malformed approval record"), code="protocol.schema") from None
    if not (isinstance(a_pub, bytes) and len(a_pub) == 32 and isinstance(x_pub, bytes) and len(x_pub) == 32
            and dev == crypto.device_id_for(a_pub) and isinstance(member, str) and role in ROLES
            and isinstance(approver, bytes) and len(approver) == 8 and type(t) is int):
        raise ProtocolError(_("malformed approval record"), code="protocol.schema")
    return Approval(dev, a_pub, x_pub, member, role, approver, t, data)


def verify_approval(data: bytes, approver_pub: bytes) -> Approval:
    a = parse_approval(data)
    if crypto.device_id_for(approver_pub) != a.approver:
        raise IntegrityError(_("approval record names another approver"), code="integrity.signature")
    crypto.verify(approver_pub, data[-crypto.SIG_LEN:], _APPROVAL_LABEL + data[:-crypto.SIG_LEN], what="approval record")
    return a


Trusted = dict[bytes, tuple[bytes, str, "bytes | None"]]


def trusted(anchors: Trusted, records: Iterable[bytes], revoked: Iterable[bytes] = ()) -> Trusted:
    """Devices this device trusts, each -> (author pub, role, X25519 pub or None): ``anchors`` and, transitively, every
    device an approval record from a trusted *supervisor* device vouches for. Records that do not
    parse or verify are ignored. ``revoked`` devices are left out of the answer (a stolen laptop must
    not grant a key of its own), but the devices they approved stay trusted: losing the supervisor's
    laptop must not cut the team off (an honest relay takes no new record from a revoked device).

    The relay's roster plays no part: it can list devices, but cannot make any of them trusted.
    """
    out = dict(anchors)
    parsed = []
    for r in records:
        try:
            parsed.append(parse_approval(r))
        except ProtocolError:
            continue
    gone = set(revoked)
    changed = True
    while changed:
        changed = False
        for a in parsed:
            if a.device in out or a.approver not in out:
                continue
            pub, role, _x = out[a.approver]
            if role != "supervisor":
                continue
            try:
                verify_approval(a.raw, pub)
            except (IntegrityError, ProtocolError):
                continue
            out[a.device] = (a.author_pub, a.role, a.x25519_pub)
            changed = True
    return {d: v for d, v in out.items() if d not in gone}
