"""protocol/vectors/bundles.json: request and reply bundles for email and USB, opened step by step (PROTOCOL.md §18b).
"""

from __future__ import annotations

from typing import Any

from hbw_sync import bundle as BU
from hbw_sync import crypto, enroll, envelope

from ._kit import DAY, DEVICES, OTHER_TEAM_ID, T0, TEAM_ID, TEAM_KEYS, expected_error, nonce_for, tjson
from .enroll import (
    RELAY, RELAY_SEED, RELAY_X25519_PRIVATE, RELAY_X25519_PUBLIC, TRANSPORT, TRANSPORT_SEEDS,
    X25519_PRIVATE, X25519_PUBLIC, x25519,
)

# -- bundles (email, USB) -------------------------------------------------------------------------

BUNDLE_EPHEMERAL = {"request": b"\x71" * 32, "reply": b"\x72" * 32, "inner": b"\x73" * 32}
BUNDLE_INFO = b"hbw-sync bundle v1"
BUNDLE_TEAM_NAME = "Registry office"


def build_bundle(kind: bytes, recipient: bytes, recipient_x25519: bytes, env: bytes, *, ephemeral: bytes, name: str,
                 team: bytes = TEAM_ID, version: int = BU.VERSION, flags: int = 0,
                 eph_pub: bytes | None = None) -> dict[str, Any]:
    """A bundle assembled step by step as the spec describes (fixed ephemeral key and nonce)."""
    eph_pub = eph_pub or enroll.x25519_public(ephemeral)
    shared = x25519(ephemeral, recipient_x25519)
    salt = eph_pub + recipient_x25519
    key = crypto.hkdf(shared, BUNDLE_INFO, salt=salt)
    header = b"HBW" + kind + bytes([version, flags]) + team + recipient + eph_pub
    assert len(header) == BU.HEADER.size == 54
    nonce = nonce_for("bundle " + name)
    sealed = crypto.seal(key, env, header, nonce=nonce)
    return {"ephemeral_public": eph_pub, "shared": shared, "salt": salt, "key": key, "header": header,
            "nonce": nonce, "sealed": sealed, "bundle": header + sealed}


