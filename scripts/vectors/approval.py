"""protocol/vectors/approval.json: admission by word code or invite, welcomes, approval records (PROTOCOL.md §14b).
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from hbw_sync import enroll, envelope

from ._kit import (
    DEVICES, DEVICE_SEEDS, OTHER_TEAM_ID, T0, TEAM_ID, TEAM_KEYS, expected_error, nonce_for, tjson,
)
from .enroll import RELAY, TRANSPORT, TRANSPORT_SEEDS, X25519_PRIVATE, X25519_PUBLIC

# -- admission (approval.json, PROTOCOL.md §14b) ---------------------------------------------


def build() -> dict[str, Any]:
    """Proofs, welcomes and approval records from fixed keys, secrets and nonces; and what must fail."""
    from hbw_sync import approval as AP

    sup, dev = DEVICES["d1"], DEVICES["d2"]
    t_pub, x_pub = TRANSPORT["d2"].public, X25519_PUBLIC["d2"]
    code = "31415926535897932384"
    secret = bytes(range(0x60, 0x70))  # a team invite's secret
    keys = [TEAM_KEYS["t1"], TEAM_KEYS["t2"]]
    eph = b"\x61" * 32
    eph_pub = enroll.x25519_public(eph)
    shared = X25519PrivateKey.from_private_bytes(eph).exchange(X25519PublicKey.from_public_bytes(x_pub))
    code_key = AP.code_welcome_key(code, dev.public, shared, eph_pub, x_pub)
    inv_key = AP.invite_welcome_key(secret)
    w_code = AP.seal_code_welcome(code, dev.public, x_pub, sup, keys, TEAM_ID, eph, nonce_for("welcome code"))
    x_priv = X25519_PRIVATE["d2"]
    w_inv = AP.make_welcome(inv_key, sup, keys, TEAM_ID, nonce_for("welcome invite"))
    record = AP.make_approval(sup, dev.public, x_pub, "amina", "member", T0)
    invite = enroll.Invite("https://relay.example:8765", RELAY.public, TEAM_ID, b"\x77" * 16, "amina", "member",
                           None, secret)

    def flipped(b: bytes, i: int) -> bytes:
        out = bytearray(b)
        out[i] ^= 1
        return bytes(out)

    invalid = []
    d3x = X25519_PRIVATE["d3"]
    # each with the context to open or verify it in (``open``), so a second implementation needs no guessing
    for name, what, ctx, data in [
        ("welcome-flipped-tag", "welcome", (code, x_priv, TEAM_ID), flipped(w_code, -1)),
        ("welcome-other-team", "welcome", (code, x_priv, OTHER_TEAM_ID), w_code),
        ("welcome-other-code", "welcome", ("27182818284590452353", x_priv, TEAM_ID), w_code),
        ("welcome-other-device-key", "welcome", (code, d3x, TEAM_ID), w_code),
        ("welcome-truncated", "welcome", (code, x_priv, TEAM_ID), w_code[:20]),
        ("approval-flipped-signature", "approval", sup.public, flipped(record, -1)),
        ("approval-other-approver", "approval", DEVICES["d3"].public, record),
        ("approval-truncated", "approval", sup.public, record[:40]),
    ]:
        if what == "welcome":
            c, xp, tm = ctx  # type: ignore[misc]
            fn = (lambda d, c=c, xp=xp, tm=tm: AP.open_code_welcome(c, dev.public, xp, d, tm))
            op = {"code": c, "author_public": dev.public.hex(), "x25519_private": xp.hex(), "team": tm.hex()}
        else:
            fn = (lambda d, k=ctx: AP.verify_approval(d, k))
            op = {"approver_public": ctx.hex()}  # type: ignore[union-attr]
        cls, err = expected_error(name, lambda: fn(data))
        invalid.append({"name": name, "kind": what, "data": data.hex(), "open": op, "expected_error": cls,
                        "expected_code": err})
    # The messages that carry them: an enroll request with a code proof, and a supervisor's invite request.
    enroll_args = {"token": b"\x77" * 16, "author_pub": dev.public, "transport_pub": t_pub, "x25519_pub": x_pub,
                   "label": "desk-2", "proof": AP.make_proof(code.encode(), dev.public, t_pub, x_pub)}
    enroll_env, _ = envelope.make_request(TRANSPORT["d2"], dev.device_id, "enroll", enroll_args, T0,
                                          nonce_for("enroll request")[:envelope.NONCE_LEN] + b"\x00" * 4)
    invite_args = {"token_hash": enroll.token_hash(invite.token), "member": "amina", "role": "member",
                   "ttl_days": 14, "welcome": w_inv, "epochs": [1, 2]}
    invite_env, _ = envelope.make_request(TRANSPORT["d1"], sup.device_id, "invite", invite_args, T0,
                                          nonce_for("invite request")[:envelope.NONCE_LEN] + b"\x00" * 4)
    messages = {
        "enroll_request": {"transport_seed": TRANSPORT_SEEDS["d2"].hex(), "time_ms": T0,
                           "args": tjson(enroll_args), "envelope": enroll_env.hex()},
        "invite_request": {"transport_seed": TRANSPORT_SEEDS["d1"].hex(), "time_ms": T0,
                           "args": tjson(invite_args), "envelope": invite_env.hex()},
    }
    return {
        "messages": messages,
        "description": "Admission (PROTOCOL.md §14b): the enrollment proof, welcomes sealed under an approval "
                       "code (and the device's X25519 key) or a team invite's secret, and a supervisor's approval record. Device d2 joins; "
                       "supervisor d1 admits it. Nonces are fixed here only.",
        "scrypt": {"n": AP.SCRYPT_N, "r": AP.SCRYPT_R, "p": AP.SCRYPT_P},
        "device": {"author_public": dev.public.hex(), "transport_public": t_pub.hex(), "x25519_public": x_pub.hex(),
                   "device_id": dev.device_id.hex()},
        "supervisor": {"seed": DEVICE_SEEDS["d1"].hex(), "author_public": sup.public.hex(),
                       "device_id": sup.device_id.hex()},
        "team": TEAM_ID.hex(),
        "team_keys": [{"epoch": k.epoch, "secret": k.secret.hex()} for k in keys],
        "code": {"digits": code, "shown": AP.format_code(code),
                 "stretched": AP.stretch(code.encode(), dev.public).hex(),
                 "proof": AP.make_proof(code.encode(), dev.public, t_pub, x_pub).hex(),
                 "device_x25519_private": x_priv.hex(), "ephemeral_private": eph.hex(),
                 "ephemeral_public": eph_pub.hex(), "shared": shared.hex(),
                 "welcome_key": code_key.hex(), "welcome_nonce": nonce_for("welcome code").hex(),
                 "welcome": w_code.hex()},
        "invite": {"secret": secret.hex(), "text": invite.encode(),
                   "proof": AP.make_proof(secret, dev.public, t_pub, x_pub).hex(),
                   "welcome_key": inv_key.hex(), "welcome_nonce": nonce_for("welcome invite").hex(),
                   "welcome": w_inv.hex()},
        "approval": {"member": "amina", "role": "member", "time_ms": T0, "record": record.hex()},
        "invalid": invalid,
    }
