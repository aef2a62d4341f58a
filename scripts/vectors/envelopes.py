"""protocol/vectors/envelopes.json: signed requests and responses, freshness, invalid envelopes (PROTOCOL.md §12).

``relay_order`` vectors tell the relay's bounded reading order apart (freshness before signature).
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack

from hbw_sync import codec, crypto, envelope
from hbw_sync.errors import HbwError

from ._kit import DAY, DEVICES, MIN, T0, TEAM_ID, TEAM_KEYS, nonce_for, packb, tjson
from .enroll import (
    INVITE_TOKEN, RELAY, RELAY_SEED, RELAY_X25519_PUBLIC, TRANSPORT, TRANSPORT_SEEDS, X25519_PUBLIC,
    build_grant,
)

# -- envelopes ---------------------------------------------------------------------------------


def _envelope(kind: bytes, body: Any, key: crypto.DeviceKey, version: int = envelope.VERSION,
              magic: bytes = envelope.MAGIC) -> bytes:
    signed = magic + kind + bytes([version]) + packb(body)
    return signed + key.sign(signed)


def build() -> dict[str, Any]:
    d1, d3 = DEVICES["d1"].device_id, DEVICES["d3"].device_id
    t1, t2 = TEAM_KEYS["t1"], TEAM_KEYS["t2"]
    grant = build_grant(t2, "d2", "d1", name="grant")["grant"]
    requests_in = [
        ("sync", "A supervisor's device d1 syncs: pull cursor, budget, roster version, a new key to publish "
         "and a key grant for d2. No batches (their bytes depend on zstd).", "d1", T0, "sync",
         {"cursor": 1041, "budget": 200_000, "batches": [], "roster_v": 3, "key": [2, t2.key_id],
          "grants": [[DEVICES["d2"].device_id, 2, grant]]}),
        ("enroll", "Device d3 joins with the invite token of enroll.json; its transport key signs.", "d3", T0 + 5000,
         "enroll", {"token": INVITE_TOKEN, "author_pub": DEVICES["d3"].public, "transport_pub": TRANSPORT["d3"].public,
                    "x25519_pub": X25519_PUBLIC["d3"], "label": "registry-laptop-3"}),
        ("download", "d1 resumes a by-reference batch at offset 65 536, asking for up to 64 KiB.", "d1", T0 + 9000,
         "download",
         {"rseq": 1040, "offset": 65536, "length": 65536}),
        ("stream", "The head of a streamed upload (POST /v1/stream, §17): d1 sends batch 14 (200 000 bytes) from "
         "byte 70 000. On the wire it follows its length as 2 bytes big-endian, and the batch's bytes "
         "[70 000, 200 000) follow it.", "d1", T0 + 9100, "stream",
         {"seq": 14, "total": 200_000, "offset": 70_000, "sha256": hashlib.sha256(b"batch 14").digest()}),
        ("fetch", "A streamed download (POST /v1/fetch, §17): d1 asks for batch 1040 from byte 65 536.", "d1",
         T0 + 9400, "fetch", {"rseq": 1040, "offset": 65536}),
    ]  # fmt: skip
    requests, by_name = [], {}
    for name, desc, dev, t, action, args in requests_in:
        nonce = nonce_for("envelope " + name) + nonce_for("envelope2 " + name)[:4]
        data, n = envelope.make_request(TRANSPORT[dev], DEVICES[dev].device_id, action, args, t, nonce=nonce)
        assert n == nonce and len(nonce) == envelope.NONCE_LEN
        body = codec.pack([DEVICES[dev].device_id, t, nonce, action, args])
        assert data[:5] == b"HBWQ\x01" and data[5:-64] == body
        req = envelope.parse_request(data)
        req.verify(TRANSPORT[dev].public)
        by_name[name] = (data, nonce)
        requests.append({
            "name": name, "description": desc, "device": dev, "device_id": DEVICES[dev].device_id.hex(),
            "transport_public": TRANSPORT[dev].public.hex(), "time_ms": t, "nonce": nonce.hex(), "action": action,
            "args": tjson(args), "body_msgpack": body.hex(), "signature": data[-64:].hex(), "envelope": data.hex(),
        })  # fmt: skip

    roster = {
        d1: ["amina", DEVICES["d1"].public, X25519_PUBLIC["d1"], None, "supervisor"],
        DEVICES["d2"].device_id: ["bosco", DEVICES["d2"].public, X25519_PUBLIC["d2"], None, "member"],
        d3: ["chidi", DEVICES["d3"].public, X25519_PUBLIC["d3"], T0 - DAY, "member"],
    }
    responses_in = [
        ("sync", "The relay answers d1's sync: one ack, one reject, a by-reference batch, the roster, keys, "
         "pending grants (d1 is a supervisor).", "sync", T0 + 40,
         {"acks": [[12, 1042, T0 + 40]],
          "rejects": [[13, {"error": "ProtocolError", "code": "protocol.seq_reuse",
                            "message": "batch 13 was already received with other content"}]],
          "batches": [[1040, DEVICES["d2"].device_id, T0 - MIN, None, 65_792]],
          "cursor": 1042, "more": False, "roster": roster, "roster_v": 4, "keys": {1: t1.key_id, 2: t2.key_id},
          "grants": [], "pending": [[DEVICES["d2"].device_id, X25519_PUBLIC["d2"], [2]]], "rotate": False,
          "want_snapshot": False}),
        ("enroll", "The relay enrolls d3 as member 'chidi'; the team already has keys (so d3 waits for grants).",
         "enroll", T0 + 5010,
         {"team": TEAM_ID, "team_name": "Registry office", "member": "chidi", "role": "member",
          "keys": {1: t1.key_id, 2: t2.key_id}, "relay_x25519": RELAY_X25519_PUBLIC}),
        ("download", "The last piece of batch 1040 (65 792 bytes): the 256 bytes from offset 65 536 (a stand-in "
         "pattern, not real batch bytes).", "download", T0 + 9010,
         {"size": 65_792, "offset": 65536, "chunk": bytes(range(256))}),
        ("stream", "The relay's answer to d1's stream once all 200 000 bytes of batch 14 are in and their SHA-256 "
         "is the head's: the batch is acknowledged as rseq 1043.", "stream", T0 + 9300,
         {"offset": 200_000, "ack": [14, 1043, T0 + 9300]}),
        ("fetch", "The signed head of the relay's answer to d1's fetch: the batch's size and SHA-256, the offset "
         "echoed; on the wire it follows its length as 2 bytes big-endian, and bytes [65 536, 65 792) follow it.",
         "fetch", T0 + 9410, {"size": 65_792, "offset": 65536, "sha256": hashlib.sha256(b"batch 1040").digest()}),
    ]  # fmt: skip
    responses = []
    for name, desc, req_name, t, result in responses_in:
        _, nonce = by_name[req_name]
        data = envelope.make_response(RELAY, nonce, result, t)
        body = codec.pack([nonce, t, result])
        assert data[:5] == b"HBWR\x01" and data[5:-64] == body
        assert envelope.parse_response(data, RELAY.public, nonce).result == result
        responses.append({
            "name": name, "description": desc, "request": req_name, "nonce": nonce.hex(), "time_ms": t, "result": tjson(result),
            "body_msgpack": body.hex(), "signature": data[-64:].hex(), "envelope": data.hex(),
        })  # fmt: skip

    sync_req, sync_nonce = by_name["sync"]
    sync_resp = bytes.fromhex(responses[0]["envelope"])
    S = envelope.MAX_REQUEST_SKEW_MS
    freshness = [
        {"time_ms": T0, "now_ms": T0, "expected_code": None},
        {"time_ms": T0, "now_ms": T0 + S, "expected_code": None},
        {"time_ms": T0, "now_ms": T0 - S, "expected_code": None},
        {"time_ms": T0, "now_ms": T0 + S + 1, "expected_code": "access.clock"},
        {"time_ms": T0, "now_ms": T0 - S - 1, "expected_code": "access.clock"},
    ]
    sync_args = requests_in[0][5]
    body_ok = [d1, T0, sync_nonce, "sync", sync_args]

    def resign(body: Any, **kw: Any) -> bytes:
        return _envelope(b"Q", body, TRANSPORT["d1"], **kw)

    def flip(data: bytes, i: int) -> bytes:
        return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]

    altered = envelope.MAGIC + b"Q\x01" + packb([d1, T0, sync_nonce, "sync", {**sync_args, "cursor": 0}]) + sync_req[-64:]
    PE, IE, VE, AE = "ProtocolError", "IntegrityError", "VersionError", "AccessError"
    bad_requests = [
        ("request_bad_magic", "Magic 'HBX'.", b"HBX" + sync_req[3:], PE, "protocol.magic", "parse"),
        ("request_too_short", "68 bytes: shorter than header + signature.", sync_req[:68], PE, "protocol.magic", "parse"),
        ("request_is_a_response", "A response envelope (type 'R') where a request is expected.", sync_resp,
         PE, "protocol.magic", "parse"),
        ("request_unknown_version", "Version byte 2, validly signed.", resign(body_ok, version=2), VE, "protocol.version", "parse"),
        ("request_trailing_byte", "One byte after the signature (the body then ends with a stray byte).",
         sync_req + b"\x00", PE, "protocol.trailing", "parse"),
        ("request_ext_type", "An ext type in args, validly signed.",
         resign([d1, T0, sync_nonce, "sync", {"cursor": msgpack.ExtType(1, b"x")}]), PE, "protocol.msgpack", "parse"),
        ("request_body_4_elements", "Body without args, validly signed.", resign(body_ok[:4]), PE, "protocol.schema", "parse"),
        ("request_nonce_15_bytes", "A 15-byte nonce, validly signed.",
         resign([d1, T0, sync_nonce[:15], "sync", sync_args]), PE, "protocol.schema", "parse"),
        ("request_time_is_bool", "time = true, validly signed.", resign([d1, True, sync_nonce, "sync", sync_args]),
         PE, "protocol.schema", "parse"),
        ("request_device_id_7_bytes", "A 7-byte device id, validly signed.",
         resign([d1[:7], T0, sync_nonce, "sync", sync_args]), PE, "protocol.schema", "parse"),
        ("request_args_not_map", "args is an array, validly signed.", resign([d1, T0, sync_nonce, "sync", []]),
         PE, "protocol.schema", "parse"),
        ("request_bad_signature", "One bit of the signature flipped.", flip(sync_req, len(sync_req) - 3),
         IE, "integrity.signature", "verify"),
        ("request_args_altered", "cursor changed to 0 after signing (signature kept).", altered,
         IE, "integrity.signature", "verify"),
        ("request_signed_by_author_key", "Signed by d1's author key, not its transport key.",
         _envelope(b"Q", body_ok, DEVICES["d1"]), IE, "integrity.signature", "verify"),
        ("request_stale", "Validly signed at T0, received at T0 + skew + 1 ms.", sync_req, AE, "access.clock", "fresh"),
        ("request_stale_bad_signature", "Stale and with a flipped signature bit: freshness is checked first.",
         flip(sync_req, len(sync_req) - 3), AE, "access.clock", "fresh"),
    ]  # fmt: skip
    invalid: list[dict[str, Any]] = []
    for name, desc, data, cls, code, stage in bad_requests:
        now = T0 + S + 1 if name.startswith("request_stale") else T0
        invalid.append({"name": name, "description": desc, "kind": "request", "stage": stage, "envelope": data.hex(),
                        "transport_public": TRANSPORT["d1"].public.hex(), "now_ms": now,
                        "expected_error_class": cls, "expected_code": code})

    resp_body = [sync_nonce, T0 + 40, responses_in[0][4]]
    bad_responses = [
        ("response_bad_magic", "Magic 'HBX'.", b"HBX" + sync_resp[3:], PE, "protocol.magic"),
        ("response_is_a_request", "A request envelope (type 'Q') where a response is expected.", sync_req,
         PE, "protocol.magic"),
        ("response_unknown_version", "Version byte 2, signed by the relay.",
         _envelope(b"R", resp_body, RELAY, version=2), VE, "protocol.version"),
        ("response_bad_signature", "One bit of the signature flipped.", flip(sync_resp, len(sync_resp) - 3),
         IE, "integrity.signature"),
        ("response_forged_ack", "An ack for seq 14 added, signed by another key than the pinned relay's.",
         _envelope(b"R", [sync_nonce, T0 + 40, {**resp_body[2], "acks": [[14, 1043, T0 + 40]]}], DEVICES["d2"]),
         IE, "integrity.signature"),
        ("response_other_nonce", "A valid relay response to another request (the enroll request's nonce).",
         bytes.fromhex(responses[1]["envelope"]), PE, "protocol.replay"),
        ("response_result_not_map", "result is an array, signed by the relay.",
         _envelope(b"R", [sync_nonce, T0 + 40, []], RELAY), PE, "protocol.schema"),
    ]  # fmt: skip
    for name, desc, data, cls, code in bad_responses:
        invalid.append({"name": name, "description": desc, "kind": "response", "envelope": data.hex(),
                        "relay_public": RELAY.public.hex(), "nonce": sync_nonce.hex(),
                        "expected_error_class": cls, "expected_code": code})

    # self-check: every invalid vector fails as recorded
    for v in invalid:
        data = bytes.fromhex(v["envelope"])
        try:
            if v["kind"] == "request":
                req = envelope.parse_request(data)  # the relay's order (PROTOCOL.md §12): freshness first
                envelope.check_fresh(req, v["now_ms"])
                req.verify(bytes.fromhex(v["transport_public"]))
            else:
                envelope.parse_response(data, RELAY.public, sync_nonce)
        except HbwError as e:
            assert (type(e).__name__, e.code) == (v["expected_error_class"], v["expected_code"]), (v["name"], e)
        else:
            raise AssertionError(f"{v['name']} passes")

    relay_order = _relay_order_vectors(d1, sync_nonce)

    return {
        "meta": {
            "layout": "'HBW' || type ('Q' request, 'R' response) || version (1) || msgpack(body) || "
            "Ed25519 signature (64) over every byte before it",
            "request_body": "[device_id (bin 8), time_ms (uint), nonce (bin 16), action (str), args (map)]; "
            "signed by the device's transport key",
            "response_body": "[request nonce (bin 16), time_ms (uint), result (map)]; signed by the relay key the "
            "invite pinned",
            "max_request_skew_ms": envelope.MAX_REQUEST_SKEW_MS,
            "values": "args and result in typed JSON: bytes {'hex': ...}, maps with non-string keys "
            "{'map': [[key, value], ...]}; map order is the order of body_msgpack",
        },
        "relay": {"seed": RELAY_SEED.hex(), "public": RELAY.public.hex()},
        "transport_keys": [
            {"device": n, "device_id": DEVICES[n].device_id.hex(), "seed": TRANSPORT_SEEDS[n].hex(),
             "public": TRANSPORT[n].public.hex()} for n in DEVICES
        ],  # fmt: skip
        "requests": requests,
        "responses": responses,
        "freshness": freshness,
        "invalid": invalid,
        "relay_order": relay_order,
    }


def _relay_order_vectors(d1: bytes, nonce: bytes) -> list[dict[str, Any]]:
    """Requests as the relay reads them (PROTOCOL.md §12 "Bounded before trusted"): d1 is enrolled.

    Each names the first check that fails when the signature is verified before the args are
    decoded, and the args by their spec: a junk signature wins over malformed args; a
    wrong type or an over-long value is refused from its header; unknown args are dropped.
    """
    from hbw_sync.server import relay

    S = envelope.MAX_REQUEST_SKEW_MS

    def raw(device: bytes, action: str, args: bytes, t: int = T0, sig: bytes = bytes(64)) -> bytes:
        return envelope.MAGIC + b"Q\x01" + b"\x95" + packb(device) + packb(t) + packb(nonce) + packb(action) + args + sig

    def signed(device: bytes, action: str, args: Any) -> bytes:
        return _envelope(b"Q", [device, T0, nonce, action, args], TRANSPORT["d1"])

    enroll_keys = {"author_pub": bytes(32), "transport_pub": bytes(32), "x25519_pub": bytes(32)}
    PE, IE, AE, LE = "ProtocolError", "IntegrityError", "AccessError", "LimitError"
    cases = [
        ("junk_signature_before_bad_args", "Args that are not msgpack (0xc1) under a junk signature.",
         raw(d1, "sync", b"\xc1"), IE, "integrity.signature"),
        ("unknown_device_before_bad_args", "A device id nobody enrolled, args not msgpack.",
         raw(bytes(8), "sync", b"\xc1"), AE, "access.unknown_device"),
        ("stale_before_signature", "A junk signature on a request 1 ms outside the skew window.",
         raw(d1, "sync", b"\x80", t=T0 - S - 1), AE, "access.clock"),
        ("unknown_action", "Action 'launch'.", raw(d1, "launch", b"\x80"), PE, "protocol.action"),
        ("enroll_token_as_int", "enroll with token = 4e9 (the relay once allocated that many bytes).",
         signed(d1, "enroll", {"token": 4_000_000_000, **enroll_keys}), PE, "protocol.schema"),
        ("enroll_over_body_limit", "enroll of more than 16 KiB (a 20,000-character label).",
         signed(d1, "enroll", {"token": bytes(16), **enroll_keys, "label": "x" * 20_000}), LE, "protocol.limit"),
        ("enroll_token_over_limit", "enroll with a 65-byte token.",
         signed(d1, "enroll", {"token": bytes(65), **enroll_keys}), LE, "protocol.limit"),
        ("sync_cursor_as_text", "cursor = '0', validly signed.", signed(d1, "sync", {"cursor": "0"}),
         PE, "protocol.schema"),
        ("sync_grant_device_7_bytes", "A grant for a 7-byte device id, validly signed.",
         signed(d1, "sync", {"grants": [[bytes(7), 1, b"g"]]}), PE, "protocol.schema"),
        ("download_over_body_limit", "A download request of more than 4 KiB.",
         signed(d1, "download", {"rseq": 1, "pad": bytes(5000)}), LE, "protocol.limit"),
        ("sync_unknown_args_dropped", "An unknown arg beside cursor: accepted, dropped.",
         signed(d1, "sync", {"cursor": 7, "x-future": [[1, 2], {"a": b"b"}]}), None, None),
    ]  # fmt: skip
    out = []
    for name, desc, data, cls, code in cases:
        v: dict[str, Any] = {"name": name, "description": desc, "envelope": data.hex(), "now_ms": T0,
                             "enrolled": {d1.hex(): TRANSPORT["d1"].public.hex()}}
        try:
            req = relay.open_request(data, T0, {d1: TRANSPORT["d1"].public}.get)
        except HbwError as e:
            assert (type(e).__name__, e.code) == (cls, code), (name, e)
            v.update(expected_error_class=cls, expected_code=code)
        else:
            assert cls is None, f"{name} passes"
            v.update(expected_error_class=None, expected_code=None, expected_arg_names=sorted(req.args))
        out.append(v)
    return out
