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

That is format 1, still read. Writers use format 2 (version byte 2, below): the same header,
then the plaintext ``u32 len || envelope || body`` sealed in 64 KiB segments, so neither side
holds a bundle whole. See PROTOCOL.md §18b "Bundle format 2".
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterator
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from . import chunks, crypto
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
    _magic, kind, version, flags, team, recipient, _eph = HEADER.unpack_from(data)
    if version != VERSION:
        raise VersionError(f"bundle format version {version} is not known", hint="upgrade hbw-sync")
    if flags:
        raise VersionError("bundle uses features this version does not know", hint="upgrade hbw-sync")
    return kind, team, recipient


def open_bundle(data: bytes, kind: bytes, team: bytes, recipient: bytes, my_x25519: bytes) -> bytes:
    """The envelope inside a bundle addressed to us; clear errors for each way it can be wrong."""
    _check_address(*peek(data), kind, team, recipient)
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


# -- version 2: a stream of sealed segments (PROTOCOL.md §18b "Bundle format 2") ------------------
#
# Why: a version 1 bundle is one AEAD message, so whoever writes or opens it holds all of it in
# memory (a 20 MB document cost 127-175 MB to export), and its size was capped by that. Version 2
# seals the same plaintext in 64 KiB segments, each with its counter and a final flag in the nonce
# (the STREAM construction, as age does): a reader checks each segment as it arrives, and a cut-off
# end, a reordered or repeated segment, or bytes after the final one are refused. The plaintext is
# ``u32 envelope length || envelope || body``; the signed envelope names the body (``body`` arg:
# SHA-256, segment count, byte length), so the body can be spooled to disk and checked at its end.

VERSION_STREAM = 2
SEGMENT = 64 * 1024
SEGMENT_SEALED = SEGMENT + crypto.TAG_LEN
_INFO2 = b"hbw-sync bundle v2"
#: Largest version 2 bundle read (the body is spooled to disk; the team's quota bounds what is kept).
MAX_STREAM = 4 * 1024 * 1024 * 1024
#: Most chunk records one version 2 body carries (16 bytes of id each are held while it is read).
MAX_RECORDS = 65536
_RECORD = struct.Struct(">16sI")
_SEALED_MIN = crypto.NONCE_LEN + 1 + crypto.TAG_LEN


