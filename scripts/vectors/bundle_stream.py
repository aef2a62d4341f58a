"""protocol/vectors/bundle_stream.json: bundle format 2, sealed in 64 KiB segments (PROTOCOL.md §18b).

One request bundle of three segments (a signed sync request naming its body of two chunk records)
and one reply with an empty body, each assembled step by step. Hostile streams are given as edits
of the good one (which segments, in which order, one replaced, bytes appended), so the file stays
small and each changes one thing; those that need another signature are whole small bundles.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from hbw_sync import bundle as BU
from hbw_sync import codec, crypto, enroll, envelope

from ._kit import DEVICES, T0, TEAM_ID, expected_error, nonce_for, tjson
from .enroll import RELAY, RELAY_X25519_PRIVATE, RELAY_X25519_PUBLIC, TRANSPORT, X25519_PRIVATE, X25519_PUBLIC, x25519

EPHEMERAL = {"request": b"\x81" * 32, "reply": b"\x82" * 32, "small": b"\x83" * 32}
INFO = b"hbw-sync bundle v2"
DEV = "d2"


def _records() -> bytes:
    """Two chunk records: their sealed bytes are opaque here (the relay keeps them as they are)."""
    out = b""
    for i, n in ((1, 70_000), (2, 70_000)):
        cid = hashlib.sha256(b"bundle stream chunk id %d" % i).digest()[:16]
        sealed = b"".join(hashlib.sha256(b"bundle stream chunk %d %d" % (i, k)).digest() for k in range(n // 32 + 1))[:n]
        out += BU.body_record(cid, sealed)
    return out


def _seal_plain(header: bytes, key: bytes, plain: bytes, flags: dict[int, bool] | None = None) -> list[bytes]:
    """The segments of ``plain``; ``flags`` overrides a segment's final flag (hostile vectors only)."""
    n = BU.segments_for(len(plain))
    out = []
    for i in range(n):
        final = (flags or {}).get(i, i == n - 1)
        piece = plain[i * BU.SEGMENT:(i + 1) * BU.SEGMENT]
        out.append(ChaCha20Poly1305(key).encrypt(BU.segment_nonce(i, final), piece, header))
    return out


def _bundle(kind: bytes, recipient: bytes, recipient_x: bytes, eph: bytes, make_env: Any, body: bytes,
            named: list[Any] | None = None, version: int = BU.VERSION_STREAM) -> dict[str, Any]:
    eph_pub = enroll.x25519_public(eph)
    shared = x25519(eph, recipient_x)
    key = crypto.hkdf(shared, INFO, salt=eph_pub + recipient_x)
    header = b"HBW" + kind + bytes([version, 0]) + TEAM_ID + recipient + eph_pub
    sha = hashlib.sha256(body).digest()
    env = make_env(named) if named is not None else BU.named_envelope(make_env, sha, len(body))
    plain = len(env).to_bytes(4, "big") + env + body
    segs = _seal_plain(header, key, plain)
    made = BU.StreamSealer(kind, TEAM_ID, recipient, recipient_x, ephemeral=eph)
    assert version != BU.VERSION_STREAM or made.header + made.feed(plain) + made.finish() == header + b"".join(segs)
    return {"ephemeral_private": eph, "ephemeral_public": eph_pub, "shared": shared, "key": key, "header": header,
            "envelope": env, "body": body, "body_sha256": sha, "segments": len(segs),
            "segment_sealed": segs, "bundle": header + b"".join(segs), "plain": plain}


def open_relay(data: bytes) -> bytes:
    """What the relay does up to the body check: open, parse, verify, compare; the envelope."""
    got = bytearray()
    o = BU.open_stream(io.BytesIO(data).read, BU.TO_RELAY, TEAM_ID, RELAY.device_id, RELAY_X25519_PRIVATE, got.extend,
                       max_envelope=codec.DEFAULT_LIMITS.max_message)
    req = envelope.parse_request(o.envelope)
    req.verify(TRANSPORT[DEV].public)
    named = req.args.get("body") if isinstance(req.args, dict) else None
    o.check_named(named)
    return o.envelope


