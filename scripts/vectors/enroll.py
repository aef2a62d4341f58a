"""protocol/vectors/enroll.json: invites, key grants step by step, invalid invites and grants (PROTOCOL.md §14, §15).

Also the fixed transport, X25519 and relay keys the envelope, bundle and approval families use.
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from hbw_sync import codec, crypto, enroll, wordcode
from hbw_sync.errors import UsageError

from ._kit import DEVICES, TEAM_ID, TEAM_KEYS, expected_error, nonce_for

# -- enrollment: invites and key grants --------------------------------------------------------

TRANSPORT_SEEDS = {"d1": b"\x31" * 32, "d2": b"\x32" * 32, "d3": b"\x33" * 32}
TRANSPORT = {n: crypto.DeviceKey(s) for n, s in TRANSPORT_SEEDS.items()}
X25519_PRIVATE = {"d1": b"\x51" * 32, "d2": b"\x52" * 32, "d3": b"\x53" * 32}
X25519_PUBLIC = {n: enroll.x25519_public(k) for n, k in X25519_PRIVATE.items()}
RELAY_SEED = b"\x41" * 32
RELAY = crypto.DeviceKey(RELAY_SEED)
EPHEMERAL_PRIVATE = b"\x61" * 32
INVITE_TOKEN = bytes.fromhex("00112233445566778899aabbccddeeff")
RELAY_URL = "http://192.168.1.20:8765"
GRANT_LABEL = b"hbw-sync key grant v1\x00"
RELAY_X25519_PRIVATE = crypto.hkdf(RELAY_SEED, b"hbw-sync relay x25519 v1")  # = bundle.relay_x25519(RELAY)
RELAY_X25519_PUBLIC = enroll.x25519_public(RELAY_X25519_PRIVATE)


def x25519(private: bytes, public: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(public))


def build_grant(key: crypto.TeamKey, recipient: str, granter: str, *, name: str, seal_to: str | None = None,
                key_id: bytes | None = None) -> dict[str, Any]:
    """A key grant assembled step by step as the spec describes, with a fixed ephemeral key and nonce."""
    rdev = DEVICES[recipient].device_id
    rpub = X25519_PUBLIC[seal_to or recipient]
    kid = key.key_id if key_id is None else key_id
    eph_pub = enroll.x25519_public(EPHEMERAL_PRIVATE)
    shared = x25519(EPHEMERAL_PRIVATE, rpub)
    salt = eph_pub + rpub
    grant_key = crypto.hkdf(shared, GRANT_LABEL, salt=salt)
    aad = GRANT_LABEL + rdev + key.epoch.to_bytes(4, "big") + kid
    nonce = nonce_for(name)
    sealed = crypto.seal(grant_key, key.secret, aad, nonce=nonce)
    body = codec.pack([key.epoch, kid, eph_pub, sealed, DEVICES[granter].device_id])
    signed = GRANT_LABEL + rdev + body
    signature = DEVICES[granter].sign(signed)
    return {
        "ephemeral_public": eph_pub, "shared": shared, "salt": salt, "grant_key": grant_key, "aad": aad,
        "nonce": nonce, "sealed": sealed, "body": body, "signed": signed, "signature": signature,
        "grant": body + signature,
    }  # fmt: skip


def build() -> dict[str, Any]:
    # invites
    inv = enroll.Invite(RELAY_URL, RELAY.public, TEAM_ID, INVITE_TOKEN, "chidi", "member")
    text = inv.encode()
    raw = codec.pack([inv.url, inv.relay_public, inv.team, inv.token, inv.member, inv.role])
    assert text == "hbw1-" + base64.b32encode(raw).decode().rstrip("=").lower()
    assert enroll.Invite.decode(text) == inv
    sup = enroll.Invite(RELAY_URL, RELAY.public, TEAM_ID, bytes(range(16)), "amina", "supervisor")

    def invite_json(i: enroll.Invite) -> dict[str, Any]:
        r = codec.pack([i.url, i.relay_public, i.team, i.token, i.member, i.role])
        return {
            "url": i.url, "relay_public": i.relay_public.hex(), "team": i.team.hex(), "token": i.token.hex(),
            "member": i.member, "role": i.role, "msgpack": r.hex(), "text": i.encode(),
            "token_hash": enroll.token_hash(i.token).hex(),
        }  # fmt: skip

    body = text[len("hbw1-"):]
    spaced = "  " + "HBW1-" + " ".join(body[i : i + 8].upper() for i in range(0, len(body), 8)) + "\n"
    assert enroll.Invite.decode(spaced) == inv
    bad_role = "hbw1-" + base64.b32encode(codec.pack([RELAY_URL, RELAY.public, TEAM_ID, INVITE_TOKEN, "chidi", "admin"])).decode().rstrip("=").lower()
    short_key = "hbw1-" + base64.b32encode(codec.pack([RELAY_URL, RELAY.public[:31], TEAM_ID, INVITE_TOKEN, "chidi", "member"])).decode().rstrip("=").lower()
    invalid_invites = [
        {"name": "wrong_prefix", "description": "Starts 'hbw2-'.", "text": "hbw2-" + body},
        {"name": "truncated", "description": "The last 10 characters are missing.", "text": text[:-10]},
        {"name": "not_base32", "description": "A '1' (not in the base32 alphabet) in the body.", "text": text[:12] + "1" + text[13:]},
        {"name": "unknown_role", "description": "role 'admin'.", "text": bad_role},
        {"name": "short_relay_key", "description": "A 31-byte relay public key.", "text": short_key},
    ]  # fmt: skip
    for v in invalid_invites:
        try:
            enroll.Invite.decode(v["text"])
        except UsageError as e:
            v["expected_error_class"], v["expected_code"] = type(e).__name__, e.code
        else:
            raise AssertionError(f"invite {v['name']} decodes")

    # grants
    tk = TEAM_KEYS["t2"]
    g = build_grant(tk, "d2", "d1", name="grant")
    d2 = DEVICES["d2"].device_id
    assert enroll.open_grant(g["grant"], d2, X25519_PRIVATE["d2"], DEVICES["d1"].public) == tk
    assert enroll.grant_sender(g["grant"]) == DEVICES["d1"].device_id
    # make_grant (random ephemeral key and nonce) must follow the same layout
    real = enroll.make_grant(tk, d2, X25519_PUBLIC["d2"], DEVICES["d1"])
    assert enroll.open_grant(real, d2, X25519_PRIVATE["d2"], DEVICES["d1"].public) == tk
    rb = codec.unpack(real[:-64])
    assert (rb[0], rb[1], rb[4], len(rb[2]), len(rb[3])) == (tk.epoch, tk.key_id, DEVICES["d1"].device_id, 32, 60)
    assert len(real) == len(g["grant"])

    def opener(device: str = "d2", granter: str = "d1") -> dict[str, Any]:
        return {"my_device": DEVICES[device].device_id.hex(), "my_x25519_private": X25519_PRIVATE[device].hex(),
                "granter_public": DEVICES[granter].public.hex()}

    def flip(data: bytes, i: int) -> bytes:
        return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]

    good = g["grant"]
    invalid_grants = [
        ("truncated", "73 bytes: shorter than a signature + 10.", good[:73], opener()),
        ("flipped_in_sealed", "One bit flipped in the sealed secret (inside the signed body).",
         flip(good, len(g["body"]) - 20), opener()),
        ("flipped_signature", "One bit flipped in the signature.", flip(good, len(good) - 5), opener()),
        ("for_another_device", "d2's grant opened by d3: the signature binds the recipient's device id.", good,
         opener("d3")),
        ("other_granter_key", "Checked with d3's author key instead of the granter's.", good, opener(granter="d3")),
        ("sealed_to_other_x25519", "Signed for d2, but wrapped to d3's X25519 key.",
         build_grant(tk, "d2", "d1", name="sealed_to_other_x25519", seal_to="d3")["grant"], opener()),
        ("wrong_key_id", "Signed and sealed consistently, but the key id is epoch 1's, not the secret's.",
         build_grant(tk, "d2", "d1", name="wrong_key_id", key_id=TEAM_KEYS["t1"].key_id)["grant"], opener()),
    ]  # fmt: skip
    grants_bad = []
    for name, desc, data, op in invalid_grants:
        cls, code = expected_error(f"grant {name}", lambda: enroll.open_grant(
            data, bytes.fromhex(op["my_device"]), bytes.fromhex(op["my_x25519_private"]),
            bytes.fromhex(op["granter_public"])))
        grants_bad.append({"name": name, "description": desc, "grant": data.hex(), "open": op,
                           "expected_error_class": cls, "expected_code": code})

    return {
        "meta": {
            "invite": "'hbw1-' || lowercase(base32(msgpack([url, relay_public, team, token, member, role]))) "
            "without '=' padding (RFC 4648 alphabet); decoders drop all whitespace and ignore case",
            "token_hash": "SHA-256('hbw-sync invite token v1' || 0x00 || token)",
            "grant": "body = msgpack([epoch, key_id, ephemeral_public, sealed, granter_device_id]); "
            "grant = body || Ed25519(granter author key, label || recipient_device_id || body)",
            "grant_key": "HKDF-SHA256(ikm=X25519(ephemeral, recipient), salt=ephemeral_public || recipient_x25519_public, "
            "info=label, L=32); label = 'hbw-sync key grant v1' || 0x00",
            "grant_sealed": "nonce(12) || ChaCha20-Poly1305(grant_key, nonce, team secret, "
            "AAD = label || recipient_device_id || u32(epoch) || key_id)",
        },
        "devices": [
            {"name": n, "device_id": DEVICES[n].device_id.hex(), "author_public": DEVICES[n].public.hex(),
             "transport_seed": TRANSPORT_SEEDS[n].hex(), "transport_public": TRANSPORT[n].public.hex(),
             "x25519_private": X25519_PRIVATE[n].hex(), "x25519_public": X25519_PUBLIC[n].hex()}
            for n in DEVICES
        ],  # fmt: skip
        "relay": {"seed": RELAY_SEED.hex(), "public": RELAY.public.hex()},
        "invites": [invite_json(inv), invite_json(sup)],
        "invite_spaced": {"text": spaced, "decodes_to": 0},
        "invalid_invites": invalid_invites,
        "grant": {
            "team_key": {"epoch": tk.epoch, "secret": tk.secret.hex(), "key_id": tk.key_id.hex()},
            "recipient": "d2",
            "recipient_device_id": d2.hex(),
            "recipient_x25519_public": X25519_PUBLIC["d2"].hex(),
            "granter": "d1",
            "granter_device_id": DEVICES["d1"].device_id.hex(),
            "ephemeral_private": EPHEMERAL_PRIVATE.hex(),
            "label": GRANT_LABEL.hex(),
            **{k: v.hex() for k, v in g.items()},
        },
        "invalid_grants": grants_bad,
        "word_code": word_code_vector(invite_json(inv)["text"]),
    }


def word_code_vector(invite_text: str) -> dict[str, Any]:
    """An invite read out by phone (PROTOCOL.md §14a): the words' keys, the sealed invite, the fetch request."""
    slot = 4821
    words = tuple(wordcode.WORDS[i] for i in (1234, 42, 777, 2000, 5))
    proof, seal_key = wordcode.derive(slot, words)
    nonce = bytes(range(12))
    typed = f"{slot} " + " ".join(w[:4].upper() for w in words)
    assert wordcode.parse_code(typed) == (slot, words)
    return {
        "description": "slot and five words from the BIP-39 English list; any word may be typed by its first four "
                       "letters, in any case",
        "slot": slot, "words": list(words), "code": wordcode.format_code(slot, words), "typed": typed,
        "scrypt": {"password": " ".join(words), "salt": ("hbw-sync word code v1\x00".encode() + slot.to_bytes(2, "big")).hex(),
                   "n": wordcode.SCRYPT_N, "r": wordcode.SCRYPT_R, "p": wordcode.SCRYPT_P, "length": 64},
        "proof": proof.hex(), "seal_key": seal_key.hex(), "proof_digest": wordcode.proof_digest(proof).hex(),
        "invite_text": invite_text, "nonce": nonce.hex(),
        "sealed": wordcode.seal_invite(seal_key, slot, invite_text, nonce).hex(),
        "fetch_request": wordcode.fetch_request(slot, proof).hex(),
    }  # fmt: skip