def segments_for(plain_len: int) -> int:
    """Segments a plaintext of ``plain_len`` bytes takes: every one full but the final (1..SEGMENT bytes)."""
    return max(1, -(-plain_len // SEGMENT))


def segment_nonce(i: int, final: bool) -> bytes:
    """Segment ``i``'s nonce: an 11-byte big-endian counter and a final flag (0 or 1)."""
    return i.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


def _x_pub(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class StreamSealer:
    """Seal ``u32 len || envelope || body`` as version 2 segments; the caller writes what it returns.

    ``header`` goes first; ``feed`` returns the segments completed so far (holding back at least
    one byte, so the final segment is never empty); ``finish`` returns the final segment.
    """

    def __init__(self, kind: bytes, team: bytes, recipient: bytes, recipient_x25519: bytes, *,
                 ephemeral: bytes | None = None):
        eph = X25519PrivateKey.from_private_bytes(ephemeral) if ephemeral else X25519PrivateKey.generate()
        eph_pub = _x_pub(eph)
        shared = eph.exchange(X25519PublicKey.from_public_bytes(recipient_x25519))
        self.header = HEADER.pack(MAGIC, kind, VERSION_STREAM, 0, team, recipient, eph_pub)
        self._aead = ChaCha20Poly1305(crypto.hkdf(shared, _INFO2, salt=eph_pub + recipient_x25519))
        self._buf = bytearray()
        self.segments = 0

    def _seal(self, plain: bytes | bytearray, final: bool) -> bytes:
        out = self._aead.encrypt(segment_nonce(self.segments, final), bytes(plain), self.header)
        self.segments += 1
        return out

    def feed(self, data: bytes | bytearray | memoryview) -> bytes:
        self._buf += data
        out = []
        while len(self._buf) > SEGMENT:
            out.append(self._seal(self._buf[:SEGMENT], False))
            del self._buf[:SEGMENT]
        return b"".join(out)

    def finish(self) -> bytes:
        if not self._buf:
            raise ValueError("a stream bundle holds at least its envelope length")
        out = self._seal(self._buf, True)
        self._buf = bytearray()
        return out


class Opened:
    """What a version 2 reader found: the envelope (in memory, ≤ the envelope limit) and the body's name."""

    def __init__(self, envelope: bytes, body_sha256: bytes, body_length: int, segments: int, version: int):
        self.envelope, self.body_sha256, self.body_length = envelope, body_sha256, body_length
        self.segments, self.version = segments, version

    def check_named(self, named: Any) -> None:
        """Compare the body read with the one the signed envelope names (``body`` arg); v1 names none."""
        if self.version == VERSION:
            if named is not None:
                raise ProtocolError("a version 1 bundle cannot name a body", code="protocol.bundle")
            return
        if not isinstance(named, (list, tuple)) or list(named) != [self.body_sha256, self.segments, self.body_length]:
            raise IntegrityError("this bundle's contents are not the ones its sender signed "
                                 "(segments spliced from another bundle?)", code="integrity.body")


def _check_header(header: bytes, kind: bytes, team: bytes, recipient: bytes) -> int:
    if len(header) < 4 or header[:3] != MAGIC or header[3:4] not in (TO_RELAY, TO_DEVICE):
        raise ProtocolError("this file is not an hbw-sync bundle", code="protocol.magic")
    if len(header) < HEADER.size:
        raise ProtocolError("this bundle is truncated (an incomplete download or copy?)", code="protocol.truncated")
    _magic, k, version, flags, t, r, _eph = HEADER.unpack_from(header)
    if version not in (VERSION, VERSION_STREAM):
        raise VersionError(f"bundle format version {version} is not known", hint="upgrade hbw-sync")
    if flags:
        raise VersionError("bundle uses features this version does not know", hint="upgrade hbw-sync")
    _check_address(k, t, r, kind, team, recipient)
    return int(version)


def _check_address(k: bytes, t: bytes, r: bytes, kind: bytes, team: bytes, recipient: bytes) -> None:
    """The header's direction, team and recipient are the ones expected (both formats)."""
    if k != kind:
        raise ProtocolError("this bundle goes the other way (a request where a reply was expected, or back)",
                            code="protocol.bundle_type")
    if t != team:
        raise IntegrityError("this bundle belongs to another team", code="integrity.team")
    if r != recipient:
        raise IntegrityError("this bundle is addressed to another device", code="integrity.recipient")


def open_stream(read: Callable[[int], bytes], kind: bytes, team: bytes, recipient: bytes, my_x25519: bytes,
                body_sink: Callable[[bytes], object], *, max_envelope: int = MAX_BUNDLE,
                max_total: int = MAX_STREAM) -> Opened:
    """Read a bundle of either version from ``read(n)``, checking each segment before using it.

    The envelope is returned (bounded by ``max_envelope`` before it is held); the body goes to
    ``body_sink`` as it is checked, so the caller spools it. Nothing the body holds is trusted
    until ``Opened.check_named`` matched it against the signed envelope. Version 1 is read whole
    (it is at most ``MAX_BUNDLE``) and has an empty body.
    """
    header = read(HEADER.size)
    version = _check_header(header, kind, team, recipient)
    if version == VERSION:
        rest = read(MAX_BUNDLE - HEADER.size + 1)
        return Opened(open_bundle(header + rest, kind, team, recipient, my_x25519), hashlib.sha256(b"").digest(),
                      0, 0, VERSION)
    me = X25519PrivateKey.from_private_bytes(my_x25519)
    try:
        shared = me.exchange(X25519PublicKey.from_public_bytes(header[HEADER.size - 32:]))
    except ValueError:
        raise IntegrityError("this bundle is damaged or was altered", code="integrity.aead") from None
    aead = ChaCha20Poly1305(crypto.hkdf(shared, _INFO2, salt=header[HEADER.size - 32:] + _x_pub(me)))
    total = len(header)
    digest = hashlib.sha256()
    env = bytearray()
    need: int | None = None  # the envelope's length, once its 4 bytes are in
    body_len = 0
    i = 0
    cur = read(SEGMENT_SEALED)
    if len(cur) <= crypto.TAG_LEN:
        raise ProtocolError("this bundle is truncated (an incomplete download or copy?)", code="protocol.truncated")
    while True:
        total += len(cur)
        if total > max_total:
            raise LimitError(f"bundle of more than {max_total} bytes is over the limit", code="protocol.limit")
        nxt = read(SEGMENT_SEALED) if len(cur) == SEGMENT_SEALED else b""
        final = not nxt
        plain = _open_segment(aead, i, final, cur, header)
        i += 1
        view = memoryview(plain)
        if need is None or len(env) < 4 + need:
            if need is None:
                take = 4 - len(env)
                env += view[:take]
                view = view[take:]
                if len(env) == 4:
                    need = int.from_bytes(env, "big")
                    if need > max_envelope:
                        raise LimitError(f"a bundle's envelope of {need} bytes is over the limit", code="protocol.limit")
            if need is not None:
                take = 4 + need - len(env)
                env += view[:take]
                view = view[take:]
        if len(view):
            digest.update(view)
            body_len += len(view)
            body_sink(bytes(view))
        if final:  # a short read is the end of the file: bytes after the final segment make it not open
            break
        cur = nxt
    if need is None or len(env) < 4 + need:
        raise ProtocolError("this bundle ends inside its envelope", code="protocol.truncated")
    return Opened(bytes(env[4:]), digest.digest(), body_len, i, VERSION_STREAM)


def _open_segment(aead: ChaCha20Poly1305, i: int, final: bool, sealed: bytes, header: bytes) -> bytes:
    try:
        return aead.decrypt(segment_nonce(i, final), sealed, header)
    except InvalidTag:
        pass
    try:  # it opens with the other flag: a clear word for what happened to the file
        aead.decrypt(segment_nonce(i, not final), sealed, header)
    except InvalidTag:
        raise IntegrityError("this bundle is damaged or was altered (a segment does not open)",
                             code="integrity.aead") from None
    if final:
        raise ProtocolError("this bundle is truncated: its last segment is missing (an incomplete copy?)",
                            code="protocol.truncated")
    raise ProtocolError("this bundle has bytes after its final segment", code="protocol.trailing")


def body_record(cid: bytes, sealed: bytes) -> bytes:
    """One chunk in a version 2 body: id (16) || u32 length || sealed chunk."""
    return _RECORD.pack(cid, len(sealed)) + sealed


def body_records(read: Callable[[int], bytes]) -> Iterator[tuple[bytes, bytes]]:
    """The (id, sealed chunk) records of a checked body, each bounded before it is read."""
    n = 0
    while True:
        head = read(_RECORD.size)
        if not head:
            return
        if len(head) < _RECORD.size:
            raise ProtocolError("a bundle's body ends inside a chunk record", code="protocol.chunk")
        cid, size = _RECORD.unpack(head)
        n += 1
        if n > MAX_RECORDS or not _SEALED_MIN <= size <= chunks.SEALED_MAX:
            raise ProtocolError("a bundle's body holds a malformed chunk record", code="protocol.chunk")
        sealed = read(size)
        if len(sealed) < size:
            raise ProtocolError("a bundle's body ends inside a chunk record", code="protocol.chunk")
        yield cid, sealed


def named_envelope(make_env: Callable[[list[Any]], bytes], body_sha256: bytes, body_length: int) -> bytes:
    """The envelope that names its own bundle's body ``[sha256, segments, length]``.

    The segment count depends on the envelope's length, which holds the count: made again until
    the two agree (msgpack's integer widths change the length by a few bytes at most).
    """
    segs = segments_for(4 + body_length)
    for _attempt in range(8):
        env = make_env([body_sha256, segs, body_length])
        want = segments_for(4 + len(env) + body_length)
        if want == segs:
            return env
        segs = want
    raise AssertionError("the segment count did not settle")  # cannot happen: the length grows monotonically