def build() -> dict[str, Any]:
    d2 = DEVICES[DEV].device_id
    relay_id = RELAY.device_id
    body = _records()
    base = {"cursor": 1041, "budget": 5_000_000, "batches": [], "roster_v": 4, "bundle": 8, "reply_max": 10_000_000}
    req_nonce = nonce_for("bundle stream request")[:12] + bytes(4)

    def req_env(named: list[Any], nonce: bytes = req_nonce) -> bytes:
        return envelope.make_request(TRANSPORT[DEV], d2, "sync", {**base, "body": named}, T0, nonce=nonce)[0]

    req = _bundle(BU.TO_RELAY, relay_id, RELAY_X25519_PUBLIC, EPHEMERAL["request"], req_env, body)
    assert req["segments"] == 3 and open_relay(req["bundle"]) == req["envelope"]
    named = [req["body_sha256"], req["segments"], len(body)]

    result = {"acks": [], "rejects": [], "batches": [], "cursor": 1041, "more": False, "part": [1, 1],
              "from_cursor": 1041, "parts_bytes": [0]}

    def rep_env(named: list[Any]) -> bytes:
        return envelope.make_response(RELAY, req_nonce, {**result, "body": named}, T0 + 86_400_000)

    rep = _bundle(BU.TO_DEVICE, d2, X25519_PUBLIC[DEV], EPHEMERAL["reply"], rep_env, b"")
    o = BU.open_stream(io.BytesIO(rep["bundle"]).read, BU.TO_DEVICE, TEAM_ID, d2, X25519_PRIVATE[DEV], print)
    o.check_named(envelope.parse_response(o.envelope, RELAY.public, req_nonce).result["body"])

    # -- hostile: edits of the good request --------------------------------------------------------
    segs, head = req["segment_sealed"], req["header"]
    plain = req["plain"]
    key = req["key"]
    early = _seal_plain(head, key, plain, {0: True})[0]  # segment 0 sealed as if it were the last
    never_final = _seal_plain(head, key, plain, {2: False})[2]  # the last segment sealed as "more follow"
    edits = [
        ("truncated", "The final segment is missing: the stream ends on a segment sealed as 'more follow'.",
         {"segments": [0, 1]}),
        ("reordered", "Segments 0 and 1 swapped.", {"segments": [1, 0, 2]}),
        ("dropped", "Segment 1 left out.", {"segments": [0, 2]}),
        ("repeated", "Segment 1 twice.", {"segments": [0, 1, 1, 2]}),
        ("final_too_early", "Segment 0 sealed with the final flag, and the stream goes on.",
         {"segments": [0, 1, 2], "replace": {"0": early.hex()}}),
        ("never_final", "The last segment sealed without the final flag (a writer cut off before it ended).",
         {"segments": [0, 1, 2], "replace": {"2": never_final.hex()}}),
        ("appended", "Four bytes after the final segment.", {"segments": [0, 1, 2], "append": "00000000"}),
        ("flipped", "One bit flipped in segment 1.", {"segments": [0, 1, 2], "flip": [1, 100]}),
        ("version_3", "Version byte 3.", {"segments": [0, 1, 2], "header_byte": [4, 3]}),
    ]  # fmt: skip

    def apply(e: dict[str, Any]) -> bytes:
        h = bytearray(head)
        if "header_byte" in e:
            h[e["header_byte"][0]] = e["header_byte"][1]
        parts = [bytearray(segs[i]) for i in e["segments"]]
        for k, v in e.get("replace", {}).items():
            parts[int(k)] = bytearray(bytes.fromhex(v))
        if "flip" in e:
            parts[e["flip"][0]][e["flip"][1]] ^= 1
        return bytes(h) + b"".join(parts) + bytes.fromhex(e.get("append", ""))

    invalid = []
    for name, desc, e in edits:
        cls, code = expected_error(f"bundle stream {name}", lambda: open_relay(apply(e)))
        invalid.append({"name": name, "description": desc, "edit": e, "expected_error_class": cls,
                        "expected_code": code})

    # -- hostile: whole small bundles (another envelope, or a plaintext no writer makes) ----------------
    small_body = body[:200]
    small_sha = hashlib.sha256(small_body).digest()

    def small(named: list[Any]) -> bytes:
        return req_env(named, nonce_for("bundle stream small")[:12] + bytes(4))

    whole = []
    for name, desc, nm in [
        ("count_mismatch", "The signed request names 2 segments; the stream has 1.", [small_sha, 2, len(small_body)]),
        ("length_mismatch", "The signed request names one byte more than the body has.",
         [small_sha, 1, len(small_body) + 1]),
        ("hash_mismatch", "The signed request names another body's SHA-256.",
         [hashlib.sha256(b"another body").digest(), 1, len(small_body)]),
    ]:
        b = _bundle(BU.TO_RELAY, relay_id, RELAY_X25519_PUBLIC, EPHEMERAL["small"], small, small_body, named=nm)
        whole.append((name, desc, b["bundle"]))
    # A plaintext whose envelope length passes max_message, and one that ends inside its envelope.
    for name, desc, plain_bad in [
        ("envelope_over_limit", "The envelope length prefix says 4 GiB - 1.", b"\xff\xff\xff\xff" + bytes(60)),
        ("ends_in_envelope", "The envelope length prefix says 100 bytes; 20 follow.", (100).to_bytes(4, "big") + bytes(20)),
    ]:
        eph_pub = enroll.x25519_public(EPHEMERAL["small"])
        k = crypto.hkdf(x25519(EPHEMERAL["small"], RELAY_X25519_PUBLIC), INFO, salt=eph_pub + RELAY_X25519_PUBLIC)
        h = b"HBW" + BU.TO_RELAY + bytes([BU.VERSION_STREAM, 0]) + TEAM_ID + relay_id + eph_pub
        whole.append((name, desc, h + b"".join(_seal_plain(h, k, plain_bad))))
    for name, desc, data in whole:
        cls, code = expected_error(f"bundle stream {name}", lambda: open_relay(data))
        invalid.append({"name": name, "description": desc, "bundle": data.hex(), "expected_error_class": cls,
                        "expected_code": code})
    assert {v["expected_code"] for v in invalid} >= {"protocol.truncated", "protocol.trailing", "integrity.aead",
                                                     "integrity.body", "protocol.limit", "protocol.version"}
    assert len(list(BU.body_records(io.BytesIO(body).read))) == 2

    def stages(b: dict[str, Any]) -> dict[str, Any]:
        return {"ephemeral_private": b["ephemeral_private"].hex(), "ephemeral_public": b["ephemeral_public"].hex(),
                "shared": b["shared"].hex(), "key": b["key"].hex(), "header": b["header"].hex(),
                "envelope": b["envelope"].hex(), "body_sha256": b["body_sha256"].hex(), "body_length": len(b["body"]),
                "segments": b["segments"], "segment_lengths": [len(s) for s in b["segment_sealed"]],
                "bundle": b["bundle"].hex()}

    return {
        "meta": {
            "layout": "header(54) as version 1 with version = 2; then segments: segment i = ChaCha20-Poly1305(key, "
            "nonce = i as 11 bytes big-endian || final (0x00, or 0x01 for the last), plaintext = the i-th 65536 "
            "bytes of P, AAD = header); every segment but the last holds exactly 65536 bytes, the last 1..65536",
            "plaintext": "P = u32 big-endian envelope length || envelope || body",
            "key": "HKDF-SHA256(ikm = X25519(ephemeral, recipient X25519), salt = ephemeral_public || "
            "recipient_x25519_public, info = 'hbw-sync bundle v2', L = 32)",
            "body": "a sequence of chunk records: id (16) || u32 big-endian length || sealed chunk; the signed "
            "request's arg (a reply's result key) 'body' = [SHA-256 of the body, segment count, body length]",
            "segment": BU.SEGMENT, "max_envelope": codec.DEFAULT_LIMITS.max_message,
            "edit": "an invalid vector with 'edit' is the request bundle's header followed by its segments at the "
            "listed indexes; 'replace' {position: hex} swaps one of those, 'flip' [position, byte] flips bit 0 of "
            "one byte, 'header_byte' [offset, value] sets a header byte, 'append' hex goes at the end",
        },
        "team": TEAM_ID.hex(),
        "relay": {"device_id": relay_id.hex(), "public": RELAY.public.hex(),
                  "x25519_private": RELAY_X25519_PRIVATE.hex(), "x25519_public": RELAY_X25519_PUBLIC.hex()},
        "device": {"name": DEV, "device_id": d2.hex(), "transport_public": TRANSPORT[DEV].public.hex(),
                   "x25519_private": X25519_PRIVATE[DEV].hex(), "x25519_public": X25519_PUBLIC[DEV].hex()},
        "request": {"description": f"{DEV} exports bundle 8 carrying two document chunks (70 000 sealed "
                    "bytes each) in its body: three segments.", "kind": "X", "recipient": relay_id.hex(),
                    "envelope_args": tjson({**base, "body": named}), **stages(req)},
        "reply": {"description": "The relay's reply: an empty body, named in the signed result.", "kind": "Y",
                  "recipient": d2.hex(), "envelope_result": tjson({**result, "body": [rep["body_sha256"], 1, 0]}),
                  **stages(rep)},
        "invalid": invalid,
    }