def build() -> dict[str, Any]:
    dev = "d2"
    d2 = DEVICES[dev].device_id
    relay_id = RELAY.device_id
    assert BU.relay_x25519(RELAY) == RELAY_X25519_PRIVATE
    t1 = TEAM_KEYS["t1"]

    # the request: an ordinary signed sync request with the 'bundle' counter, sealed to the relay
    args = {"cursor": 1041, "budget": 5_000_000, "batches": [], "roster_v": 4, "bundle": 7}
    req_nonce = nonce_for("bundle request envelope") + nonce_for("bundle request envelope 2")[:4]
    req_env, n = envelope.make_request(TRANSPORT[dev], d2, "sync", args, T0, nonce=req_nonce)
    assert n == req_nonce
    req = build_bundle(BU.TO_RELAY, relay_id, RELAY_X25519_PUBLIC, req_env, ephemeral=BUNDLE_EPHEMERAL["request"],
                       name="request")
    made = BU.seal(BU.TO_RELAY, TEAM_ID, relay_id, RELAY_X25519_PUBLIC, req_env,
                   ephemeral=BUNDLE_EPHEMERAL["request"], nonce=req["nonce"])
    assert made == req["bundle"]
    assert BU.open_bundle(made, BU.TO_RELAY, TEAM_ID, relay_id, RELAY_X25519_PRIVATE) == req_env

    # the reply: the relay's signed response to that request, sealed to the device's X25519 key
    result = {"acks": [], "rejects": [], "batches": [], "cursor": 1041, "more": False, "keys": {1: t1.key_id},
              "grants": [], "want_snapshot": False}
    rep_time = T0 + 3 * DAY  # ingested three days later (freshness does not apply to bundles)
    rep_env = envelope.make_response(RELAY, req_nonce, result, rep_time)
    rep = build_bundle(BU.TO_DEVICE, d2, X25519_PUBLIC[dev], rep_env, ephemeral=BUNDLE_EPHEMERAL["reply"], name="reply")
    made = BU.seal(BU.TO_DEVICE, TEAM_ID, d2, X25519_PUBLIC[dev], rep_env, ephemeral=BUNDLE_EPHEMERAL["reply"],
                   nonce=rep["nonce"])
    assert made == rep["bundle"]
    assert envelope.parse_response(BU.open_bundle(made, BU.TO_DEVICE, TEAM_ID, d2, X25519_PRIVATE[dev]),
                                   RELAY.public, req_nonce).result == result

    def at_relay() -> dict[str, Any]:
        return {"kind": "X", "team": TEAM_ID.hex(), "recipient": relay_id.hex(), "x25519_private": RELAY_X25519_PRIVATE.hex()}

    def at_device(name: str = dev, x: str | None = None, team: bytes = TEAM_ID) -> dict[str, Any]:
        return {"kind": "Y", "team": team.hex(), "recipient": DEVICES[name].device_id.hex(),
                "x25519_private": X25519_PRIVATE[x or name].hex()}

    def flip(data: bytes, i: int) -> bytes:
        return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]

    good_q, good_r = req["bundle"], rep["bundle"]
    other_team_hdr = good_q[:6] + OTHER_TEAM_ID + good_q[14:]
    PE, IE, VE = "ProtocolError", "IntegrityError", "VersionError"
    bad = [
        ("empty", "Zero bytes.", b"", at_relay()),
        ("not_a_bundle", "A zip file's first bytes.", b"PK\x03\x04 a zip file", at_relay()),
        ("a_batch", "A batch header ('HBWB'): an hbw-sync message, but not a bundle.", b"HBWB\x01" + bytes(80), at_relay()),
        ("unknown_type", "Type byte 'Z'.", good_q[:3] + b"Z" + good_q[4:], at_relay()),
        ("truncated", "81 bytes: one short of header (54) + nonce (12) + tag (16).", good_q[:81], at_relay()),
        ("cut_short_by_one", "The last byte is missing: long enough to parse, so the tag fails.", good_q[:-1],
         at_relay()),
        ("unknown_version", "Version byte 2.", good_q[:4] + b"\x02" + good_q[5:], at_relay()),
        ("flags_set", "Flags 0x01.", good_q[:5] + b"\x01" + good_q[6:], at_relay()),
        ("wrong_type", "The request bundle given to a device that expects a reply ('X' where 'Y' is expected).",
         good_q, {"kind": "Y", "team": TEAM_ID.hex(), "recipient": relay_id.hex(),
                  "x25519_private": RELAY_X25519_PRIVATE.hex()}),
        ("reply_given_to_relay", "The reply bundle given to the relay.", good_r, at_relay()),
        ("foreign_team", "Opened by the relay of another team.", good_q,
         {**at_relay(), "team": OTHER_TEAM_ID.hex()}),
        ("wrong_recipient", "d2's reply opened by d3.", good_r, at_device("d3")),
        ("wrong_x25519_key", "d2's reply opened with d2's device id but d3's X25519 key.", good_r,
         at_device(dev, x="d3")),
        ("tampered_ciphertext", "One bit flipped in the ciphertext.", flip(good_q, len(good_q) - 40), at_relay()),
        ("tampered_tag", "One bit flipped in the last byte (the tag).", flip(good_q, len(good_q) - 1), at_relay()),
        ("tampered_nonce", "One bit flipped in the nonce.", flip(good_q, 54), at_relay()),
        ("tampered_ephemeral", "One bit flipped in the header's ephemeral public key.", flip(good_q, 40), at_relay()),
        ("header_team_rewritten", "The team id rewritten to another team's, opened as that team: the AAD "
         "(the header) no longer matches.", other_team_hdr, {**at_relay(), "team": OTHER_TEAM_ID.hex()}),
        ("ephemeral_low_order", "Ephemeral public key all zeros (a low-order point: the shared secret would be 0).",
         good_q[:22] + bytes(32) + good_q[54:], at_relay()),
    ]  # fmt: skip
    invalid = []
    for name, desc, data, op in bad:
        cls, code = expected_error(f"bundle {name}", lambda: BU.open_bundle(
            data, op["kind"].encode(), bytes.fromhex(op["team"]), bytes.fromhex(op["recipient"]),
            bytes.fromhex(op["x25519_private"])))
        invalid.append({"name": name, "description": desc, "bundle": data.hex(), "open": op,
                        "expected_error_class": cls, "expected_code": code})

    # validly sealed to the relay, but the envelope inside is not a bundle request (relay stage 'inner')
    inner_in = [
        ("no_counter", "A sync request without the 'bundle' counter (an online request sealed into a bundle).", dev,
         "sync", {k: v for k, v in args.items() if k != "bundle"}),
        ("counter_not_int", "'bundle' is true, not an integer.", dev, "sync", {**args, "bundle": True}),
        ("not_sync", "A download request with a counter: only 'sync' travels in bundles.", dev, "download",
         {"rseq": 1040, "bundle": 8}),
        ("unknown_device", "A well-formed bundle request from d3, which the relay (an empty team) does not know.",
         "d3", "sync", {**args, "bundle": 1}),
    ]  # fmt: skip
    inner = []
    for name, desc, who, action, a in inner_in:
        env, _ = envelope.make_request(TRANSPORT[who], DEVICES[who].device_id, action, a, T0,
                                       nonce=nonce_for("bundle inner " + name) + bytes(4))
        b = build_bundle(BU.TO_RELAY, relay_id, RELAY_X25519_PUBLIC, env, ephemeral=BUNDLE_EPHEMERAL["inner"],
                         name="inner " + name)["bundle"]
        cls, code = ("AccessError", "access.unknown_device") if name == "unknown_device" else (PE, "protocol.bundle")
        inner.append({"name": name, "description": desc, "bundle": b.hex(), "envelope": env.hex(),
                      "expected_error_class": cls, "expected_code": code})

    def stages(b: dict[str, Any]) -> dict[str, str]:
        return {k: v.hex() for k, v in b.items()}

    return {
        "meta": {
            "layout": "header(54) = 'HBW' || type ('X' to the relay, 'Y' to a device) || version (1) || flags (0) || "
            "team (8) || recipient device id (8) || ephemeral X25519 public (32); bundle = header || nonce (12) || "
            "ChaCha20-Poly1305(key, nonce, envelope, AAD = header)",
            "key": "HKDF-SHA256(ikm = X25519(ephemeral, recipient X25519), salt = ephemeral_public || "
            "recipient_x25519_public, info = 'hbw-sync bundle v1', L = 32)",
            "relay_x25519": "relay X25519 private = HKDF-SHA256(ikm = relay Ed25519 seed, salt = none, "
            "info = 'hbw-sync relay x25519 v1', L = 32); recipient of 'X' bundles = device id of the relay's "
            "Ed25519 public key",
            "envelope": "'X': a sync request envelope (envelopes.json) signed by the device's transport key, "
            "args with 'bundle' (uint counter); 'Y': the relay's signed response to it",
            "max_bundle": BU.MAX_BUNDLE,
        },
        "relay": {"seed": RELAY_SEED.hex(), "public": RELAY.public.hex(), "device_id": relay_id.hex(),
                  "x25519_private": RELAY_X25519_PRIVATE.hex(), "x25519_public": RELAY_X25519_PUBLIC.hex()},
        "device": {"name": dev, "device_id": d2.hex(), "transport_seed": TRANSPORT_SEEDS[dev].hex(),
                   "transport_public": TRANSPORT[dev].public.hex(), "x25519_private": X25519_PRIVATE[dev].hex(),
                   "x25519_public": X25519_PUBLIC[dev].hex()},
        "team": TEAM_ID.hex(),
        "team_name": BUNDLE_TEAM_NAME,
        "request": {
            "description": f"{dev} exports bundle 7: its pull cursor, a 5 MB reply budget, roster version 4, no "
            "batches (their bytes depend on zstd).",
            "kind": "X", "recipient": relay_id.hex(), "recipient_x25519_public": RELAY_X25519_PUBLIC.hex(),
            "ephemeral_private": BUNDLE_EPHEMERAL["request"].hex(),
            "envelope_args": tjson(args), "envelope_time_ms": T0, "envelope_nonce": req_nonce.hex(),
            "envelope": req_env.hex(), **stages(req),
        },  # fmt: skip
        "reply": {
            "description": "The relay's reply to bundle 7, ingested three days later: nothing new for d2.",
            "kind": "Y", "recipient": d2.hex(), "recipient_x25519_public": X25519_PUBLIC[dev].hex(),
            "ephemeral_private": BUNDLE_EPHEMERAL["reply"].hex(),
            "envelope_result": tjson(result), "envelope_time_ms": rep_time, "envelope": rep_env.hex(), **stages(rep),
        },  # fmt: skip
        "invalid": invalid,
        "invalid_inner": inner,
    }
