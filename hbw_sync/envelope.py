"""Signed request and response envelopes between a device and its relay (sans-IO).

Why not TLS alone: the relay may run without a proper certificate in a small
office, proxies and captive portals sit in between, and a sync must be refused
from a lost laptop even if its TLS session is fine. So every request is signed
by the device's transport key, with a timestamp and a nonce (replays and stale
or far-future requests are refused), and every response is signed by the
relay's key, which the invite pinned, and names the request's nonce, so a
device cannot be talked into dropping its outbox by a forged acknowledgement.

Layout (request ``Q``, response ``R``)::

    "HBW" type(1) version(1) || msgpack body || Ed25519 signature (64)

    request body  = [device id (8), time ms, nonce (16), action (str), args (map)]
    response body = [request nonce (16), time ms, result (map)]

The signature covers every byte before it. Authentication goes in the body, not
in HTTP headers: one request carries one envelope, and the relay can be reached
through anything that moves bytes (a bundle file uses the same envelopes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeVar

from . import codec, crypto, schema
from .errors import AccessError, LimitError, ProtocolError, VersionError

MAGIC = b"HBW"
TYPE_REQUEST = b"Q"
TYPE_RESPONSE = b"R"
VERSION = 1
NONCE_LEN = 16
#: How far a request's clock may be from the relay's. Laptops drift; a replay window this
#: wide is closed by remembering nonces for at least twice as long.
MAX_REQUEST_SKEW_MS = 10 * 60 * 1000
ENVELOPE_LIMITS = codec.Limits(max_container=100_000)


@dataclass(frozen=True)
class Request:
    device: bytes
    time_ms: int
    nonce: bytes
    action: str
    args: dict[str, Any]
    signed: bytes | memoryview
    signature: bytes
    #: The transport key this request's signature was already checked with (``open_request``).
    verified_with: bytes | None = None

    def verify(self, public_key: bytes) -> None:
        if self.verified_with is not None and self.verified_with == public_key:
            return  # checked before the args were decoded; a 30 MiB body is not hashed twice
        crypto.verify(public_key, self.signature, self.signed, what="request")


@dataclass(frozen=True)
class Response:
    nonce: bytes
    time_ms: int
    result: dict[str, Any]


def _frame(kind: bytes, body: Any, key: crypto.DeviceKey) -> bytes:
    signed = MAGIC + kind + bytes([VERSION]) + codec.pack(body)
    return signed + key.sign(signed)


_B = TypeVar("_B", bytes, memoryview)  # a view in gives views out: a 30 MiB request is not copied


def _split_raw(data: _B, kind: bytes, max_message: int) -> tuple[_B, _B]:
    if len(data) > max_message:
        raise LimitError(f"message of {len(data)} bytes is over the limit", code="protocol.limit")
    if len(data) < 5 + crypto.SIG_LEN or bytes(data[:3]) != MAGIC:
        raise ProtocolError("not an hbw-sync message", code="protocol.magic")
    if bytes(data[3:4]) != kind:
        raise ProtocolError("unexpected message type", code="protocol.magic")
    if data[4] != VERSION:
        raise VersionError(f"message uses protocol version {data[4]}; this side speaks {VERSION}", hint="upgrade hbw-sync")
    return data[: -crypto.SIG_LEN], data[-crypto.SIG_LEN :]


def _split(data: bytes, kind: bytes, limits: codec.Limits) -> tuple[Any, bytes, bytes]:
    signed, sig = _split_raw(data, kind, limits.max_message)
    return codec.unpack(signed[5:], limits), signed, sig


def make_request(key: crypto.DeviceKey, device: bytes, action: str, args: dict[str, Any], now_ms: int,
                 nonce: bytes | None = None) -> tuple[bytes, bytes]:
    """(envelope bytes, nonce). ``device`` is the enrolled device id the transport key belongs to."""
    nonce = nonce or os.urandom(NONCE_LEN)
    return _frame(TYPE_REQUEST, [device, now_ms, nonce, action, args], key), nonce


def parse_request(data: bytes, limits: codec.Limits = ENVELOPE_LIMITS) -> Request:
    """Structure only; the caller looks up the device's transport key and calls ``verify``."""
    body, signed, sig = _split(data, TYPE_REQUEST, limits)
    if not (isinstance(body, list) and len(body) == 5):
        raise ProtocolError("malformed request", code="protocol.schema")
    device, t, nonce, action, args = body
    if not (isinstance(device, bytes) and len(device) == 8 and type(t) is int and isinstance(nonce, bytes)
            and len(nonce) == NONCE_LEN and isinstance(action, str) and isinstance(args, dict)):
        raise ProtocolError("malformed request", code="protocol.schema")
    return Request(device, t, nonce, action, args, signed, sig)


@dataclass(frozen=True)
class RequestHead:
    """A request's routing header, read without decoding its args: enough to find the key that signed it."""

    device: bytes
    time_ms: int
    nonce: bytes
    action: str
    args_at: int  # offset of the args map in ``signed``
    signed: bytes | memoryview
    signature: bytes

    def verify(self, public_key: bytes) -> None:
        crypto.verify(public_key, self.signature, self.signed, what="request")


_HEAD = (schema.Bin(8, 8), schema.Int(-(2**63), 2**64 - 1), schema.Bin(NONCE_LEN, NONCE_LEN), schema.Str(32))


def peek_request(data: bytes | bytearray, max_message: int = codec.DEFAULT_LIMITS.max_message) -> RequestHead:
    """Read a request's frame and its [device, time, nonce, action] without touching the args.

    Why: the relay checks the signature with the device's enrolled key *before* it
    decodes anything only an authenticated peer may send (the args). Reading this
    header costs at most about 80 bytes, whatever the request holds.
    """
    signed, sig_view = _split_raw(memoryview(data), TYPE_REQUEST, max_message)  # a view: a 30 MiB body is not copied
    sig = bytes(sig_view)
    kind, n, at = schema.header(signed, 5)
    if kind != "array" or n != 5:
        raise ProtocolError("malformed request", code="protocol.schema")
    fields = []
    for spec in _HEAD:
        v, at = schema.decode(spec, signed, at, "request header")
        fields.append(v)
    device, t, nonce, action = fields
    return RequestHead(device, t, nonce, action, at, signed, sig)


def open_request(head: RequestHead, fields: dict[str, schema.Spec], max_keys: int = 64,
                 verified_with: bytes | None = None) -> Request:
    """Decode a peeked request's args by their specs (unknown keys skipped unbuilt); trailing bytes refused.

    ``verified_with``: the public key ``head.verify`` already succeeded with, so that the
    action's own ``req.verify`` with the same key does not check the signature again.
    """
    args, end = schema.decode_map(fields, head.signed, head.args_at, "args", max_keys)
    if end != len(head.signed):
        raise ProtocolError("trailing bytes after the msgpack object", code="protocol.trailing")
    return Request(head.device, head.time_ms, head.nonce, head.action, args, head.signed, head.signature,
                   verified_with)


def check_fresh(req: Request | RequestHead, now_ms: int, max_skew_ms: int = MAX_REQUEST_SKEW_MS) -> None:
    """Refuse stale or far-future requests; the nonce check against replays is the caller's (it has state)."""
    if abs(req.time_ms - now_ms) > max_skew_ms:
        ahead = req.time_ms > now_ms
        raise AccessError(
            f"request time is {abs(req.time_ms - now_ms) // 60000} minutes {'ahead of' if ahead else 'behind'} the relay",
            code="access.clock",
            hint="set this computer's clock (date and time zone) and retry",
        )


def make_response(key: crypto.DeviceKey, nonce: bytes, result: dict[str, Any], now_ms: int) -> bytes:
    return _frame(TYPE_RESPONSE, [nonce, now_ms, result], key)


def open_response(data: bytes, relay_public: bytes, limits: codec.Limits = ENVELOPE_LIMITS) -> Response:
    """Verify that the pinned relay signed a response; the caller checks which request it answers.

    The signature is checked on the raw bytes before the body is decoded: without TLS,
    anyone on the path can answer, and 30 MiB of nested arrays must cost a device nothing.
    """
    signed, sig = _split_raw(data, TYPE_RESPONSE, limits.max_message)
    crypto.verify(relay_public, sig, signed, what="relay's response")
    body = codec.unpack(signed[5:], limits)
    if not (isinstance(body, list) and len(body) == 3 and isinstance(body[2], dict) and isinstance(body[0], bytes)):
        raise ProtocolError("malformed response", code="protocol.schema")
    return Response(body[0], body[1], body[2])


def parse_response(data: bytes, relay_public: bytes, nonce: bytes, limits: codec.Limits = ENVELOPE_LIMITS) -> Response:
    """Verify a response: the pinned relay signed it, for this very request."""
    res = open_response(data, relay_public, limits)
    if res.nonce != nonce:
        raise ProtocolError("the relay's response answers another request", code="protocol.replay")
    return res
